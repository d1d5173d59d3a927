// Do C3's unitary keys train better than the paper's Gaussian keys?
// A split MLP on Fashion-MNIST: edge Linear(784,256)+ReLU, C3 bind (R groups)
// on the 256 features, cloud unbind -> Linear(256,128)+ReLU -> Linear(128,10).
// Same seed, data order and optimizer for every variant; prints test accuracy.
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <optional>

#include "seam/compression/c3.hpp"
#include "seam/training/fashion_mnist.hpp"

namespace sc = seam::compression;

struct Net : torch::nn::Module {
  torch::nn::Linear edge{nullptr}, c1{nullptr}, c2{nullptr};
  Net() {
    edge = register_module("edge", torch::nn::Linear(784, 256));
    c1 = register_module("c1", torch::nn::Linear(256, 128));
    c2 = register_module("c2", torch::nn::Linear(128, 10));
  }
  torch::Tensor forward(const torch::Tensor& x, const sc::C3Transform* c3) {
    auto h = torch::relu(edge(x.reshape({x.size(0), 784})));
    if (c3) h = c3->unbind(c3->bind(h), x.size(0));
    return c2(torch::relu(c1(h)));
  }
};

double run(const seam::training::ImageSet& tr, const seam::training::ImageSet& te, std::optional<sc::C3KeyKind> kind,
           int r, int epochs) {
  torch::manual_seed(0);
  Net net;
  std::optional<sc::C3Transform> c3;
  if (kind) c3.emplace(r, 256, 42, *kind);
  torch::optim::Adam opt(net.parameters(), torch::optim::AdamOptions(1e-3));
  const int64_t bs = 64, n = tr.images.size(0);
  for (int e = 0; e < epochs; ++e) {
    auto perm = torch::randperm(n, torch::TensorOptions().dtype(torch::kLong));
    for (int64_t i = 0; i + bs <= n; i += bs) {
      auto idx = perm.narrow(0, i, bs);
      auto loss = torch::nn::functional::cross_entropy(net.forward(tr.images.index_select(0, idx), c3 ? &*c3 : nullptr),
                                                       tr.labels.index_select(0, idx));
      opt.zero_grad();
      loss.backward();
      opt.step();
    }
  }
  torch::NoGradGuard ng;
  int64_t correct = 0;
  for (int64_t i = 0; i < te.images.size(0); i += 256) {
    int64_t b = std::min<int64_t>(256, te.images.size(0) - i);
    auto logits = net.forward(te.images.narrow(0, i, b), c3 ? &*c3 : nullptr);
    correct += logits.argmax(1).eq(te.labels.narrow(0, i, b)).sum().item<int64_t>();
  }
  return double(correct) / te.images.size(0);
}

int main(int argc, char** argv) {
  const int epochs = argc > 1 ? std::atoi(argv[1]) : 2;
  auto tr = seam::training::load_fashion_mnist("train");
  auto te = seam::training::load_fashion_mnist("test");
  std::printf("C3 key kinds on Fashion-MNIST (split MLP, Adam 1e-3, batch 64, %d epochs, seed 0)\n", epochs);
  auto t0 = std::chrono::steady_clock::now();
  std::printf("no C3 (baseline)         test acc %.4f\n", run(tr, te, std::nullopt, 1, epochs));
  for (int r : {1, 2, 4, 8}) {
    double g = run(tr, te, sc::C3KeyKind::gaussian, r, epochs);
    double u = run(tr, te, sc::C3KeyKind::unitary, r, epochs);
    std::printf("R=%d  gaussian keys %.4f   unitary keys %.4f\n", r, g, u);
  }
  std::printf("total %.0f s\n", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
}
