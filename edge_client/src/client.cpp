#include "seam/edge_client/client.hpp"

#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <stdexcept>

#include "seam/session/links.hpp"
#include "seam/transport/channel.hpp"

namespace seam::edge {

namespace ss = seam::session;
namespace st = seam::transport;
namespace t = seam::training;

Client::Client(EdgeOptions o) : opts_(std::move(o)) {
  auto errors = validate(opts_);
  if (!errors.empty()) {
    std::string all = "edge options: ";
    for (std::size_t i = 0; i < errors.size(); ++i) all += (i ? "; " : "") + errors[i];
    throw std::invalid_argument(all);
  }
  sopts_.state_dir = opts_.state_dir;
  sopts_.checkpoint_every = opts_.checkpoint_every;
  sopts_.keep_checkpoints = opts_.keep_checkpoints;
  sopts_.job_name = opts_.job;
}

Client::~Client() {
  try {
    close();
  } catch (...) {  // a destructor never throws; the session ends either way
  }
}

void Client::need_joined(const char* what) const {
  if (closed_) throw StateError(std::string(what) + ": the session is closed");
  if (!session_) throw StateError(std::string(what) + ": join the job first");
}

void Client::check_cancel() {
  if (cancel_.exchange(false)) throw Cancelled("cancelled");
}

std::uint64_t Client::join() {
  if (closed_) throw StateError("join: the session is closed");
  if (session_) throw StateError("join: already joined job '" + opts_.job + "'");
  check_cancel();
  st::ClientOptions co;
  co.host = opts_.host();
  co.port = opts_.port();
  co.tls.ca_file = opts_.ca_file;
  co.tls.cert_file = opts_.cert_file;
  co.tls.key_file = opts_.key_file;
  co.connect_timeout = st::Millis(opts_.connect_timeout_ms);
  co.stall_timeout = st::Millis(opts_.stall_timeout_ms);
  co.max_attempts = opts_.max_attempts;
  // Jitter: each client draws its first reconnect delay in [0.5, 1.5] x
  // backoff-initial-ms (the transport doubles it up to the cap), so clients
  // cut off together do not come back in lockstep. Own generator, no global RNG.
  std::mt19937_64 gen{std::random_device{}()};
  const auto first = std::max<std::int64_t>(
      1, std::llround(double(opts_.backoff_initial_ms) * std::uniform_real_distribution<double>(0.5, 1.5)(gen)));
  co.backoff_initial = st::Millis(first);
  co.backoff_max = st::Millis(std::max(first, opts_.backoff_max_ms));
  link_ = std::make_unique<ss::TlsLink>(co);
  const std::string dir = opts_.resolved_job_dir();
  if (!std::filesystem::exists(dir)) {
    const auto parent = std::filesystem::path(dir).parent_path();
    if (!parent.empty()) std::filesystem::create_directories(parent);
    job_ = std::make_unique<ss::PreparedJob>(ss::fetch_job(*link_, opts_.job, dir));
    downloaded_ = true;
  } else {
    job_ = std::make_unique<ss::PreparedJob>(ss::load_job(dir));
  }
  if (!opts_.state_dir.empty()) std::filesystem::create_directories(opts_.state_dir);
  auto session = std::make_unique<ss::EdgeSession>(*job_, sopts_);
  session->connect(*link_, opts_.client_id);
  session_ = std::move(session);
  exchange_ = std::make_unique<ss::ActivationExchange>(*session_);
  stats_.step = session_->step();
  return session_->step();
}

void Client::check_batch(const t::TaskBatch& b, bool training) const {
  const std::string what = training ? "train_step" : "infer";
  const auto& mc = job_->spec.model;
  auto shape = [](const at::Tensor& x) { return x.defined() ? c10::str(x.sizes()) : std::string("none"); };
  if (!b.x.defined() || b.x.dim() < 1) throw std::invalid_argument(what + ": no inputs");
  const std::int64_t n = b.x.size(0);
  if (n < 1) throw std::invalid_argument(what + ": the batch is empty");
  const bool images = mc.kind == "vit" || mc.kind == "cnn";
  const bool text = mc.kind == "bert" || mc.kind == "gpt";
  if (images) {
    if (b.x.scalar_type() != at::kFloat) throw std::invalid_argument(what + ": image inputs must be float32");
    const std::vector<std::int64_t> want{n, mc.channels, mc.image_size, mc.image_size};
    if (b.x.sizes() != at::IntArrayRef(want))
      throw std::invalid_argument(what + ": inputs are " + shape(b.x) + ", job '" + opts_.job + "' takes " +
                                  c10::str(at::IntArrayRef(want)) + " (batch, channels, height, width)");
  } else if (text) {
    if (b.x.scalar_type() != at::kLong) throw std::invalid_argument(what + ": text inputs must be int64 token ids");
    if (b.x.dim() != 2 || b.x.size(1) < 1 || b.x.size(1) > mc.max_len)
      throw std::invalid_argument(what + ": token ids are " + shape(b.x) + ", job '" + opts_.job +
                                  "' takes [batch, L] with 1 <= L <= " + std::to_string(mc.max_len));
  }
  if (b.mask.defined() && (b.mask.dim() != 2 || b.mask.size(0) != n || (b.x.dim() == 2 && b.mask.size(1) != b.x.size(1))))
    throw std::invalid_argument(what + ": the mask is " + shape(b.mask) + ", expected " + shape(b.x));
  if (!training) return;
  if (!b.labels.defined() || b.labels.scalar_type() != at::kLong)
    throw std::invalid_argument(what + ": labels must be int64 (got " +
                                (b.labels.defined() ? std::string(c10::toString(b.labels.scalar_type())) : "none") + ")");
  if (job_->spec.half.task == "classify" && (b.labels.dim() != 1 || b.labels.size(0) != n))
    throw std::invalid_argument(what + ": labels are " + shape(b.labels) + ", expected [" + std::to_string(n) +
                                "] (one class per sample)");
  if (static_cast<std::int64_t>(b.ids.size()) != n)
    throw std::invalid_argument(what + ": " + std::to_string(b.ids.size()) + " sample ids for a batch of " +
                                std::to_string(n));
}

void Client::account(const t::StepMetrics& m) {
  stats_.traffic.add(m);
  stats_.edge_ms += m.edge_ms, stats_.encode_ms += m.encode_ms, stats_.link_ms += m.link_ms;
  stats_.cloud_ms += m.cloud_ms, stats_.decode_ms += m.decode_ms;
  ++stats_.steps_this_run;
  if (progress_) progress_(m);
}

std::optional<t::StepMetrics> Client::train_step(const t::TaskBatch& b) {
  need_joined("train_step");
  check_cancel();
  check_batch(b, true);
  auto m = session_->train_step(*link_, b);
  if (m) account(*m);
  return m;
}

at::Tensor Client::infer(const t::TaskBatch& b, ss::InferOutput out) {
  need_joined("infer");
  check_cancel();
  check_batch(b, false);
  return session_->infer(*link_, b, out);
}

double Client::evaluate(const t::Task& task, t::Split s, std::int64_t batch, std::size_t limit) {
  need_joined("evaluate");
  check_cancel();
  return session_->evaluate(*link_, task, s, batch, limit);
}

ss::ExchangeResult Client::exchange(const at::Tensor& a, const at::Tensor& labels, const std::vector<std::int64_t>& ids,
                                    const at::Tensor& mask) {
  need_joined("exchange");
  check_cancel();
  auto r = exchange_->step(*link_, a, labels, ids, mask);
  account(r.metrics);
  return r;
}

at::Tensor Client::infer_activation(const at::Tensor& a, ss::InferOutput out, const at::Tensor& mask) {
  need_joined("infer");
  check_cancel();
  return exchange_->infer(*link_, a, out, mask);
}

std::string Client::save() {
  need_joined("save");
  return ss::save_coordinated(*session_, *link_, sopts_);
}

void Client::restore(std::uint64_t s) {
  need_joined("restore");
  session_->rollback_to(s);
  session_->connect(*link_, opts_.client_id);
}

std::vector<std::uint64_t> Client::checkpoints() const {
  need_joined("checkpoints");
  return session_->checkpoints();
}

std::uint64_t Client::step() const { return session_ ? session_->step() : 0; }

ClientStats Client::stats() const {
  ClientStats s = stats_;
  s.step = step();
  if (link_) {
    auto ls = link_->stats();
    s.bytes_up = ls.bytes_up;
    s.bytes_down = ls.bytes_down;
    s.reconnects = link_->client().reconnects();
  }
  return s;
}

const ss::PreparedJob& Client::job() const {
  need_joined("job");
  return *job_;
}
ss::EdgeSession& Client::session() {
  need_joined("session");
  return *session_;
}
ss::SessionLink& Client::link() {
  need_joined("link");
  return *link_;
}

void Client::close() {
  if (closed_) return;
  closed_ = true;
  if (link_) link_->client().close();
}

std::string metrics_json(const t::StepMetrics& m) {
  nlohmann::json j = {{"step", m.step},           {"loss", m.loss},
                      {"accuracy", m.accuracy},   {"bytes_up", m.bytes_up},
                      {"bytes_down", m.bytes_down}, {"naive_up", m.naive_up},
                      {"naive_down", m.naive_down}, {"ratio_up", m.ratio_up},
                      {"ratio_down", m.ratio_down}, {"frame_ratio_up", m.frame_ratio_up},
                      {"frame_ratio_down", m.frame_ratio_down}, {"edge_ms", m.edge_ms},
                      {"encode_ms", m.encode_ms}, {"link_ms", m.link_ms},
                      {"cloud_ms", m.cloud_ms},   {"decode_ms", m.decode_ms}};
  return j.dump();
}

}  // namespace seam::edge
