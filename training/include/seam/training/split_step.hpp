#pragma once
// The two halves of a split training step, talking through a Link. The
// in-process link carries the exact frames the network would carry (the
// transport's wire format), so bytes counted here are bytes on the wire.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "seam/training/model.hpp"
#include "seam/training/optim.hpp"

namespace seam::training {

struct StepRequest {
  std::uint64_t step = 0;
  std::vector<std::int64_t> sample_ids;
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

struct LinkStats {
  std::uint64_t bytes_up = 0, bytes_down = 0;  // whole frames, headers included
  std::uint64_t exchanges = 0;
};

class Link {
 public:
  virtual ~Link() = default;
  virtual StepReply exchange(const StepRequest& r) = 0;
  virtual LinkStats stats() const = 0;
};

struct HalfSettings {
  std::string task = "classify";  // classify | mlm | lm
  std::string up_codec = "none";    // activations, edge -> cloud
  std::string down_codec = "none";  // gradients, cloud -> edge
  std::uint64_t seed = 0;           // codec seed shared by both sides
  OptimConfig optim;
};

class CloudTrainer {
 public:
  CloudTrainer(ModelHalf& cloud, const HalfSettings& s);
  ~CloudTrainer();
  // Decodes the activations, runs the back half, computes the loss, steps the
  // optimizer and returns the encoded gradient w.r.t. what it received.
  StepReply step(const StepRequest& r);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct StepMetrics {
  std::uint64_t step = 0;
  double loss = 0, accuracy = 0;
  std::uint64_t bytes_up = 0, bytes_down = 0;  // this step, whole frames
  double ratio_up = 0, ratio_down = 0;         // fp32 tensor bytes / encoded bytes
  double edge_ms = 0, encode_ms = 0, link_ms = 0, cloud_ms = 0, decode_ms = 0;
};

class EdgeTrainer {
 public:
  EdgeTrainer(ModelHalf& edge, const HalfSettings& s);
  ~EdgeTrainer();
  StepMetrics step(Link& link, const at::Tensor& x, const at::Tensor& labels, const std::vector<std::int64_t>& sample_ids,
                   const at::Tensor& attention_mask = {});
  std::uint64_t steps_done() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Link to a CloudTrainer in the same process, through the real frame encoding.
class InProcessLink final : public Link {
 public:
  explicit InProcessLink(CloudTrainer& cloud) : cloud_(cloud) {}
  StepReply exchange(const StepRequest& r) override;
  LinkStats stats() const override { return stats_; }

 private:
  CloudTrainer& cloud_;
  LinkStats stats_;
};

// Loss of a task: classify = cross-entropy over [B, C]; mlm/lm = token
// cross-entropy over [B, L, V], labels -100 ignored.
at::Tensor task_loss(const std::string& task, const at::Tensor& logits, const at::Tensor& labels);
double task_correct(const std::string& task, const at::Tensor& logits, const at::Tensor& labels);

}  // namespace seam::training
