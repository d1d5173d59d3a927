// Pipelined inference over mutual TLS in one process: a pipeline with codec
// `none` gives the unsplit model's outputs (1e-5) with 2 and 3 stages, order
// holds under uneven delays and batch sizes, and a dead stage is named, then
// replaced without restarting the others.
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <random>
#include <thread>
#include <tuple>

#include "../transport/transport_test_util.hpp"
#include "seam/pipeline/stage.hpp"
#include "seam/session/job.hpp"
#include "seam/training/checkpoint.hpp"
#include "seam/training/model.hpp"

namespace seam::pipeline {
namespace {

namespace st = seam::transport;
using st::test::client_tls;
using st::test::server_tls;

training::ModelConfig vit() {
  training::ModelConfig c;
  c.kind = "vit";
  c.width = 32;
  c.depth = 4;
  c.heads = 2;
  c.patch = 7;
  c.seed = 11;
  return c;  // 6 blocks: embed, 4 transformer blocks, head
}

training::ModelConfig bert() {
  training::ModelConfig c;
  c.kind = "bert";
  c.task = "classify";
  c.classes = 4;
  c.width = 32;
  c.depth = 2;
  c.heads = 2;
  c.max_len = 24;
  c.seed = 5;
  return c;  // 4 blocks
}

std::vector<MicroBatch> images(const std::vector<std::int64_t>& sizes, std::uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  std::vector<MicroBatch> out;
  for (auto b : sizes) out.push_back({at::rand({b, 1, 28, 28}, gen), {}});
  return out;
}

std::vector<MicroBatch> texts(const std::vector<std::int64_t>& sizes, std::uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  std::vector<MicroBatch> out;
  for (auto b : sizes) {
    auto tokens = at::randint(0, 256, {b, 24}, gen, at::TensorOptions().dtype(at::kLong));
    auto mask = at::ones({b, 24}, at::TensorOptions().dtype(at::kLong));
    for (std::int64_t i = 0; i < b; ++i) mask[i].slice(0, 4 + (i * 5) % 20).fill_(0);  // varied lengths
    out.push_back({tokens, mask});
  }
  return out;
}

std::vector<at::Tensor> reference(const training::ModelConfig& c, const std::vector<MicroBatch>& in) {
  auto full = training::build_full_model(c);
  full.train(false);
  c10::InferenceMode guard;
  std::vector<at::Tensor> out;
  for (const auto& mb : in) {
    training::BatchContext bc;
    bc.attention_mask = mb.mask;
    bc.batch_size = mb.x.size(0);
    out.push_back(full.forward(mb.x, bc));
  }
  return out;
}

// The source and the stages of one pipeline, ports picked by the system.
struct Pipeline {
  std::unique_ptr<PipelineSource> source;
  std::vector<std::unique_ptr<StageWorker>> stages;
  std::vector<StageOptions> options;

  Pipeline(const training::ModelConfig& c, const std::vector<std::int64_t>& cuts,
           std::function<void(const StageEvent&)> on_event = {}, int queue = 4, st::Millis stall = st::Millis(3000)) {
    SourceOptions so;
    so.tls = server_tls();
    so.result_timeout = st::Millis(3000);
    so.ping_timeout = st::Millis(1000);
    source = std::make_unique<PipelineSource>(so);
    source->start();
    // Last stage first: each stage must know where the next one listens.
    HopOptions next;
    next.name = "source";
    next.port = source->port();
    next.tls = client_tls();
    next.stall_timeout = stall;
    for (std::size_t i = cuts.size() - 1; i-- > 0;) {
      StageOptions o;
      o.name = "s" + std::to_string(i + 1);
      o.tls = server_tls();
      o.model = c;
      o.begin = cuts[i];
      o.end = cuts[i + 1];
      o.next = next;
      o.on_event = on_event;
      o.queue = queue;
      o.max_len = 24;
      stages.insert(stages.begin(), std::make_unique<StageWorker>(o));
      stages.front()->start();
      o.port = stages.front()->port();
      options.insert(options.begin(), o);
      next.name = o.name;
      next.port = o.port;
    }
    so.first = next;
    for (const auto& o : options) so.stages.push_back({o.name, "127.0.0.1", o.port});
    // The source's hop and health checks, now that the stages listen.
    const auto port = source->port();
    source->stop();
    so.port = port;
    source = std::make_unique<PipelineSource>(so);
    source->start();
  }
};

void expect_close(const std::vector<at::Tensor>& got, const std::vector<at::Tensor>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(got[i].sizes(), want[i].sizes()) << "micro-batch " << i;
    EXPECT_LE((got[i] - want[i]).abs().max().item<double>(), 1e-5) << "micro-batch " << i;
  }
}

TEST(PipelineStages, TwoAndThreeStagesGiveTheUnsplitModelsOutputs) {
  const auto c = vit();
  const auto in = images({4, 4, 4, 4, 4, 4, 4, 4}, 1);
  const auto want = reference(c, in);
  {
    Pipeline p(c, {0, 3, 6});
    EXPECT_TRUE(p.stages.back()->last());
    auto r = p.source->run(in);
    expect_close(r.logits, want);
    EXPECT_EQ(p.stages[0]->batches_sent(), in.size());
  }
  {
    Pipeline p(c, {0, 2, 4, 6});
    expect_close(p.source->run(in).logits, want);
  }
}

TEST(PipelineStages, TextModelWithMasksAcrossThreeStages) {
  const auto c = bert();
  const auto in = texts({3, 5, 2, 4}, 2);
  Pipeline p(c, {0, 1, 3, 4});
  expect_close(p.source->run(in).logits, reference(c, in));
}

// Micro-batches of different sizes, each stage's sender pausing a different,
// pseudo-random time: results still come back in order, each its own batch's.
TEST(PipelineStages, OrderHoldsUnderUnevenStageDelays) {
  const auto c = vit();
  std::vector<std::int64_t> sizes;
  for (int i = 0; i < 16; ++i) sizes.push_back(1 + (i * 7) % 6);
  const auto in = images(sizes, 3);
  std::mutex mu;
  std::mt19937 rng(7);
  Pipeline p(c, {0, 1, 4, 6}, [&](const StageEvent&) {
    int us;
    {
      std::lock_guard<std::mutex> lock(mu);
      us = static_cast<int>(rng() % 4000);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(us));
  });
  expect_close(p.source->run(in).logits, reference(c, in));
}

// Queues of one and a sender far slower than the arrivals: every queue
// stays full, handlers wait for room (past their 50 ms polls), and the hop
// before is held back. No micro-batch is lost or reordered.
TEST(PipelineStages, AFullQueueHoldsTheUpstreamBackWithoutLosingAMicroBatch) {
  const auto c = vit();
  const auto in = images({2, 2, 2, 2, 2, 2}, 5);
  Pipeline p(
      c, {0, 3, 6}, [](const StageEvent&) { std::this_thread::sleep_for(std::chrono::milliseconds(120)); }, 1);
  expect_close(p.source->run(in).logits, reference(c, in));
}

// The middle stage dies: the source's error names it. A new process on its
// port (here a new worker) restores the pipeline; the others keep running.
TEST(PipelineStages, ADeadStageIsNamedAndCanBeReplacedAlone) {
  const auto c = vit();
  const auto in = images({2, 2, 2, 2, 2, 2}, 4);
  const auto want = reference(c, in);
  Pipeline p(c, {0, 2, 4, 6});
  expect_close(p.source->run(in).logits, want);
  p.stages[1]->stop();
  try {
    p.source->run(in);
    ADD_FAILURE() << "stage s2 is down";
  } catch (const PipelineError& e) {
    const std::string what = e.what();
    const std::string s2 = "stage 's2' (127.0.0.1:" + std::to_string(p.options[1].port) + ")";
    EXPECT_NE(what.find(s2), std::string::npos) << what;
  }
  p.stages[1] = std::make_unique<StageWorker>(p.options[1]);
  p.stages[1]->start();
  expect_close(p.source->run(in).logits, want);
}

// Every stage's sender takes three stall timeouts per micro-batch and the
// queues hold one: each handler waits for room far longer than the hop's
// stall timeout. The stages' Working notices keep the hops alive, so a slow
// stage is not taken for a stalled one and every result arrives.
TEST(PipelineStages, AStageBusyLongerThanTheStallTimeoutIsNotAStall) {
  const auto c = vit();
  const auto in = images({2, 2, 2, 2, 2}, 6);
  Pipeline p(
      c, {0, 3, 6}, [](const StageEvent&) { std::this_thread::sleep_for(std::chrono::milliseconds(600)); }, 1,
      st::Millis(200));
  expect_close(p.source->run(in).logits, reference(c, in));
}

// A frozen stage: the kernel completes its TCP handshakes (the listen
// backlog), but nothing ever answers, as with a stopped process. The
// source's error names it, within the timeouts, instead of hanging.
TEST(PipelineStages, AFrozenStageIsNamed) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(fd, 16), 0);
  socklen_t len = sizeof a;
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
  const auto frozen = ntohs(a.sin_port);

  SourceOptions so;
  so.tls = server_tls();
  so.result_timeout = st::Millis(1500);
  so.ping_timeout = st::Millis(500);
  PipelineSource source(so);
  source.start();
  StageOptions o;  // s1 -> s2 (frozen) -> source
  o.name = "s1";
  o.tls = server_tls();
  o.model = vit();
  o.begin = 0;
  o.end = 3;
  o.next.name = "s2";
  o.next.port = frozen;
  o.next.tls = client_tls();
  o.next.stall_timeout = st::Millis(300);
  StageWorker s1(o);
  s1.start();
  so.port = source.port();
  so.first.name = "s1";
  so.first.port = s1.port();
  so.first.tls = client_tls();
  so.first.stall_timeout = st::Millis(1000);
  so.stages = {{"s1", "127.0.0.1", s1.port()}, {"s2", "127.0.0.1", frozen}};
  source.stop();
  PipelineSource src(so);
  src.start();
  const auto t0 = std::chrono::steady_clock::now();
  try {
    src.run(images({2, 2, 2, 2}, 8));
    ADD_FAILURE() << "stage s2 never answers";
  } catch (const PipelineError& e) {
    const std::string what = e.what();
    const std::string s2 = "stage 's2' (127.0.0.1:" + std::to_string(frozen) + ")";
    EXPECT_NE(what.find(s2), std::string::npos) << what;
  }
  // Bounded by the timeouts (a hang would run to ctest's limit), not timed.
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(60));
  ::close(fd);
}

// A fine-tuning job's halves as the two stages (an SFT bottleneck at the
// split): the pipeline gives what the halves give in this process, first
// with the job's initial weights, then with a session's checkpoint of each
// half. A checkpoint of another job is refused, naming both fingerprints.
TEST(PipelineStages, AFineTunedJobsHalvesServeAsTwoStages) {
  auto c = vit();
  c.split = 2;
  c.sft_rank = 4;
  session::JobSpec spec{c, {}, ""};
  const auto root = std::filesystem::temp_directory_path() / ("seam_stage_job_" + std::to_string(::getpid()));
  std::filesystem::remove_all(root);
  session::prepare_job(spec, (root / "job").string());
  const auto job = session::load_job((root / "job").string());
  auto edge = session::load_edge_half(job), cloud = session::load_cloud_half(job);
  const auto in = images({3, 4, 2}, 9);
  auto local = [&] {
    edge.train(false);
    cloud.train(false);
    c10::InferenceMode guard;
    std::vector<at::Tensor> out;
    for (const auto& mb : in) {
      training::BatchContext bc{{}, mb.x.size(0)};
      out.push_back(cloud.forward(edge.forward(mb.x, bc), bc));
    }
    return out;
  };
  // Two stages from the job (the constructor's cuts only name them).
  auto run = [&](const std::string& edge_weights, const std::string& cloud_weights) {
    SourceOptions so;
    so.tls = server_tls();
    PipelineSource first(so);
    first.start();
    so.port = first.port();
    first.stop();
    StageOptions s2;
    s2.name = "cloud";
    s2.tls = server_tls();
    s2.job_dir = job.dir;
    s2.job_half = "cloud";
    s2.job_weights = cloud_weights;
    s2.next.name = "source";
    s2.next.port = so.port;
    s2.next.tls = client_tls();
    StageWorker w2(s2);
    w2.start();
    EXPECT_TRUE(w2.last());
    StageOptions s1 = s2;
    s1.name = "edge";
    s1.job_half = "edge";
    s1.job_weights = edge_weights;
    s1.next.name = "cloud";
    s1.next.port = w2.port();
    StageWorker w1(s1);
    w1.start();
    EXPECT_FALSE(w1.last());
    so.first.name = "edge";
    so.first.port = w1.port();
    so.first.tls = client_tls();
    so.stages = {{"edge", "127.0.0.1", w1.port()}, {"cloud", "127.0.0.1", w2.port()}};
    PipelineSource src(so);
    src.start();
    return src.run(in).logits;
  };
  expect_close(run("", ""), local());
  // A session's checkpoints: the halves' weights moved, saved under the job's fingerprint.
  {
    at::NoGradGuard ng;
    for (auto* h : {&edge, &cloud})
      for (auto& p : h->parameters()) p.add_(0.05);
  }
  for (auto [file, e, cl] : {std::tuple{"edge.pt", &edge, (training::ModelHalf*)nullptr},
                             std::tuple{"cloud.pt", (training::ModelHalf*)nullptr, &cloud}}) {
    training::CheckpointParts parts{&job.spec.model, e, cl, nullptr, nullptr, 12, job.fingerprint};
    training::save_checkpoint((root / file).string(), parts);
  }
  expect_close(run((root / "edge.pt").string(), (root / "cloud.pt").string()), local());
  // Another job's checkpoint (the initial files carry the fingerprint "job-init").
  StageOptions bad;
  bad.name = "stray";
  bad.job_dir = job.dir;
  bad.job_half = "cloud";
  bad.job_weights = job.dir + "/cloud_init.pt";
  try {
    StageWorker w(bad);
    ADD_FAILURE() << "a checkpoint of another fingerprint";
  } catch (const std::invalid_argument& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("does not match this model's " + job.fingerprint), std::string::npos) << what;
    EXPECT_NE(what.find("stage 'stray'"), std::string::npos) << what;
  }
  std::filesystem::remove_all(root);
}

TEST(PipelineStages, ARangeOutsideTheModelIsRefused) {
  StageOptions o;
  o.name = "bad";
  o.model = vit();
  o.begin = 4;
  o.end = 9;
  try {
    StageWorker w(o);
    FAIL() << "vit has 6 blocks";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "model config: stage blocks [4, 9) out of range: vit has 6 blocks");
  }
}

}  // namespace
}  // namespace seam::pipeline
