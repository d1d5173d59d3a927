#pragma once
// The two halves of a split training step, talking through a Link. How a step
// becomes frames, and the links themselves (in-process, TLS), live in
// session/; training knows only this interface.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "seam/training/model.hpp"
#include "seam/training/optim.hpp"

namespace seam::compression {
class CodecContext;
}

namespace seam::training {

struct StepRequest {
  std::uint64_t step = 0;
  std::vector<std::int64_t> sample_ids;   // B ids; on the cloud empty unless the up codec needs them
  at::Tensor labels;                      // int64, [B] or [B, L]
  at::Tensor attention_mask;              // optional, [B, L]
  std::vector<std::uint8_t> activations;  // codec message (self-describing)
};

struct StepReply {
  std::uint64_t step = 0;
  double loss = 0;
  double correct = 0;  // correct predictions in the batch (classification)
  double cloud_ms = 0;
  std::vector<std::uint8_t> gradient;  // codec message
};

// Where one direction's frame bytes go: frame headers, metadata, the encoded
// tensors, and a step's packed sample ids, labels and attention mask.
struct ByteBreakdown {
  std::uint64_t header = 0, metadata = 0, tensor = 0, ids = 0, labels = 0, mask = 0;
  std::uint64_t total() const { return header + metadata + tensor + ids + labels + mask; }
  ByteBreakdown& operator+=(const ByteBreakdown& o);
  ByteBreakdown operator-(const ByteBreakdown& o) const;
};

struct LinkStats {
  std::uint64_t bytes_up = 0, bytes_down = 0;  // whole frames, headers included (== up.total(), down.total())
  std::uint64_t exchanges = 0;
  ByteBreakdown up, down;
};

class Link {
 public:
  virtual ~Link() = default;
  virtual StepReply exchange(const StepRequest& r) = 0;
  virtual LinkStats stats() const = 0;
};

// Everything a step changes on one side, besides the model's own tensors:
// the optimizer, one codec context per direction and the step counter.
// Sessions save and restore it (session/).
class HalfState;

struct HalfSettings {
  std::string task = "classify";  // classify | mlm | lm
  std::string up_codec = "none";    // activations, edge -> cloud
  std::string down_codec = "none";  // gradients, cloud -> edge
  std::uint64_t seed = 0;           // codec seed shared by both sides
  OptimConfig optim;
};

class CloudTrainer {
 public:
  // `shared`: the state of a cloud half that several sessions train together
  // (the shared policy). Its optimizer makes every update and its step
  // counter drives the schedule; this trainer keeps only its own codec
  // contexts and step counter. The caller runs one step at a time on it.
  CloudTrainer(ModelHalf& cloud, const HalfSettings& s, HalfState* shared = nullptr);
  ~CloudTrainer();
  // Decodes the activations, runs the back half, computes the loss, steps the
  // optimizer and returns the encoded gradient w.r.t. what it received.
  // r.step must equal steps_done() (std::logic_error naming both otherwise):
  // the schedule and the codec contexts follow the trainer's own counter.
  StepReply step(const StepRequest& r);
  std::uint64_t steps_done() const;
  HalfState& state();

 private:
  std::unique_ptr<HalfState> impl_;
};

struct StepMetrics {
  std::uint64_t step = 0;
  double loss = 0, accuracy = 0;
  std::uint64_t bytes_up = 0, bytes_down = 0;  // this step, whole frames
  ByteBreakdown up, down;                      // the same bytes by part
  double ratio_up = 0, ratio_down = 0;         // the codec's own: fp32 tensor bytes / encoded bytes
  // The naive step: the fp32 tensor plus int64 sample ids, labels and mask.
  std::uint64_t naive_up = 0, naive_down = 0;
  double frame_ratio_up = 0, frame_ratio_down = 0;  // naive bytes / whole-frame bytes
  double edge_ms = 0, encode_ms = 0, link_ms = 0, cloud_ms = 0, decode_ms = 0;
};

// Fills m's loss, accuracy and traffic once a step's reply has come: the
// frame bytes from the link's stats before and after, and the naive step
// (the fp32 activation and gradient, the int64 ids, labels and mask).
void finish_step_metrics(StepMetrics& m, const StepReply& rep, const LinkStats& before, const LinkStats& after,
                         const at::Tensor& activation, const at::Tensor& gradient, std::size_t ids,
                         const at::Tensor& labels, const at::Tensor& mask);

// Per-step traffic over a run, for summaries.
struct TrafficSummary {
  std::uint64_t steps = 0;
  ByteBreakdown up, down;
  std::uint64_t naive_up = 0, naive_down = 0;
  double fp32_up = 0, fp32_down = 0;  // tensor bytes had they travelled as fp32
  void add(const StepMetrics& m);
  // Mean bytes per step by part, the codec ratio and the whole-frame ratio,
  // each direction on its own line.
  std::string describe() const;
};

class EdgeTrainer {
 public:
  EdgeTrainer(ModelHalf& edge, const HalfSettings& s);
  ~EdgeTrainer();
  // One step through the link. If the link throws, the encoded request is
  // kept: calling step again for the same step (same batch) re-sends it
  // unchanged instead of encoding again.
  StepMetrics step(Link& link, const at::Tensor& x, const at::Tensor& labels, const std::vector<std::int64_t>& sample_ids,
                   const at::Tensor& attention_mask = {});
  std::uint64_t steps_done() const;
  HalfState& state();

 private:
  std::unique_ptr<HalfState> impl_;
};

class HalfState {
 public:
  // shared: see CloudTrainer; this state then owns no optimizer.
  HalfState(ModelHalf& h, const HalfSettings& s, HalfState* shared = nullptr);
  ~HalfState();
  ModelHalf& half() { return half_; }
  const HalfSettings& settings() const { return settings_; }
  Optimizer& optimizer() { return shared_ ? shared_->optimizer() : *opt_; }
  bool is_shared() const { return shared_ != nullptr; }
  compression::CodecContext& up_context() { return *up_ctx_; }      // activations
  compression::CodecContext& down_context() { return *down_ctx_; }  // gradients
  std::uint64_t steps_done() const { return steps_; }
  // After a restore: the counter of the restored state; drops a pending request.
  void set_steps_done(std::uint64_t s) {
    steps_ = s;
    pending_.reset();
  }

 private:
  friend class CloudTrainer;
  friend class EdgeTrainer;
  struct Codecs;
  ModelHalf& half_;
  HalfSettings settings_;
  HalfState* shared_ = nullptr;
  std::unique_ptr<Optimizer> opt_;
  std::unique_ptr<Codecs> codecs_;
  std::unique_ptr<compression::CodecContext> up_ctx_, down_ctx_;
  std::atomic<std::uint64_t> steps_{0};  // read by sessions while a step runs
  // Edge: the request of a step whose reply never came. A retried step
  // re-sends these exact bytes: encoding again would advance the delta
  // buffers twice while the cloud (which may have applied it) saw one update.
  std::optional<StepRequest> pending_;
};

// Loss of a task: classify = cross-entropy over [B, C]; mlm/lm = token
// cross-entropy over [B, L, V], labels -100 ignored.
at::Tensor task_loss(const std::string& task, const at::Tensor& logits, const at::Tensor& labels);
double task_correct(const std::string& task, const at::Tensor& logits, const at::Tensor& labels);

}  // namespace seam::training
