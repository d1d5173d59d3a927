// PTQ of native model halves: layers found in call order, the guarantee and
// the simulator on a whole half, the side file, and refused settings.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ATen/CPUGeneratorImpl.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "seam/ptq/model_ptq.hpp"

namespace p = seam::ptq;
namespace t = seam::training;

namespace {

t::ModelConfig vit_config() {
  t::ModelConfig c;
  c.kind = "vit";
  c.width = 32;
  c.depth = 2;
  c.heads = 2;
  c.split = 3;  // patch embedding and both blocks on the edge
  c.seed = 5;
  return c;
}

std::vector<p::CalibBatch> images(int batches, std::int64_t n, std::uint64_t seed) {
  auto g = at::make_generator<at::CPUGeneratorImpl>(seed);
  std::vector<p::CalibBatch> out;
  for (int b = 0; b < batches; ++b)
    out.push_back({torch::rand({n, 1, 28, 28}, g), t::BatchContext{{}, n}});
  return out;
}

double rel_error(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).norm().item<double>() / b.norm().item<double>();
}

}  // namespace

TEST(PtqModel, FindsLayersInCallOrder) {
  auto m = t::build_split_model(vit_config());
  auto names = p::find_layers(m.edge, images(1, 2, 1).front());
  const std::vector<std::string> want{"0.conv.weight",      "1.attn.qkv.weight", "1.attn.proj.weight",
                                      "1.fc1.weight",       "1.fc2.weight",      "2.attn.qkv.weight",
                                      "2.attn.proj.weight", "2.fc1.weight",      "2.fc2.weight"};
  EXPECT_EQ(names, want);
}

TEST(PtqModel, AxeHalfNeverOverflowsAndSimulationMatches) {
  auto m = t::build_split_model(vit_config());
  auto calib = images(2, 16, 2);
  auto test = images(1, 16, 3).front();
  torch::NoGradGuard ng;
  m.edge.train(false);
  const auto ref = m.edge.forward(test.x, test.ctx);
  p::PtqOptions o;
  o.spec.method = p::Method::gpfq;
  o.spec.axe = true;
  o.spec.acc_bits = 14;
  o.spec.tile = 64;  // fc2 (128 inputs) has two tiles; smaller layers are one
  std::vector<std::string> seen;
  auto r = p::quantize_half(m.edge, calib, o, [&](const p::PtqProgress& pr) {
    if (pr.layer) seen.push_back(pr.layer->name);
  });
  ASSERT_EQ(r.layers.size(), 9u);
  EXPECT_EQ(seen.size(), 9u);
  for (const auto& l : r.layers) {
    const auto q = l.q.reshape({l.q.size(0), -1});
    auto wc = p::worst_case_sums(q, l.act.range(), l.spec.tile);
    const std::int64_t lim = (std::int64_t{1} << 13) - 1;
    EXPECT_LE(wc.upper.max().item<std::int64_t>(), lim) << l.name;
    EXPECT_GE(wc.lower.min().item<std::int64_t>(), -lim) << l.name;
    EXPECT_EQ(l.spec.tile, l.q.numel() / l.q.size(0) > 64 ? 64 : 0) << l.name;
    EXPECT_GE(l.output_error, 0.0);
  }
  at::Tensor fake, simulated;
  {
    p::QuantizedExecution run(m.edge, r);
    fake = m.edge.forward(test.x, test.ctx);
  }
  p::ExecutionStats st;
  {
    p::QuantizedExecution run(m.edge, r, {true, 0, -1});
    simulated = m.edge.forward(test.x, test.ctx);
    st = run.stats();
  }
  EXPECT_GT(st.dot_products, 0);
  EXPECT_EQ(st.overflowed, 0);
  EXPECT_LT(rel_error(simulated, fake), 1e-4);
  EXPECT_GT(rel_error(fake, ref), 0.0);
  EXPECT_LT(rel_error(fake, ref), 1.0);  // P=14 binds hard on 128-input layers
}

TEST(PtqModel, RoundToNearestOverflowsANarrowAccumulator) {
  auto m = t::build_split_model(vit_config());
  torch::NoGradGuard ng;
  p::PtqOptions o;
  o.spec.method = p::Method::rtn;
  auto r = p::quantize_half(m.edge, images(1, 8, 4), o);
  auto test = images(1, 8, 5).front();
  p::QuantizedExecution run(m.edge, r, {true, 12, 0});
  m.edge.forward(test.x, test.ctx);
  EXPECT_GT(run.stats().overflowed, 0);  // An error inside a layer (a tile that does not divide the patch conv's 49
  // inputs) comes back from stats(): LibTorch's observer cannot pass it on.
  p::QuantizedExecution bad(m.edge, r, {true, 12, 32});
  m.edge.forward(test.x, test.ctx);
  try {
    bad.stats();
    ADD_FAILURE() << "no error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("tile size T=32 does not divide the layer's 49 inputs"), std::string::npos);
  }
}

TEST(PtqModel, OptqHalfIsCloserToFloatThanRoundToNearest) {
  auto calib = images(2, 16, 6);
  auto test = images(1, 32, 7).front();
  torch::NoGradGuard ng;
  auto out_with = [&](p::Method method) {
    auto m = t::build_split_model(vit_config());
    m.edge.train(false);
    const auto ref = m.edge.forward(test.x, test.ctx);
    p::PtqOptions o;
    o.spec.method = method;
    o.spec.weight_bits = 3;
    auto r = p::quantize_half(m.edge, calib, o);
    p::QuantizedExecution run(m.edge, r);
    return rel_error(m.edge.forward(test.x, test.ctx), ref);
  };
  EXPECT_LT(out_with(p::Method::optq), out_with(p::Method::rtn));
}

TEST(PtqModel, SideFileRoundTripsOntoAFreshModel) {
  auto c = vit_config();
  auto m = t::build_split_model(c);
  p::PtqOptions o;
  o.spec.axe = true;
  o.spec.acc_bits = 16;
  auto r = p::quantize_half(m.edge, images(1, 8, 8), o);
  const auto path = (std::filesystem::temp_directory_path() / "seam_ptq_side_test.ptq").string();
  p::save_ptq(path, r);
  auto back = p::load_ptq(path);
  std::remove(path.c_str());
  ASSERT_EQ(back.layers.size(), r.layers.size());
  for (std::size_t i = 0; i < r.layers.size(); ++i) {
    EXPECT_EQ(back.layers[i].name, r.layers[i].name);
    EXPECT_TRUE(torch::equal(back.layers[i].q, r.layers[i].q));
    EXPECT_EQ(back.layers[i].act.zero, r.layers[i].act.zero);
    EXPECT_EQ(back.layers[i].spec.acc_bits, 16);
  }
  auto fresh = t::build_split_model(c);
  p::apply_weights(fresh.edge, back);
  auto test = images(1, 4, 9).front();
  torch::NoGradGuard ng;
  m.edge.train(false);
  fresh.edge.train(false);
  at::Tensor a, b;
  {
    p::QuantizedExecution run(m.edge, r);
    a = m.edge.forward(test.x, test.ctx);
  }
  {
    p::QuantizedExecution run(fresh.edge, back);
    b = fresh.edge.forward(test.x, test.ctx);
  }
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_THROW(p::load_ptq(path), std::runtime_error);
}

TEST(PtqModel, TextHalfWithMaskAndRefusedTile) {
  t::ModelConfig c;
  c.kind = "bert";
  c.width = 32;
  c.depth = 2;
  c.heads = 2;
  c.max_len = 16;
  c.split = 2;
  auto m = t::build_split_model(c);
  auto g = at::make_generator<at::CPUGeneratorImpl>(3);
  auto tokens = torch::randint(0, 256, {4, 16}, g, torch::kInt64);
  auto mask = torch::ones({4, 16}, torch::kInt64);
  mask.narrow(1, 10, 6).zero_();
  std::vector<p::CalibBatch> calib{{tokens, t::BatchContext{mask, 4}}};
  p::PtqOptions o;
  o.spec.method = p::Method::optq;
  o.spec.axe = true;
  o.spec.acc_bits = 16;
  o.spec.tile = 24;  // 32 inputs of qkv are not a multiple of 24
  try {
    p::quantize_half(m.edge, calib, o);
    ADD_FAILURE() << "tile 24 accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("tile size T=24 does not divide the layer's 32 inputs (layer 1.attn.qkv.weight)"),
              std::string::npos)
        << e.what();
  }
  o.spec.tile = 16;
  auto r = p::quantize_half(m.edge, calib, o);
  EXPECT_EQ(r.layers.size(), 4u);
  EXPECT_EQ(r.layers.front().name, "1.attn.qkv.weight");
}

// A TorchScript model made in Python: conv, relu, flatten, linear, relu, linear.
// Its edge half [0, 5) is quantized through the same observer as native models.
TEST(PtqTorchScript, ScriptedHalfIsQuantizedWithTheGuarantee) {
  namespace fs = std::filesystem;
  const auto dir = (fs::temp_directory_path() / ("seam_ptq_ts_" + std::to_string(::getpid()))).string();
  fs::create_directories(dir);
  std::ofstream(dir + "/make.py") << R"PY(
import sys, torch
torch.manual_seed(0)
m = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                        torch.nn.Linear(8 * 6 * 6, 64), torch.nn.ReLU(), torch.nn.Linear(64, 5))
torch.jit.script(m).save(sys.argv[1] + '/seq.pt')
)PY";
  ASSERT_EQ(std::system(("/usr/bin/python3 " + dir + "/make.py " + dir).c_str()), 0);
  t::ModelConfig c;
  c.kind = "torchscript";
  c.script_path = dir + "/seq.pt";
  c.split = 5;
  auto m = t::build_split_model(c);
  fs::remove_all(dir);
  auto g = at::make_generator<at::CPUGeneratorImpl>(11);
  std::vector<p::CalibBatch> calib{{torch::randn({32, 1, 6, 6}, g), t::BatchContext{{}, 32}}};
  auto test = torch::randn({16, 1, 6, 6}, g);
  EXPECT_EQ(p::find_layers(m.edge, calib.front()), (std::vector<std::string>{"0.weight", "3.weight"}));
  p::PtqOptions o;
  o.spec.method = p::Method::optq;
  o.spec.axe = true;
  o.spec.acc_bits = 13;
  o.spec.tile = 96;  // the linear layer's 288 inputs in three tiles
  auto r = p::quantize_half(m.edge, calib, o);
  ASSERT_EQ(r.layers.size(), 2u);
  EXPECT_EQ(r.layers[0].kind, "conv2d");
  EXPECT_EQ(r.layers[1].spec.tile, 96);
  EXPECT_EQ(r.layers[1].act.is_signed, false);  // after a ReLU
  torch::NoGradGuard ng;
  at::Tensor fake, simulated;
  {
    p::QuantizedExecution run(m.edge, r);
    fake = m.edge.forward(test, t::BatchContext{{}, 16});
  }
  {
    p::QuantizedExecution run(m.edge, r, {true, 0, -1});
    simulated = m.edge.forward(test, t::BatchContext{{}, 16});
    EXPECT_EQ(run.stats().overflowed, 0);
    EXPECT_GT(run.stats().dot_products, 0);
  }
  EXPECT_LT(rel_error(simulated, fake), 1e-4);
}
