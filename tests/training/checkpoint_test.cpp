#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "seam/training/checkpoint.hpp"
#include "seam/training/split_step.hpp"

namespace t = seam::training;
namespace fs = std::filesystem;

namespace {

struct Dir {
  fs::path p = fs::temp_directory_path() / ("seam_ckpt_" + std::to_string(::getpid()) + "_" +
                                            ::testing::UnitTest::GetInstance()->current_test_info()->name());
  Dir() { fs::create_directories(p); }
  ~Dir() { fs::remove_all(p); }
  std::string operator/(const std::string& f) const { return (p / f).string(); }
};

t::ModelConfig cfg() {
  t::ModelConfig c;
  c.kind = "cnn";  // has BatchNorm buffers too
  c.cnn_width = 4;
  c.cnn_stages = 2;
  c.split = 2;
  c.seed = 5;
  return c;
}

// Trains `steps` split steps on a fixed batch and returns the losses.
std::vector<double> train(t::SplitModel& sm, t::Optimizer* eo, t::Optimizer* co, int from, int steps) {
  std::vector<double> losses;
  for (int s = from; s < from + steps; ++s) {
    auto g = torch::make_generator<at::CPUGeneratorImpl>(s);
    auto x = torch::randn({4, 1, 28, 28}, g);
    auto y = torch::randint(0, 10, {4}, g, torch::kLong);
    eo->zero_grad();
    co->zero_grad();
    auto loss = t::task_loss("classify", sm.cloud.forward(sm.edge.forward(x, {}), {}), y);
    loss.backward();
    eo->step(s);
    co->step(s);
    losses.push_back(loss.item<double>());
  }
  return losses;
}

TEST(Checkpoint, RoundTripResumesExactly) {
  Dir d;
  auto c = cfg();
  t::OptimConfig oc;
  // Straight through: 6 steps.
  auto a = t::build_split_model(c);
  t::Optimizer ae(a.edge, oc), ac(a.cloud, oc);
  auto straight = train(a, &ae, &ac, 0, 6);
  // 3 steps, checkpoint, fresh objects, load, 3 more.
  auto b = t::build_split_model(c);
  t::Optimizer be(b.edge, oc), bc(b.cloud, oc);
  train(b, &be, &bc, 0, 3);
  const auto fp = t::fingerprint(c, b.edge, b.cloud);
  t::CheckpointParts parts{&c, &b.edge, &b.cloud, &be, &bc, 3, fp};
  t::save_checkpoint(d / "ck.pt", parts);
  auto r = t::build_split_model(c);
  t::Optimizer re(r.edge, oc), rc(r.cloud, oc);
  t::CheckpointParts in{&c, &r.edge, &r.cloud, &re, &rc, 0, fp};
  EXPECT_EQ(t::load_checkpoint(d / "ck.pt", in), 3);
  auto resumed = train(r, &re, &rc, 3, 3);
  for (int i = 0; i < 3; ++i) EXPECT_DOUBLE_EQ(resumed[i], straight[3 + i]) << i;
  EXPECT_EQ(t::config_to_string(t::checkpoint_config(d / "ck.pt")), t::config_to_string(c));
  // Config text is checked strictly.
  EXPECT_THROW(t::config_from_string("width=12abc\n"), std::invalid_argument);
  EXPECT_THROW(t::config_from_string("width=\n"), std::invalid_argument);
  EXPECT_THROW(t::config_from_string("colour=blue\n"), std::invalid_argument);
  EXPECT_THROW(t::config_from_string("width 12\n"), std::invalid_argument);
  EXPECT_EQ(t::config_from_string("width=12\nkind=bert\n").width, 12);
  // sft_skip is written only when set, so the text of older configs is unchanged.
  EXPECT_EQ(t::config_to_string(c).find("sft_skip"), std::string::npos);
  auto skip = c;
  skip.sft_skip = "pinv";
  EXPECT_EQ(t::config_from_string(t::config_to_string(skip)).sft_skip, "pinv");
}

TEST(Checkpoint, CrashDuringSaveLeavesThePreviousCheckpointIntact) {
  Dir d;
  auto c = cfg();
  t::OptimConfig oc;
  auto m = t::build_split_model(c);
  t::Optimizer e(m.edge, oc), cl(m.cloud, oc);
  const auto fp = t::fingerprint(c, m.edge, m.cloud);
  t::CheckpointParts parts{&c, &m.edge, &m.cloud, &e, &cl, 1, fp};
  t::save_checkpoint(d / "ck.pt", parts);
  const auto before = fs::file_size(d / "ck.pt");
  train(m, &e, &cl, 1, 2);
  parts.step = 3;
  EXPECT_THROW(t::save_checkpoint(d / "ck.pt", parts, t::SaveFaults{true}), t::CheckpointError);
  // No temp file left behind; the old checkpoint still loads, at its old step.
  std::size_t files = 0;
  for (auto& f : fs::directory_iterator(d.p)) files += f.is_regular_file();
  EXPECT_EQ(files, 1u);
  EXPECT_EQ(fs::file_size(d / "ck.pt"), before);
  auto r = t::build_split_model(c);
  t::CheckpointParts in{&c, &r.edge, &r.cloud, nullptr, nullptr, 0, fp};
  EXPECT_EQ(t::load_checkpoint(d / "ck.pt", in), 1);
}

TEST(Checkpoint, RefusesMismatchedFingerprintAndDamagedFiles) {
  Dir d;
  auto c = cfg();
  auto m = t::build_split_model(c);
  const auto fp = t::fingerprint(c, m.edge, m.cloud);
  t::CheckpointParts parts{&c, &m.edge, &m.cloud, nullptr, nullptr, 1, fp};
  t::save_checkpoint(d / "ck.pt", parts);

  auto other = cfg();
  other.split = 3;  // another split: halves no longer fit
  auto o = t::build_split_model(other);
  const auto ofp = t::fingerprint(other, o.edge, o.cloud);
  EXPECT_NE(ofp, fp);
  t::CheckpointParts in{&other, &o.edge, &o.cloud, nullptr, nullptr, 0, ofp};
  try {
    t::load_checkpoint(d / "ck.pt", in);
    FAIL() << "fingerprint mismatch must be refused";
  } catch (const t::CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("does not match"), std::string::npos) << e.what();
  }
  // Truncated file, missing file, an edge-only checkpoint asked for the cloud half.
  fs::copy_file(d / "ck.pt", d / "cut.pt");
  fs::resize_file(d / "cut.pt", fs::file_size(d / "cut.pt") / 2);
  t::CheckpointParts in2{&c, &m.edge, &m.cloud, nullptr, nullptr, 0, fp};
  EXPECT_THROW(t::load_checkpoint(d / "cut.pt", in2), t::CheckpointError);
  EXPECT_THROW(t::load_checkpoint(d / "missing.pt", in2), t::CheckpointError);
  t::CheckpointParts edge_only{&c, &m.edge, nullptr, nullptr, nullptr, 1, fp};
  t::save_checkpoint(d / "edge.pt", edge_only);
  EXPECT_THROW(t::load_checkpoint(d / "edge.pt", in2), t::CheckpointError);
}

}  // namespace
