// Short learning checks for CI; the accuracy targets live in
// scripts/learning_bench.sh (minutes, not seconds).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <map>

#include "seam/session/run.hpp"
#include "seam/training/checkpoint.hpp"
#include "seam/training/job.hpp"

namespace t = seam::training;

namespace {

double mean(const std::vector<double>& v, std::size_t from, std::size_t to) {
  double s = 0;
  for (std::size_t i = from; i < to; ++i) s += v[i];
  return s / double(to - from);
}

std::vector<double> losses_of(const t::ModelConfig& mc, const t::HalfSettings& hs, const t::Task& task, std::int64_t steps,
                              std::int64_t batch, double* acc = nullptr) {
  t::RunOptions ro;
  ro.steps = steps;
  ro.batch = batch;
  std::vector<double> losses;
  auto r = seam::session::run_split_training(mc, hs, task, ro, "", [&](const t::StepMetrics& m, double) { losses.push_back(m.loss); });
  if (acc) *acc = r.test_accuracy;
  return losses;
}

TEST(Learning, VitOnFashionMnistLossFallsSubstantiallyThroughCodecs) {
  auto task = t::make_task("fashion-mnist");
  t::ModelConfig mc;
  mc.kind = "vit";
  mc.width = 32;
  mc.depth = 2;
  mc.split = 2;
  t::HalfSettings hs;
  hs.up_codec = "quant:bits=8";
  hs.down_codec = "quant:bits=8,round=stochastic";
  hs.optim.lr = 3e-3;
  hs.optim.warmup_steps = 10;
  double acc = 0;
  auto l = losses_of(mc, hs, *task, 120, 32, &acc);
  EXPECT_LT(mean(l, 100, 120), 0.6 * mean(l, 0, 10));
  EXPECT_GT(acc, 0.5);  // 10 classes: chance is 0.1
}

TEST(Learning, BertOnFortunesLanguageLossFallsSubstantially) {
  auto task = t::make_task("fortunes-language", 48, 300);
  t::ModelConfig mc;
  mc.kind = "bert";
  mc.classes = 4;
  mc.width = 32;
  mc.depth = 2;
  mc.max_len = 48;
  mc.split = 2;
  t::HalfSettings hs;
  hs.up_codec = "delta:bits=4";
  hs.down_codec = "quant:bits=8";
  hs.optim.lr = 3e-3;
  hs.optim.warmup_steps = 10;
  double acc = 0;
  auto l = losses_of(mc, hs, *task, 120, 32, &acc);
  EXPECT_LT(mean(l, 100, 120), 0.6 * mean(l, 0, 10));
  EXPECT_GT(acc, 0.5);  // 4 classes: chance is 0.25
}

TEST(Learning, PretrainedWeightsReachTheSplitModelIncludingAnSftLayer) {
  auto task = t::make_task("fortunes-language", 32, 50);
  t::ModelConfig mc;
  mc.kind = "bert";
  mc.task = "mlm";
  mc.width = 32;
  mc.depth = 2;
  mc.max_len = 32;
  t::OptimConfig oc;
  t::RunOptions ro;
  ro.steps = 5;
  ro.batch = 8;
  auto path = (std::filesystem::temp_directory_path() / ("seam_pre_" + std::to_string(::getpid()) + ".pt")).string();
  t::pretrain(mc, oc, *task, ro, path);
  // Fine-tune config: classification head (new shape), SFT in the last edge block.
  t::ModelConfig ft = mc;
  ft.task = "classify";
  ft.classes = 4;
  ft.split = 2;
  ft.sft_rank = 4;
  ft.seed = 99;  // a different init: only loading can make the weights agree
  auto sm = t::build_split_model(ft, path);
  auto full = t::build_full_model(mc);
  auto skipped = t::load_pretrained(full, path);
  EXPECT_TRUE(skipped.empty());
  auto named = full.named_parameters();
  std::map<std::string, torch::Tensor> pre(named.begin(), named.end());
  torch::Tensor emb, fc1, up, down;
  for (auto& [n, p] : sm.edge.named_parameters())
    if (n == "0.tok.weight") emb = p;
    else if (n == "1.sft_down") down = p;
  for (auto& [n, p] : sm.cloud.named_parameters())
    if (n == "1.sft_up") up = p;
  ASSERT_TRUE(emb.defined() && up.defined() && down.defined());
  EXPECT_TRUE(torch::equal(emb, pre.at("0.tok.weight")));
  // The SFT factors approximate the *pretrained* fc1 (best rank-4 error).
  auto w1 = pre.at("1.fc1.weight");
  auto s = torch::linalg::svdvals(w1.to(torch::kDouble), c10::nullopt);
  double err = (torch::matmul(up, down) - w1).pow(2).sum().item<double>();
  EXPECT_NEAR(err, s.narrow(0, 4, s.size(0) - 4).pow(2).sum().item<double>(), 1e-3);
  // Another --max-len: the position embedding is reported as not loaded, with both shapes.
  t::ModelConfig longer = ft;
  longer.max_len = 64;
  auto report = t::check_pretrained(longer, path);
  EXPECT_EQ(report.kind, "bert");
  ASSERT_FALSE(report.skipped.empty());
  EXPECT_NE(report.describe().find("0.pos: shape [1, 32, 32] in the checkpoint, [1, 64, 32] in the model"),
            std::string::npos)
      << report.describe();
  // Another model kind is refused, not loaded in part.
  t::ModelConfig vit;
  vit.split = 2;
  vit.classes = 10;
  EXPECT_THROW(t::build_split_model(vit, path), t::CheckpointError);
  std::filesystem::remove(path);
  EXPECT_THROW(t::make_task("imagenet"), std::invalid_argument);
}

}  // namespace
