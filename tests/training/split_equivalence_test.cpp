// Equivalence, the key test: split training through the real frame encoding
// with the `none` codec equals unsplit training with the same seed and data.
#include <gtest/gtest.h>
#include <set>
#include <torch/torch.h>

#include "seam/training/edge_half.hpp"
#include "seam/training/model.hpp"
#include "seam/training/split_step.hpp"
#include "session/local_session.hpp"

namespace t = seam::training;

namespace {

t::ModelConfig small(const std::string& kind, std::int64_t split) {
  t::ModelConfig c;
  c.kind = kind;
  c.task = kind == "gpt" ? "lm" : "classify";
  c.width = 32;
  c.depth = 3;
  c.heads = 4;
  c.mlp_ratio = 2;
  c.max_len = 16;
  c.cnn_width = 8;
  c.cnn_stages = 2;
  c.split = split;
  c.seed = 123;
  return c;
}

struct Batch {
  torch::Tensor x, labels, mask;
  std::vector<std::int64_t> ids;
};

// Four fixed batches, cycled: random data, but learnable by memorisation.
Batch make_batch(const t::ModelConfig& c, int step) {
  step %= 4;
  auto g = torch::make_generator<at::CPUGeneratorImpl>(1000 + step);
  Batch b;
  const int n = 8;
  for (int i = 0; i < n; ++i) b.ids.push_back(step * n + i);
  if (c.kind == "vit" || c.kind == "cnn") {
    b.x = torch::randn({n, 1, 28, 28}, g);
    b.labels = torch::randint(0, 10, {n}, g, torch::kLong);
    return b;
  }
  b.x = torch::randint(0, 256, {n, 16}, g, torch::kLong);
  if (c.kind == "bert") {
    auto len = torch::randint(4, 17, {n, 1}, g, torch::kLong);
    b.mask = (torch::arange(16, torch::kLong).unsqueeze(0) < len).to(torch::kLong);
    b.x = torch::where(b.mask.eq(1), b.x, torch::full_like(b.x, 256));
    b.labels = torch::randint(0, 10, {n}, g, torch::kLong);
  } else {
    b.labels = torch::cat({b.x.narrow(1, 1, 15), torch::full({n, 1}, -100, torch::kLong)}, 1);
  }
  return b;
}

struct Run {
  std::vector<double> losses;
  t::NamedTensors params;
};

t::OptimConfig optim() {
  t::OptimConfig o;
  o.lr = 3e-3;
  o.warmup_steps = 3;
  o.total_steps = 20;
  return o;
}

Run unsplit(const t::ModelConfig& c, int steps) {
  auto m = t::build_full_model(c);
  t::Optimizer opt(m, optim());
  Run r;
  for (int s = 0; s < steps; ++s) {
    auto b = make_batch(c, s);
    m.train(true);
    opt.zero_grad();
    auto logits = m.forward(b.x, {b.mask, static_cast<std::int64_t>(b.ids.size())});
    auto loss = t::task_loss(c.task, logits, b.labels);
    loss.backward();
    opt.step(s);
    r.losses.push_back(loss.item<double>());
  }
  r.params = m.named_parameters();
  return r;
}

Run split(const t::ModelConfig& c, int steps, const std::string& up = "none", const std::string& down = "none") {
  auto sm = t::build_split_model(c);
  t::HalfSettings hs;
  hs.task = c.task;
  hs.optim = optim();
  hs.up_codec = up;
  hs.down_codec = down;
  seam::session::test::LocalSession local(sm.edge, sm.cloud, c, hs);
  Run r;
  for (int s = 0; s < steps; ++s) {
    auto b = make_batch(c, s);
    auto m = local.step(b.x, b.labels, b.ids, b.mask);
    r.losses.push_back(m.loss);
    EXPECT_GT(m.bytes_up, 0u);
    EXPECT_GT(m.bytes_down, 0u);
  }
  r.params = sm.edge.named_parameters();
  for (auto& p : sm.cloud.named_parameters()) r.params.push_back(p);
  return r;
}

class SplitEquivalence : public ::testing::TestWithParam<std::pair<std::string, std::int64_t>> {};

TEST_P(SplitEquivalence, TwentyStepsMatchUnsplitTraining) {
  auto [kind, k] = GetParam();
  auto c = small(kind, k);
  auto ref = unsplit(c, 20);
  auto got = split(c, 20);
  ASSERT_EQ(ref.losses.size(), got.losses.size());
  for (std::size_t s = 0; s < ref.losses.size(); ++s)
    EXPECT_NEAR(got.losses[s], ref.losses[s], 1e-6 * std::max(1.0, std::abs(ref.losses[s]))) << "step " << s;
  EXPECT_LT(ref.losses[16], ref.losses[0]);  // it trained: same batch, lower loss
  std::map<std::string, torch::Tensor> by_name(got.params.begin(), got.params.end());
  ASSERT_EQ(by_name.size(), ref.params.size());
  for (auto& [name, p] : ref.params) {
    ASSERT_TRUE(by_name.count(name)) << name;
    EXPECT_LT((by_name[name] - p).abs().max().item<double>(), 1e-6) << name;
  }
}

INSTANTIATE_TEST_SUITE_P(Models, SplitEquivalence,
                         ::testing::Values(std::make_pair(std::string("vit"), std::int64_t{1}),
                                           std::make_pair(std::string("vit"), std::int64_t{3}),
                                           std::make_pair(std::string("cnn"), std::int64_t{1}),
                                           std::make_pair(std::string("cnn"), std::int64_t{2}),
                                           std::make_pair(std::string("bert"), std::int64_t{2}),
                                           std::make_pair(std::string("bert"), std::int64_t{4}),
                                           std::make_pair(std::string("gpt"), std::int64_t{1}),
                                           std::make_pair(std::string("gpt"), std::int64_t{3})),
                         [](const auto& i) { return i.param.first + "_split" + std::to_string(i.param.second); });

// What a device builds for a prepared job: the split model's edge half,
// tensor for tensor, and not one cloud block.
TEST(SplitVariants, TheEdgeHalfAloneHasExactlyTheEdgeTensorsOfTheSplitModel) {
  auto vit_sft_c3 = small("vit", 2);
  vit_sft_c3.sft_rank = 4;
  vit_sft_c3.c3_groups = 2;
  for (const auto& c : {small("vit", 1), small("cnn", 2), small("bert", 2), vit_sft_c3}) {
    auto sm = t::build_split_model(c, "", /*derive=*/false);
    auto edge = t::build_edge_half(c);
    auto names = [](const t::NamedTensors& v) {
      std::vector<std::pair<std::string, std::vector<std::int64_t>>> out;
      for (const auto& [n, x] : v) out.emplace_back(n, x.sizes().vec());
      return out;
    };
    EXPECT_EQ(names(edge.named_parameters()), names(sm.edge.named_parameters())) << c.kind;
    EXPECT_EQ(names(edge.named_buffers()), names(sm.edge.named_buffers())) << c.kind;
  }
}

TEST(SplitVariants, C3WithOneUnitaryKeyIsExactlyThePlainSplit) {
  auto c = small("vit", 2);
  auto plain = split(c, 5);
  c.c3_groups = 1;
  c.c3_keys = "unitary";
  auto c3 = split(c, 5);
  for (std::size_t s = 0; s < plain.losses.size(); ++s) EXPECT_NEAR(c3.losses[s], plain.losses[s], 1e-5) << s;
}

TEST(SplitVariants, C3ShrinksTheWireAndStillTrains) {
  auto bytes_up = [](std::int64_t groups) {
    auto c = small("bert", 2);
    c.c3_groups = groups;
    auto sm = t::build_split_model(c);
    t::HalfSettings hs;
    hs.optim = optim();
    seam::session::test::LocalSession local(sm.edge, sm.cloud, c, hs);
    auto b = make_batch(c, 0);
    auto m = local.step(b.x, b.labels, b.ids, b.mask);
    EXPECT_TRUE(std::isfinite(m.loss));
    EXPECT_EQ(m.up.total(), m.bytes_up);
    return m.up;
  };
  // 8 samples of [16, 32] fp32 bound into 2: 3/4 of 16 KiB of activations disappear
  // from the frame; labels, mask and header stay the same size, and the
  // metadata differs only by the varint of the tensor's length.
  const auto plain = bytes_up(0), c3 = bytes_up(4);
  EXPECT_EQ(plain.tensor - c3.tensor, 8u * 16 * 32 * 4 * 3 / 4);
  EXPECT_EQ(plain.mask, c3.mask);
  EXPECT_EQ(plain.labels, c3.labels);
  EXPECT_EQ(plain.ids, c3.ids);
  EXPECT_EQ(plain.header, c3.header);
  EXPECT_LE(plain.metadata - c3.metadata, 1u);
}

TEST(SplitVariants, SftBottleneckSendsRankRFeaturesAndStartsFromThePretrainedLayer) {
  auto c = small("gpt", 2);
  c.sft_rank = 4;
  auto sm = t::build_split_model(c);
  auto x = make_batch(c, 0).x;
  sm.edge.train(false);
  auto a = sm.edge.forward(x, {});
  EXPECT_EQ(a.sizes(), (std::vector<std::int64_t>{8, 16, 4}));
  // The factors come from the unsplit model's fc1: their product is its best rank-4 approximation.
  auto full = t::build_full_model(c);
  torch::Tensor w1;
  for (auto& [n, p] : full.named_parameters())
    if (n == "1.fc1.weight") w1 = p;
  torch::Tensor up, down;
  for (auto& [n, p] : sm.edge.named_parameters())
    if (n == "1.sft_down") down = p;
  for (auto& [n, p] : sm.cloud.named_parameters())
    if (n == "1.sft_up") up = p;
  ASSERT_TRUE(w1.defined() && up.defined() && down.defined());
  auto s = torch::linalg::svdvals(w1.to(torch::kDouble), c10::nullopt);
  double err = (torch::matmul(up, down) - w1).pow(2).sum().item<double>();
  EXPECT_NEAR(err, s.narrow(0, 4, s.size(0) - 4).pow(2).sum().item<double>(), 1e-4);
  // And it trains.
  t::HalfSettings hs;
  hs.task = "lm";
  hs.optim = optim();
  seam::session::test::LocalSession local(sm.edge, sm.cloud, c, hs);
  double first = 0, last = 0;
  auto b = make_batch(c, 0);
  for (int step = 0; step < 15; ++step) {
    auto m = local.step(b.x, b.labels, b.ids);
    if (step == 0) first = m.loss;
    last = m.loss;
  }
  EXPECT_LT(last, first * 0.8);
}

TEST(SplitVariants, SftSkipStartsAsPlainSftOrFromThePseudoInverseAndTrains) {
  auto c = small("gpt", 2);
  c.sft_rank = 4;
  auto plain = t::build_split_model(c);
  auto b = make_batch(c, 0);
  plain.edge.train(false);
  plain.cloud.train(false);
  const auto a = plain.edge.forward(b.x, {});
  const auto y = plain.cloud.forward(a, {});
  auto param = [](const t::ModelHalf& h, const std::string& name) {
    for (auto& [n, p] : h.named_parameters())
      if (n == name) return p;
    return torch::Tensor();
  };
  const auto down = param(plain.edge, "1.sft_down");
  ASSERT_TRUE(down.defined());
  EXPECT_FALSE(param(plain.cloud, "1.sft_skip").defined());
  std::set<std::string> fingerprints{t::fingerprint(c, plain.edge, plain.cloud)};
  for (const std::string kind : {"zero", "pinv"}) {
    SCOPED_TRACE(kind);
    auto cs = c;
    cs.sft_skip = kind;
    auto sm = t::build_split_model(cs);
    sm.edge.train(false);
    sm.cloud.train(false);
    // The edge and what crosses the link are those of plain SFT.
    const auto as = sm.edge.forward(b.x, {});
    EXPECT_TRUE(torch::equal(as, a));
    auto skip = param(sm.cloud, "1.sft_skip");
    ASSERT_TRUE(skip.defined());
    EXPECT_EQ(skip.sizes(), (std::vector<std::int64_t>{c.width, c.sft_rank}));
    const auto ys = sm.cloud.forward(as, {});
    if (kind == "zero") {
      EXPECT_EQ(skip.abs().max().item<float>(), 0.0f);
      EXPECT_TRUE(torch::equal(ys, y));  // starts as plain SFT, exactly
    } else {
      // pinv(E), recomputed in float64: E P = I on the r features.
      auto e = down.to(torch::kDouble);
      auto want = torch::matmul(e.t(), torch::inverse(torch::matmul(e, e.t())));
      EXPECT_LT((skip.to(torch::kDouble) - want).abs().max().item<double>(), 1e-5);
      EXPECT_LT((torch::matmul(e, skip.to(torch::kDouble)) - torch::eye(c.sft_rank, torch::kDouble)).abs().max().item<double>(),
                1e-4);
      EXPECT_FALSE(torch::allclose(ys, y, 1e-3, 1e-3));  // P t reaches the cloud's output
    }
    EXPECT_TRUE(fingerprints.insert(t::fingerprint(cs, sm.edge, sm.cloud)).second) << "fingerprint not distinct";
    // It trains, skip included.
    const auto before = skip.clone();
    t::HalfSettings hs;
    hs.task = "lm";
    hs.optim = optim();
    seam::session::test::LocalSession local(sm.edge, sm.cloud, cs, hs);
    double first = 0, last = 0;
    for (int step = 0; step < 15; ++step) {
      auto m = local.step(b.x, b.labels, b.ids);
      if (step == 0) first = m.loss;
      last = m.loss;
    }
    EXPECT_LT(last, first * 0.8);
    EXPECT_GT((skip - before).abs().max().item<float>(), 0.0f);
  }
}

TEST(SplitConfig, BadConfigsGetClearErrors) {
  auto msg = [](t::ModelConfig c) {
    try {
      t::build_split_model(c);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  auto c = small("vit", 1);
  c.kind = "resnet";
  EXPECT_NE(msg(c).find("unknown model kind 'resnet'"), std::string::npos);
  c = small("vit", 5);
  EXPECT_NE(msg(c).find("valid splits are 1..4"), std::string::npos);
  c = small("cnn", 1);
  c.sft_rank = 4;
  EXPECT_NE(msg(c).find("sft_rank needs a transformer"), std::string::npos);
  c = small("vit", 1);
  c.width = 30;
  EXPECT_NE(msg(c).find("multiple of heads"), std::string::npos);
  c = small("gpt", 1);
  c.task = "classify";
  EXPECT_NE(msg(c).find("does not fit"), std::string::npos);
  c = small("vit", 2);
  c.sft_rank = 4;
  c.sft_skip = "linear";
  EXPECT_NE(msg(c).find("sft_skip must be none, zero or pinv (got 'linear')"), std::string::npos) << msg(c);
  c.sft_rank = 0;
  c.sft_skip = "zero";
  EXPECT_NE(msg(c).find("sft_skip needs an SFT bottleneck"), std::string::npos) << msg(c);
}

}  // namespace
