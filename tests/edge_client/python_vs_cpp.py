"""The Python module against seam-edge: the same front model (the job's ViT
patch embedding, as a TorchScript module loaded with the job's initial
weights), the same batches and the same optimizer give the same losses
(<= 1e-6) over 30 steps against the same job at one seam-cloud.

Usage: python_vs_cpp.py PORT PKI_DIR EDGE_JOB_DIR WORK_DIR SEAM_EDGE_BIN
(run by edge_test.sh python, with PYTHONPATH at the built module)."""
import json
import subprocess
import sys

import torch

import seam

port, pki, job_dir, work, seam_edge = sys.argv[1:6]
STEPS, BATCH = 30, 16
torch.set_num_threads(1)

# The data: 30 sequential batches, written once, read by both sides.
g = torch.Generator().manual_seed(5)
x = torch.randn(STEPS * BATCH, 1, 28, 28, generator=g)
y = torch.randint(0, 10, (STEPS * BATCH,), generator=g)
torch.save({"x": x, "y": y}, f"{work}/data.pt")

# C++: seam-edge trains the job's own front half on those batches.
common = ["--server", f"127.0.0.1:{port}", "--ca", f"{pki}/ca.pem", "--cert", f"{pki}/client.pem",
          "--key", f"{pki}/client.key", "--job", "vit", "--job-dir", job_dir]
subprocess.run([seam_edge, *common, "--state-dir", f"{work}/cpp", "--client-id", "cpp", "--task",
                f"tensors:{work}/data.pt", "--order", "sequential", "--batch", str(BATCH), "--steps", str(STEPS),
                "--threads", "1", "--progress", "none", "--metrics-log", f"{work}/cpp.jsonl"],
               check=True, stdout=subprocess.DEVNULL)
cpp = [json.loads(line)["loss"] for line in open(f"{work}/cpp.jsonl")]
assert len(cpp) == STEPS, cpp


# Python: the user's own front, a TorchScript module with the job's initial weights.
class Front(torch.nn.Module):
    def __init__(self, w):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, w["edge/p/0.conv.weight"].shape[0], 7, stride=7)
        with torch.no_grad():
            self.conv.weight.copy_(w["edge/p/0.conv.weight"])
            self.conv.bias.copy_(w["edge/p/0.conv.bias"])
        self.cls = torch.nn.Parameter(w["edge/p/0.cls"].clone())
        self.pos = torch.nn.Parameter(w["edge/p/0.pos"].clone())

    def forward(self, x):
        p = self.conv(x).flatten(2).transpose(1, 2)
        return torch.cat([self.cls.expand(x.size(0), 1, self.cls.size(2)), p], 1) + self.pos


init = dict(torch.jit.load(f"{job_dir}/edge_init.pt").named_parameters())
front = torch.jit.script(Front(init))
conf = dict(line.split("=", 1) for line in open(f"{job_dir}/job.conf").read().splitlines() if "=" in line)
assert conf["optim.kind"] == "sgd" and conf["optim.schedule"] == "constant", conf
opt = torch.optim.SGD(front.parameters(), lr=float(conf["optim.lr"]), momentum=float(conf["optim.momentum"]))

sess = seam.EdgeSession(server=f"127.0.0.1:{port}", job="vit", ca=f"{pki}/ca.pem", cert=f"{pki}/client.pem",
                        key=f"{pki}/client.key", job_dir=job_dir, client_id="py")
py = []
for k in range(STEPS):
    rows = slice(k * BATCH, (k + 1) * BATCH)
    a = front(x[rows])
    grad, stats = sess.exchange(a, y[rows], list(range(k * BATCH, (k + 1) * BATCH)))
    assert grad.shape == a.shape and stats["step"] == k, (grad.shape, stats)
    a.backward(grad)
    opt.step()
    opt.zero_grad()
    py.append(stats["loss"])

worst = max(abs(a - b) for a, b in zip(py, cpp))
print(f"30 steps: python losses {py[0]:.6f} .. {py[-1]:.6f}, seam-edge {cpp[0]:.6f} .. {cpp[-1]:.6f}, "
      f"max difference {worst:.3g}")
assert worst <= 1e-6, list(zip(py, cpp))
assert py[-1] < py[0], "the loss did not go down"

# Inference through the cloud on the trained front's activation: classes are the logits' argmax.
with torch.no_grad():
    a = front(x[:BATCH])
logits = sess.infer(a)
classes = sess.infer(a, classes=True)
assert logits.shape == (BATCH, 10) and classes.dtype == torch.int64, (logits.shape, classes.dtype)
assert torch.equal(classes, logits.argmax(-1)), (classes, logits.argmax(-1))
assert sess.step == STEPS, "inference applied a step"

# Errors keep their messages: a bad call is a ValueError naming the problem.
try:
    sess.exchange(front(x[:BATCH]), y[:BATCH], [0, 1, 2])
    raise AssertionError("three ids for a batch of 16 were accepted")
except ValueError as e:
    assert "one sample id per row (got 3 ids)" in str(e), e
sess.close()
try:
    sess.exchange(front(x[:BATCH]), y[:BATCH], list(range(BATCH)))
    raise AssertionError("a closed session stepped")
except RuntimeError as e:
    assert "the session is closed" in str(e), e
print("Python module and seam-edge agree")
