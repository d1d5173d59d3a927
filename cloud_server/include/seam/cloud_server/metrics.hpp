#pragma once
// The service's counters, and their Prometheus text exposition (served on
// /metrics by cloud::Service). Bytes are whole frames counted the way the
// edge's TlsLink counts them, so the two agree exactly.
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <system_error>
#include <vector>

#include "seam/transport/message.hpp"

namespace seam::cloud {

// Upper bounds (seconds) of the step-latency histogram's buckets.
inline constexpr double kStepSecondsBuckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

struct JobCounts {
  std::uint64_t requests = 0, steps = 0, infers = 0, fetches = 0;
  std::uint64_t bytes_up = 0, bytes_down = 0;          // whole frames
  std::uint64_t activation_fp32_bytes = 0;             // the activations had they travelled as fp32
  std::uint64_t activation_bytes = 0, gradient_bytes = 0;  // encoded
  std::uint64_t step_buckets[std::size(kStepSecondsBuckets)] = {};  // cumulative counts come at render
  std::uint64_t step_count = 0;
  double step_seconds = 0;
};

class Metrics {
 public:
  // One request routed to `job` and its reply, `seconds` in the handler.
  // `request_bytes` is the request's whole frame; the request itself has
  // been consumed by then, so its activation sizes come in `fp32`/`encoded`.
  struct Request {
    std::uint64_t frame_bytes = 0, activation_fp32_bytes = 0, activation_bytes = 0;
    bool forward = false;
  };
  static Request measure(const transport::Message& request);
  void record(const std::string& job, const Request& req, const transport::Message& reply, double seconds);
  // A connection the transport refused or cut (no job known).
  void refusal(std::error_code ec);

  JobCounts job(const std::string& name) const;
  std::uint64_t errors(const std::string& kind) const;
  // Prometheus text format 0.0.4; `sessions` are the open sessions per job.
  std::string render(const std::map<std::string, std::size_t>& sessions) const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, JobCounts> jobs_;
  std::map<std::string, std::uint64_t> errors_;  // by kind
};

// The name of an error kind: a transport code (Errc) or a session code (>= 1000).
std::string error_kind(std::uint32_t code);

}  // namespace seam::cloud
