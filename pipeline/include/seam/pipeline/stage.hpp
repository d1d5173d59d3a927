#pragma once
// Pipelined inference (issue 13): a model cut into stages on a chain of
// processes, the source first and last:
//
//   source --Infer--> stage 1 --Infer--> ... --Infer--> stage n --InferReply--> source
//
// Every hop is one mutual-TLS connection (transport::Client -> Server) with
// several frames in flight (Client::post/collect). A stage acknowledges each
// Infer once it has queued it, with a Pong carrying the batch id; a full
// queue delays the acknowledgement, which holds the previous hop back
// (backpressure). Micro-batches keep their order end to end: each hop is one
// ordered connection and each stage computes in arrival order.
//
// Each stage receives (the server's I/O thread), computes (its own thread, in
// inference mode) and encodes + sends (a third thread), so the three overlap.
// Infer bodies and replies are the session protocol's (session::infer_message
// and friends): the activation is a stateless codec message, so each hop's
// codec, and a QuantPipe bitwidth change, travels in-band.
#include <ATen/core/Tensor.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "seam/pipeline/quantpipe.hpp"
#include "seam/training/model.hpp"
#include "seam/transport/channel.hpp"

namespace seam::pipeline {

// A failure of the pipeline, naming the stage that failed or stalled.
class PipelineError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The connection to the next hop.
struct HopOptions {
  std::string name;  // the next stage's name, or "source"
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;
  transport::TlsOptions tls;
  int in_flight = 4;             // frames awaiting their acknowledgement
  std::string codec = "none";    // a stateless codec spec, or "quantpipe"
  ControllerOptions controller;  // quantpipe: target rate, window
  Clip clip = Clip::dsaciq;      // quantpipe: clipping below 16 bits
  transport::LinkOptions link;   // optional emulated link (the in-process shaper)
  // No byte either way for this long, with frames in flight: the next hop has
  // stalled. A stage sends no keep-alives, so this also bounds how long a full
  // queue may hold an acknowledgement back.
  transport::Millis stall_timeout{10000};
  const transport::Clock* clock = nullptr;  // the hop's clock (tests); null = steady
};

// One micro-batch as a stage saw it (for logs and the evidence script).
struct StageEvent {
  std::uint64_t batch_id = 0;
  int bits = 32;                 // the width it was sent at (quantpipe), else 32
  std::string codec;             // the spec it travelled with
  std::uint64_t frame_bytes = 0; // the activation's codec message
  double compute_s = 0, encode_s = 0;
  // The hop's estimate after sending it: Client::bandwidth() over an emulated
  // link, Client::acked_bandwidth() over a real one. QuantPipe reads it.
  double bandwidth_bytes_per_s = 0;
  double search_s = 0;               // DS-ACIQ search time when one ran for it, else 0
};

struct StageOptions {
  std::string name;
  std::string bind_address = "127.0.0.1";
  std::uint16_t port = 0;
  transport::TlsOptions tls;  // the listening side: mutual TLS with the previous hop
  // What the stage hosts: blocks [begin, end) of the model. With `checkpoint`
  // (written by seam-train pretrain or seam-ptq train) the model's config and
  // weights come from it; otherwise `model` (fresh weights from its seed, or a
  // TorchScript file).
  training::ModelConfig model;
  std::string checkpoint;
  std::int64_t begin = 0, end = 0;
  // Or one half of a split fine-tuning job (session/): `job_dir` is the
  // prepared job folder (the cloud's STATE/NAME/job, or an edge's downloaded
  // copy for the edge half), `job_half` "edge" or "cloud", and
  // `job_weights` a checkpoint of that half written by a session (a
  // step-N folder or its half.pt; empty: the job's initial weights). The
  // checkpoint must belong to this job (its fingerprint). begin/end and model
  // are then taken from the job; the cloud half is the last stage.
  std::string job_dir, job_half, job_weights;
  HopOptions next;             // the next stage, or the source after the last stage
  int queue = 4;               // micro-batches waiting for compute, and for the send
  std::int64_t max_len = 0;    // refuse masks longer than this (0: no bound)
  std::function<void(const StageEvent&)> on_event;  // called from the send thread
};

class StageWorker {
 public:
  explicit StageWorker(StageOptions o);  // builds the model; throws std::invalid_argument naming the problem
  ~StageWorker();                        // stop()
  StageWorker(const StageWorker&) = delete;
  StageWorker& operator=(const StageWorker&) = delete;

  void start();  // listens; throws transport::TransportError
  std::uint16_t port() const;
  void stop();
  bool last() const;                // hosts the model's last block: sends results to the source
  std::uint64_t batches_sent() const;
  std::string failure() const;      // the latest failure of the next hop, empty when none

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

// Where a stage listens: for the source's health checks and error messages.
struct StageAddress {
  std::string name;
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;
};

struct SourceOptions {
  HopOptions first;  // stage 1; its codec encodes the inputs ("none" keeps them exact)
  std::string bind_address = "127.0.0.1";
  std::uint16_t port = 0;  // where the last stage delivers results
  transport::TlsOptions tls;
  std::vector<StageAddress> stages;  // in order, for pings when results stop coming
  // No result for this long while batches are outstanding: the pipeline has
  // stalled; every stage is pinged and the first that does not answer is named.
  transport::Millis result_timeout{15000};
  transport::Millis ping_timeout{2000};
};

struct MicroBatch {
  at::Tensor x;     // images [B, C, H, W] (float) or tokens [B, L] (int64)
  at::Tensor mask;  // optional [B, L]
};

struct SourceResult {
  std::vector<at::Tensor> logits;  // per micro-batch, in order
  std::vector<double> sent_s, done_s;  // seconds from the run's start: posted to stage 1, result back
  double seconds = 0;
};

// Feeds a pipeline and collects its results. One run at a time.
class PipelineSource {
 public:
  explicit PipelineSource(SourceOptions o);
  ~PipelineSource();
  PipelineSource(const PipelineSource&) = delete;
  PipelineSource& operator=(const PipelineSource&) = delete;

  void start();  // listens for results
  std::uint16_t port() const;
  // Sends every micro-batch (ids 0..n-1 of this run) and returns the results
  // in order. Throws PipelineError naming the failed or stalled stage. A
  // later run reconnects, and every stage that saw the failure starts afresh
  // when its upstream reconnects: the pipeline restarts without restarting
  // the stages that still run.
  SourceResult run(const std::vector<MicroBatch>& batches);
  void stop();

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace seam::pipeline
