// Pipelined inference over mutual TLS in one process: a pipeline with codec
// `none` gives the unsplit model's outputs (1e-5) with 2 and 3 stages, order
// holds under uneven delays and batch sizes, and a dead stage is named, then
// replaced without restarting the others.
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <random>
#include <thread>

#include "../transport/transport_test_util.hpp"
#include "seam/pipeline/stage.hpp"
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
           std::function<void(const StageEvent&)> on_event = {}, int queue = 4) {
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
    next.stall_timeout = st::Millis(3000);
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
