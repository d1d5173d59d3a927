#!/usr/bin/env python3
"""Trains your own PyTorch front model against a Seam cloud.

You keep the front model, the data loader and the optimizer. Seam carries the
cut: it compresses the front's activation, sends it over mutual TLS, lets the
cloud train its half on your labels, and returns the gradient of the loss with
respect to the activation. Your labels and gradients go to the cloud; your
inputs never do.

The job here is a ViT split after its patch embedding (docs/edge.md shows the
job file), so the front must produce [B, 17, width] tokens from 28x28 images.

  PYTHONPATH=build/edge_client/python /usr/bin/python3 edge_client/python/example_train.py \\
      --server 127.0.0.1:7433 --job vit-fmnist --job-dir state/vit-fmnist/job \\
      --ca pki/ca.pem --cert pki/client.pem --key pki/client.key --steps 200
"""
import argparse
import gzip
import struct

import torch

import seam


def fashion_mnist(path="/usr/share/datasets/fashion-mnist", split="train"):
    """Your own data: here Fashion-MNIST from Debian's dataset package, scaled to [-1, 1]."""
    with gzip.open(f"{path}/{split}-images-idx3-ubyte.gz") as f:
        _, n, rows, cols = struct.unpack(">IIII", f.read(16))
        x = torch.frombuffer(bytearray(f.read()), dtype=torch.uint8).view(n, 1, rows, cols)
    with gzip.open(f"{path}/{split}-labels-idx1-ubyte.gz") as f:
        f.read(8)
        y = torch.frombuffer(bytearray(f.read()), dtype=torch.uint8).long()
    return x.float() / 127.5 - 1, y


class Front(torch.nn.Module):
    """Your front model: patch embedding with a class token, as the job's cut expects."""

    def __init__(self, width, patch=7, tokens=16):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, width, patch, stride=patch)
        self.cls = torch.nn.Parameter(torch.zeros(1, 1, width))
        self.pos = torch.nn.Parameter(torch.randn(1, tokens + 1, width) * 0.02)

    def forward(self, x):
        p = self.conv(x).flatten(2).transpose(1, 2)
        return torch.cat([self.cls.expand(x.size(0), 1, -1), p], 1) + self.pos


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for flag in ("server", "job", "job-dir", "ca", "cert", "key"):
        ap.add_argument(f"--{flag}", required=True)
    ap.add_argument("--width", type=int, default=64, help="the job's width")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    args = ap.parse_args()

    torch.manual_seed(0)  # your script, your generator
    x, y = fashion_mnist()
    front = Front(args.width)
    opt = torch.optim.AdamW(front.parameters(), lr=args.lr)
    sess = seam.EdgeSession(server=args.server, job=args.job, job_dir=args.job_dir, ca=args.ca, cert=args.cert,
                            key=args.key, client_id="example")
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y, torch.arange(len(y))),
                                         batch_size=args.batch, shuffle=True, drop_last=True)
    step = 0
    while step < args.steps:
        for xb, yb, ids in loader:
            a = front(xb)
            g, stats = sess.exchange(a, yb, ids)  # encoded up, cloud step, encoded gradient down
            a.backward(g)
            opt.step()
            opt.zero_grad()
            step += 1
            if step % 20 == 0 or step == args.steps:
                print(f"step {step:5d}  loss {stats['loss']:.4f}  acc {stats['accuracy']:.3f}  "
                      f"up {stats['bytes_up']} B  down {stats['bytes_down']} B")
            if step == args.steps:
                break
    total = sess.stats()
    print(f"done: {total['steps_this_run']} steps, {total['bytes_up'] / 1e6:.2f} MB up, "
          f"{total['bytes_down'] / 1e6:.2f} MB down (fp32: {total['naive_up'] / 1e6:.2f} / {total['naive_down'] / 1e6:.2f} MB)")
    sess.close()


if __name__ == "__main__":
    main()
