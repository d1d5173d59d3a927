#include "seam/cloud_server/metrics.hpp"

#include <iterator>
#include <sstream>

#include "seam/compression/message_info.hpp"
#include "seam/session/protocol.hpp"
#include "seam/transport/errors.hpp"

namespace seam::cloud {

namespace st = seam::transport;
namespace ss = seam::session;

std::string error_kind(std::uint32_t code) {
  // Indexed by the code; the asserts keep the tables in step with the enums.
  static constexpr const char* transport[] = {"ok",          "bad_magic",        "version_mismatch", "metadata_too_large",
                                              "payload_too_large", "unknown_message_type", "malformed_metadata",
                                              "section_mismatch", "timeout",      "connection_closed", "tls_failure",
                                              "peer_error",  "server_busy",      "queue_full",       "shutting_down",
                                              "insecure_refused", "retries_exhausted"};
  static_assert(std::size(transport) == static_cast<std::size_t>(st::Errc::retries_exhausted) + 1,
                "one name per transport error code");
  static constexpr const char* session[] = {"handler_failed", "step_order",        "bad_field", "job_mismatch",
                                            "no_session",     "checkpoint_failed", "unknown_job", "not_allowed"};
  static_assert(std::size(session) == static_cast<std::size_t>(ss::kLastSessionErrc) - 999,
                "one name per session error code");
  if (code < std::size(transport)) return transport[code];
  if (code >= 1000 && code - 1000 < std::size(session)) return session[code - 1000];
  return "code_" + std::to_string(code);
}

Metrics::Request Metrics::measure(const st::Message& m) {
  Request r;
  r.frame_bytes = st::encode_frame(m, 0).total_bytes();
  r.forward = m.as<st::Forward>() != nullptr;
  if (r.forward || m.as<st::Infer>()) {
    for (const auto& s : m.sections) {
      if (s.info.name != "activations") continue;
      r.activation_bytes += s.bytes.size();
      try {
        std::uint64_t n = 1;
        for (auto d : compression::message_shape(s.bytes.data(), s.bytes.size())) n *= static_cast<std::uint64_t>(d);
        r.activation_fp32_bytes += 4 * n;
      } catch (const std::exception&) {
        // not a codec message: the session refuses it and the error is counted
      }
    }
  }
  return r;
}

void Metrics::record(const std::string& job, const Request& req, const st::Message& reply, double seconds) {
  const std::uint64_t reply_bytes = reply.as<st::ErrorInfo>() ? 0 : st::encode_frame(reply, 0).total_bytes();
  std::lock_guard<std::mutex> l(mu_);
  if (const auto* e = reply.as<st::ErrorInfo>()) {  // a refusal is counted by kind, not as the job's traffic
    ++errors_[error_kind(e->code)];
    return;
  }
  auto& j = jobs_[job];
  ++j.requests;
  j.bytes_up += req.frame_bytes;
  j.bytes_down += reply_bytes;
  if (reply.as<st::Backward>()) {
    ++j.steps;
    j.activation_fp32_bytes += req.activation_fp32_bytes;
    j.activation_bytes += req.activation_bytes;
    for (const auto& s : reply.sections)
      if (s.info.name == "gradient") j.gradient_bytes += s.bytes.size();
    for (std::size_t i = 0; i < std::size(kStepSecondsBuckets); ++i)
      if (seconds <= kStepSecondsBuckets[i]) {
        ++j.step_buckets[i];
        break;
      }
    ++j.step_count;
    j.step_seconds += seconds;
  } else if (reply.as<st::InferReply>()) {
    ++j.infers;
  } else if (reply.as<st::FetchReply>()) {
    ++j.fetches;
  }
}

void Metrics::refusal(std::error_code ec) {
  std::lock_guard<std::mutex> l(mu_);
  ++errors_[ec.category() == st::transport_category() ? error_kind(static_cast<std::uint32_t>(ec.value()))
                                                       : ec.message()];
}

JobCounts Metrics::job(const std::string& name) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = jobs_.find(name);
  return it == jobs_.end() ? JobCounts{} : it->second;
}

std::uint64_t Metrics::errors(const std::string& kind) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = errors_.find(kind);
  return it == errors_.end() ? 0 : it->second;
}

namespace {
std::string label(const std::string& v) {  // a label value, escaped
  std::string o;
  for (char c : v) {
    if (c == '\\' || c == '"') o += '\\';
    if (c == '\n') {
      o += "\\n";
      continue;
    }
    o += c;
  }
  return o;
}
}  // namespace

std::string Metrics::render(const std::map<std::string, std::size_t>& sessions) const {
  std::lock_guard<std::mutex> l(mu_);
  std::ostringstream o;
  o.precision(17);
  auto family = [&](const char* name, const char* type, const char* help) {
    o << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
  };
  auto per_job = [&](const char* name, const char* type, const char* help, auto value) {
    family(name, type, help);
    for (const auto& [job, n] : sessions) {
      auto it = jobs_.find(job);
      const JobCounts c = it == jobs_.end() ? JobCounts{} : it->second;
      o << name << "{job=\"" << label(job) << "\"} " << value(job, c) << '\n';
    }
  };
  per_job("seam_sessions", "gauge", "Sessions open.", [&](const std::string& j, const JobCounts&) { return sessions.at(j); });
  per_job("seam_requests_total", "counter", "Requests answered, refusals not counted (Hello, Forward, Infer, Checkpoint, Fetch).",
          [](const std::string&, const JobCounts& c) { return c.requests; });
  per_job("seam_steps_total", "counter", "Training steps applied.", [](const std::string&, const JobCounts& c) { return c.steps; });
  per_job("seam_infer_total", "counter", "Inference batches answered.",
          [](const std::string&, const JobCounts& c) { return c.infers; });
  per_job("seam_bytes_up_total", "counter", "Request frames received, whole frames in bytes.",
          [](const std::string&, const JobCounts& c) { return c.bytes_up; });
  per_job("seam_bytes_down_total", "counter", "Reply frames sent, whole frames in bytes.",
          [](const std::string&, const JobCounts& c) { return c.bytes_down; });
  per_job("seam_activation_fp32_bytes_total", "counter", "Bytes the steps' activations would take as fp32.",
          [](const std::string&, const JobCounts& c) { return c.activation_fp32_bytes; });
  per_job("seam_activation_bytes_total", "counter", "Encoded activation bytes of the steps.",
          [](const std::string&, const JobCounts& c) { return c.activation_bytes; });
  per_job("seam_gradient_bytes_total", "counter", "Encoded gradient bytes of the steps.",
          [](const std::string&, const JobCounts& c) { return c.gradient_bytes; });
  family("seam_compression_ratio", "gauge", "fp32 bytes over encoded bytes of the steps' tensors, by direction.");
  for (const auto& [job, n] : sessions) {
    auto it = jobs_.find(job);
    const JobCounts c = it == jobs_.end() ? JobCounts{} : it->second;
    auto ratio = [&](std::uint64_t enc) { return enc ? double(c.activation_fp32_bytes) / double(enc) : 0.0; };
    o << "seam_compression_ratio{job=\"" << label(job) << "\",direction=\"up\"} " << ratio(c.activation_bytes) << '\n';
    o << "seam_compression_ratio{job=\"" << label(job) << "\",direction=\"down\"} " << ratio(c.gradient_bytes) << '\n';
  }
  family("seam_step_seconds", "histogram", "Time the cloud spent on a step (handler), seconds.");
  for (const auto& [job, n] : sessions) {
    auto it = jobs_.find(job);
    const JobCounts c = it == jobs_.end() ? JobCounts{} : it->second;
    std::uint64_t cum = 0;
    for (std::size_t i = 0; i < std::size(kStepSecondsBuckets); ++i) {
      cum += c.step_buckets[i];
      std::ostringstream le;  // the bound as written in kStepSecondsBuckets ("0.1", not 0.10000000000000001)
      le << kStepSecondsBuckets[i];
      o << "seam_step_seconds_bucket{job=\"" << label(job) << "\",le=\"" << le.str() << "\"} " << cum << '\n';
    }
    o << "seam_step_seconds_bucket{job=\"" << label(job) << "\",le=\"+Inf\"} " << c.step_count << '\n';
    o << "seam_step_seconds_sum{job=\"" << label(job) << "\"} " << c.step_seconds << '\n';
    o << "seam_step_seconds_count{job=\"" << label(job) << "\"} " << c.step_count << '\n';
  }
  family("seam_errors_total", "counter", "Refusals and failures, by kind (error replies and refused connections).");
  for (const auto& [kind, n] : errors_) o << "seam_errors_total{kind=\"" << label(kind) << "\"} " << n << '\n';
  return o.str();
}

}  // namespace seam::cloud
