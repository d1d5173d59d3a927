#pragma once
// The edge client: one app's session with one job at a seam-cloud server.
// It owns the job's front half (EdgeSession), the TLS link and the step
// loop's bookkeeping. The C API (seam_edge.h), seam-edge and the Python module
// are thin layers over it. One thread at a time per Client, except cancel().
#include <ATen/core/Tensor.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "seam/edge_client/options.hpp"
#include "seam/session/exchange.hpp"
#include "seam/session/job.hpp"
#include "seam/training/job.hpp"

namespace seam::session {
class TlsLink;
}

namespace seam::edge {

// A call stopped by cancel() before it started its next step or batch.
struct Cancelled : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A call that the client's state does not allow (before join, after close).
struct StateError : std::logic_error {
  using std::logic_error::logic_error;
};

struct ClientStats {
  std::uint64_t step = 0;            // the next step
  std::uint64_t steps_this_run = 0;  // applied through this Client
  training::TrafficSummary traffic;  // the training steps' frames, by part, and their fp32 sizes
  std::uint64_t bytes_up = 0, bytes_down = 0;  // every frame (Hello and checkpoints included)
  double edge_ms = 0, encode_ms = 0, link_ms = 0, cloud_ms = 0, decode_ms = 0;  // sums over the steps
  std::uint64_t reconnects = 0;
};

class Client {
 public:
  explicit Client(EdgeOptions o);  // validates (std::invalid_argument naming every problem); no I/O
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Loads the job's front half from job-dir (verified against its manifest),
  // downloading it from the server first when the folder is missing (only
  // job.conf, edge_init.pt and the manifest: never the cloud half), resumes
  // from the newest checkpoint in state-dir, connects and agrees on a step
  // with the cloud (rolling back when the cloud is behind). Returns the step
  // to train next.
  std::uint64_t join();
  bool downloaded() const { return downloaded_; }  // join fetched the front half
  bool joined() const { return session_ != nullptr; }

  // Trains step() on one batch the app supplies: x = float images [B, C, H, W]
  // or int64 token ids [B, L]; labels int64 [B]; one sample id per row.
  // Refuses a batch that does not fit the job (std::invalid_argument naming
  // the tensor and both shapes). Returns nullopt when the cloud had resumed
  // at an earlier step and the session rolled back to it: feed the batch of
  // step() next.
  std::optional<training::StepMetrics> train_step(const training::TaskBatch& b);

  // Inference through the cloud's half (eval mode on both sides; changes no
  // state): logits [B, classes] or the predicted classes (int64 [B]). Labels
  // and ids are not needed.
  at::Tensor infer(const training::TaskBatch& b, session::InferOutput out = session::InferOutput::logits);
  // Accuracy on split s of a task (the first `limit` examples; 0 = all) through inference.
  double evaluate(const training::Task& t, training::Split s, std::int64_t batch = 256, std::size_t limit = 0);

  // A step with an activation from the app's own front model (Python).
  session::ExchangeResult exchange(const at::Tensor& activation, const at::Tensor& labels,
                                   const std::vector<std::int64_t>& ids, const at::Tensor& mask = {});
  // Inference on an activation from the app's own front model (Python).
  at::Tensor infer_activation(const at::Tensor& activation, session::InferOutput out = session::InferOutput::logits,
                              const at::Tensor& mask = {});

  // Saves the edge checkpoint at the current step and has the cloud save at
  // the same step. Returns the folder.
  std::string save();
  // Rolls back to this client's checkpoint of `step` and reconnects: the
  // cloud goes back to its own checkpoint of that step.
  void restore(std::uint64_t step);
  std::vector<std::uint64_t> checkpoints() const;

  std::uint64_t step() const;
  ClientStats stats() const;
  const session::PreparedJob& job() const;
  session::EdgeSession& session();
  session::SessionLink& link();
  const EdgeOptions& options() const { return opts_; }

  // Called after every applied step, on the caller's thread.
  void set_progress(std::function<void(const training::StepMetrics&)> f) { progress_ = std::move(f); }
  // Thread-safe: the running (or next) call stops with Cancelled before it
  // starts its next step or batch. A step already sent completes first.
  void cancel() { cancel_.store(true); }
  void check_cancel();

  void close();  // ends the session (Goodbye); later calls throw StateError
  bool closed() const { return closed_; }

 private:
  void need_joined(const char* what) const;
  void account(const training::StepMetrics& m);
  void check_batch(const training::TaskBatch& b, bool training) const;
  EdgeOptions opts_;
  session::SessionOptions sopts_;
  std::unique_ptr<session::PreparedJob> job_;
  std::unique_ptr<session::TlsLink> link_;
  std::unique_ptr<session::EdgeSession> session_;
  std::unique_ptr<session::ActivationExchange> exchange_;
  std::function<void(const training::StepMetrics&)> progress_;
  std::atomic<bool> cancel_{false};
  bool closed_ = false, downloaded_ = false;
  ClientStats stats_;
};

// The step metrics as one JSON object (one line of a metrics log).
std::string metrics_json(const training::StepMetrics& m);

}  // namespace seam::edge
