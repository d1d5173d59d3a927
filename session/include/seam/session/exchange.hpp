#pragma once
// Steps whose activation was computed outside Seam (a user's own PyTorch
// front model), and checkpoints taken on demand. Both act on an EdgeSession:
// its step counter, codec contexts (AC-SGD buffers included), nonce and
// checkpoint folder. The user's front model and optimizer are the user's: they
// are not in Seam's checkpoints.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "seam/session/session.hpp"

namespace seam::session {

struct ExchangeResult {
  at::Tensor gradient;  // d loss / d activation, shaped and typed like the activation
  training::StepMetrics metrics;
};

class ActivationExchange {
 public:
  explicit ActivationExchange(EdgeSession& edge);
  // Step edge.step(): encodes `activation` with the job's up codec, sends it
  // with labels and ids, lets the cloud train its half, decodes the gradient.
  // The activation must be what the job's edge half would produce at the cut
  // (same shape). If the link throws, the encoded request is kept and a call
  // for the same step and ids re-sends it unchanged. A cloud that refuses the
  // step for its order throws SessionError (step_order).
  ExchangeResult step(SessionLink& link, const at::Tensor& activation, const at::Tensor& labels,
                      const std::vector<std::int64_t>& ids, const at::Tensor& attention_mask = {});
  // Inference on an activation from the user's front model: encoded with the
  // job's stateless inference codec, the cloud's half in eval mode; logits
  // (float [B, ...]) or classes (int64 [B]). Changes no state.
  at::Tensor infer(SessionLink& link, const at::Tensor& activation, InferOutput out = InferOutput::logits,
                   const at::Tensor& attention_mask = {});

 private:
  EdgeSession& edge_;
  std::optional<training::StepRequest> pending_;
  std::uint64_t infer_batches_ = 0;
};

// Saves the edge's state at its current step into o.state_dir (kept like the
// periodic checkpoints) and asks the cloud to checkpoint at the same step, so
// both can resume there. Returns the checkpoint's folder. Throws
// std::invalid_argument without a state_dir.
std::string save_coordinated(EdgeSession& edge, SessionLink& link, const SessionOptions& o);

}  // namespace seam::session
