// TorchScript models made in Python during the test: split training from C++
// equals unsplit training from C++ and Python's own training of the same model.
#include <gtest/gtest.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "seam/training/checkpoint.hpp"
#include "seam/training/split_step.hpp"
#include "seam/session/job.hpp"
#include "seam/session/links.hpp"
#include "session/local_session.hpp"

namespace t = seam::training;
namespace fs = std::filesystem;

namespace {

const char* kPython = R"PY(
import sys, torch
d = sys.argv[1]
torch.manual_seed(0)
m = torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.ReLU(), torch.nn.Linear(16, 16),
                        torch.nn.LayerNorm(16), torch.nn.Linear(16, 5))
torch.jit.script(m).save(d + '/seq.pt')
torch.jit.script(m[:2]).save(d + '/front.pt')
torch.jit.script(m[2:]).save(d + '/back.pt')
class WithList(torch.nn.Module):
    def __init__(self, seq):
        super().__init__()
        self.blocks = torch.nn.ModuleList(list(seq))
    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return x
torch.jit.script(WithList(m)).save(d + '/list.pt')
torch.save(dict(m.state_dict()), d + '/sd.pt')
g = torch.Generator().manual_seed(1)
x = torch.randn(20, 8, 12, generator=g)
y = torch.randint(0, 5, (20, 8), generator=g)
torch.save(x, d + '/x.pt')
torch.save(y, d + '/y.pt')
opt = torch.optim.AdamW(m.parameters(), lr=1e-2, weight_decay=0.0)
losses = []
for s in range(20):
    opt.zero_grad()
    loss = torch.nn.functional.cross_entropy(m(x[s]), y[s])
    loss.backward()
    opt.step()
    losses.append(loss.item())
torch.save(torch.tensor(losses, dtype=torch.float64), d + '/losses.pt')
)PY";

at::Tensor load_py(const std::string& f) {
  std::ifstream in(f, std::ios::binary);
  std::vector<char> b((std::istreambuf_iterator<char>(in)), {});
  return torch::pickle_load(b).toTensor();
}

class TorchScriptModels : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = (fs::temp_directory_path() / ("seam_ts_" + std::to_string(::getpid()))).string();
    fs::create_directories(dir_);
    std::ofstream(dir_ + "/make.py") << kPython;
    ASSERT_EQ(std::system(("/usr/bin/python3 " + dir_ + "/make.py " + dir_).c_str()), 0);
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }
  static std::string dir_;

  static t::OptimConfig optim() {
    t::OptimConfig o;
    o.lr = 1e-2;
    o.weight_decay = 0;
    o.schedule = "constant";
    return o;
  }

  std::vector<double> run_split(t::ModelConfig c, t::NamedTensors* params = nullptr) {
    auto x = load_py(dir_ + "/x.pt"), y = load_py(dir_ + "/y.pt");
    auto sm = t::build_split_model(c);
    t::HalfSettings hs;
    hs.optim = optim();
    seam::session::test::LocalSession local(sm.edge, sm.cloud, c, hs);
    std::vector<double> losses;
    for (int s = 0; s < 20; ++s) losses.push_back(local.step(x[s], y[s], {0, 1, 2, 3, 4, 5, 6, 7}).loss);
    if (params) {
      *params = sm.edge.named_parameters();
      for (auto& p : sm.cloud.named_parameters()) params->push_back(p);
    }
    return losses;
  }
};
std::string TorchScriptModels::dir_;

TEST_F(TorchScriptModels, SplitSequentialMatchesUnsplitAndPython) {
  auto python = load_py(dir_ + "/losses.pt");
  t::ModelConfig c;
  c.kind = "torchscript";
  c.script_path = dir_ + "/seq.pt";
  EXPECT_EQ(t::block_count(c), 5);
  // Unsplit, from C++.
  auto full = t::build_full_model(c);
  t::Optimizer opt(full, optim());
  auto x = load_py(dir_ + "/x.pt"), y = load_py(dir_ + "/y.pt");
  std::vector<double> unsplit;
  for (int s = 0; s < 20; ++s) {
    opt.zero_grad();
    auto loss = t::task_loss("classify", full.forward(x[s], {}), y[s]);
    loss.backward();
    opt.step(s);
    unsplit.push_back(loss.item<double>());
  }
  for (std::int64_t k : {2, 4}) {
    c.split = k;
    t::NamedTensors params;
    auto split = run_split(c, &params);
    for (int s = 0; s < 20; ++s) {
      EXPECT_NEAR(split[s], unsplit[s], 1e-6) << "split " << k << " step " << s;
      EXPECT_NEAR(split[s], python[s].item<double>(), 1e-5) << "python, split " << k << " step " << s;
    }
    std::map<std::string, at::Tensor> got(params.begin(), params.end());
    for (auto& [n, p] : full.named_parameters()) EXPECT_LT((got.at(n) - p).abs().max().item<double>(), 1e-6) << n;
  }
}

TEST_F(TorchScriptModels, FrontBackPairAndModuleListFormTrainTheSame) {
  auto python = load_py(dir_ + "/losses.pt");
  t::ModelConfig pair;
  pair.kind = "torchscript";
  pair.script_path = dir_ + "/front.pt";
  pair.script_back_path = dir_ + "/back.pt";
  auto a = run_split(pair);
  t::ModelConfig list;
  list.kind = "torchscript";
  list.script_path = dir_ + "/list.pt";
  list.split = 3;
  auto b = run_split(list);
  for (int s = 0; s < 20; ++s) {
    EXPECT_NEAR(a[s], python[s].item<double>(), 1e-5) << s;
    EXPECT_NEAR(b[s], python[s].item<double>(), 1e-5) << s;
  }
}

TEST_F(TorchScriptModels, CheckpointRoundTripAndBadInput) {
  t::ModelConfig c;
  c.kind = "torchscript";
  c.script_path = dir_ + "/seq.pt";
  c.split = 2;
  auto m = t::build_split_model(c);
  t::Optimizer eo(m.edge, optim()), co(m.cloud, optim());
  {
    torch::NoGradGuard ng;
    for (auto& p : m.edge.parameters()) p.fill_(0.25);
  }
  const auto fp = t::fingerprint(c, m.edge, m.cloud);
  t::CheckpointParts parts{&c, &m.edge, &m.cloud, &eo, &co, 7, fp};
  t::save_checkpoint(dir_ + "/ck.pt", parts);
  auto r = t::build_split_model(c);
  t::Optimizer ro(r.edge, optim()), rc(r.cloud, optim());
  t::CheckpointParts in{&c, &r.edge, &r.cloud, &ro, &rc, 0, fp};
  EXPECT_EQ(t::load_checkpoint(dir_ + "/ck.pt", in), 7);
  for (auto& p : r.edge.parameters()) EXPECT_TRUE(torch::all(p == 0.25).item<bool>());

  c.split = 5;
  EXPECT_THROW(t::build_split_model(c), std::invalid_argument);
  c.script_path = dir_ + "/missing.pt";
  EXPECT_THROW(t::build_split_model(c), std::invalid_argument);
}

// A TorchScript job: prepared from a front/back pair, its front half
// downloaded by an edge (never the back file or the cloud's weights), and
// trained through the cloud's and the edge's sessions of the prepared files:
// the losses are Python's own training of the unsplit module.
TEST_F(TorchScriptModels, AFrontBackPairJobIsPreparedDownloadedAndTrainsLikePython) {
  namespace ss = seam::session;
  ss::JobSpec spec;
  spec.model.kind = "torchscript";
  spec.model.script_path = dir_ + "/front.pt";
  spec.model.script_back_path = dir_ + "/back.pt";
  spec.half.optim = optim();
  const std::string root = dir_ + "/job_pair";
  ss::prepare_job(spec, root + "/cloud");
  const auto cloud_job = ss::load_job(root + "/cloud");
  EXPECT_TRUE(cloud_job.has_cloud);
  EXPECT_EQ(cloud_job.spec.model.script_path, root + "/cloud/edge.ts");
  ss::CloudSession cloud(cloud_job, {});
  ss::InProcessLink link(cloud);
  const auto edge_job = ss::fetch_job(link, "pair", root + "/edge");
  EXPECT_FALSE(edge_job.has_cloud);
  EXPECT_EQ(edge_job.fingerprint, cloud_job.fingerprint);
  EXPECT_TRUE(fs::exists(root + "/edge/edge.ts"));
  EXPECT_FALSE(fs::exists(root + "/edge/cloud.ts"));
  EXPECT_FALSE(fs::exists(root + "/edge/cloud_init.pt"));
  ss::EdgeSession edge(edge_job, {});
  edge.connect(link, "edge");
  auto x = load_py(dir_ + "/x.pt"), y = load_py(dir_ + "/y.pt");
  auto python = load_py(dir_ + "/losses.pt");
  for (int s = 0; s < 20; ++s) {
    auto m = edge.train_step(link, t::TaskBatch{x[s], y[s], {}, {0, 1, 2, 3, 4, 5, 6, 7}});
    ASSERT_TRUE(m.has_value());
    EXPECT_NEAR(m->loss, python[s].item<double>(), 1e-5) << "step " << s;
  }
  // A changed front file is caught by the manifest.
  std::ofstream(root + "/edge/edge.ts", std::ios::app) << "x";
  try {
    ss::load_job(root + "/edge");
    ADD_FAILURE() << "edge.ts was changed";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("edge.ts' does not match its manifest hash"), std::string::npos) << e.what();
  }
  // One scripted file would put the cloud's blocks on the edge: refused, saying why.
  spec.model.script_path = dir_ + "/seq.pt";
  spec.model.script_back_path.clear();
  spec.model.split = 2;
  try {
    ss::prepare_job(spec, root + "/single");
    ADD_FAILURE() << "a single TorchScript file";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("needs a front/back pair of files"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(root + "/single"));
}

TEST_F(TorchScriptModels, PythonStateDictInitialisesAModelWithMatchingNames) {
  t::ModelConfig c;
  c.kind = "torchscript";
  c.script_path = dir_ + "/seq.pt";
  auto full = t::build_full_model(c);
  {
    torch::NoGradGuard ng;
    for (auto& p : full.parameters()) p.zero_();
  }
  // Script block names are the Sequential's child names, as in the state_dict.
  EXPECT_EQ(t::load_state_dict(full, dir_ + "/sd.pt"), 8u);
  auto x = load_py(dir_ + "/x.pt"), y = load_py(dir_ + "/y.pt");
  auto python = load_py(dir_ + "/losses.pt");
  auto loss = t::task_loss("classify", full.forward(x[0], {}), y[0]);
  EXPECT_NEAR(loss.item<double>(), python[0].item<double>(), 1e-6);
  EXPECT_THROW(t::load_state_dict(full, dir_ + "/x.pt"), std::runtime_error);
}

}  // namespace
