#include <gtest/gtest.h>
#include <torch/torch.h>

#include "seam/training/model.hpp"
#include "seam/training/optim.hpp"

#include <set>

namespace t = seam::training;

TEST(Optim, WeightDecayHitsMatricesButNotBiasesOrNorms) {
  t::ModelConfig c;
  c.kind = "vit";
  c.width = 16;
  c.depth = 1;
  auto m = t::build_full_model(c);
  t::OptimConfig oc;
  oc.lr = 0.1;
  oc.weight_decay = 0.5;
  oc.schedule = "constant";
  t::Optimizer opt(m, oc);
  auto before = m.named_parameters();
  std::vector<torch::Tensor> copies;
  for (auto& [n, p] : before) copies.push_back(p.detach().clone());
  // Zero gradients: AdamW's step is then the decoupled decay alone, w *= 1 - lr * wd.
  for (auto& p : m.parameters()) p.mutable_grad() = torch::zeros_like(p);
  opt.step(0);
  std::size_t i = 0;
  int decayed = 0, kept = 0;
  for (auto& [n, p] : m.named_parameters()) {
    const auto& old = copies[i++];
    if (p.dim() >= 2) {
      EXPECT_TRUE(torch::allclose(p, old * (1 - 0.1 * 0.5))) << n;
      ++decayed;
    } else {
      EXPECT_TRUE(torch::equal(p, old)) << n;  // biases, LayerNorm weights
      ++kept;
    }
  }
  EXPECT_GT(decayed, 0);
  EXPECT_GT(kept, 0);
}

TEST(Optim, WarmupThenCosineOrLinearDecay) {
  t::ModelConfig c;
  c.kind = "cnn";
  c.cnn_width = 4;
  c.cnn_stages = 1;
  auto m = t::build_full_model(c);
  t::OptimConfig oc;
  oc.lr = 1.0;
  oc.warmup_steps = 10;
  oc.total_steps = 110;
  t::Optimizer cos(m, oc);
  EXPECT_DOUBLE_EQ(cos.lr_at(0), 0.1);
  EXPECT_DOUBLE_EQ(cos.lr_at(9), 1.0);
  EXPECT_NEAR(cos.lr_at(60), 0.5, 1e-12);  // half-way through the decay
  EXPECT_NEAR(cos.lr_at(110), 0.0, 1e-12);
  oc.schedule = "linear";
  t::Optimizer lin(m, oc);
  EXPECT_NEAR(lin.lr_at(35), 0.75, 1e-12);
  oc.kind = "adam";
  EXPECT_THROW(t::Optimizer(m, oc), std::invalid_argument);
  oc.kind = "sgd";
  oc.schedule = "step";
  EXPECT_THROW(t::Optimizer(m, oc), std::invalid_argument);
}

#include "seam/training/job.hpp"

TEST(Sampler, BatchesNeverRepeatASampleAndEpochsReshuffle) {
  t::Sampler s(10, 3);
  std::vector<std::int64_t> seen;
  for (int i = 0; i < 20; ++i) {
    auto b = s.next(3);
    std::set<std::int64_t> u(b.begin(), b.end());
    EXPECT_EQ(u.size(), 3u);  // the epoch's partial tail (1 sample) is dropped, not mixed in
    if (s.epoch() == 0) seen.insert(seen.end(), b.begin(), b.end());
  }
  EXPECT_EQ(seen.size(), 9u);
  EXPECT_GT(s.epoch(), 5);
  EXPECT_THROW(s.next(11), std::invalid_argument);
}
