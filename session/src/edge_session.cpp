#include <filesystem>
#include <random>

#include <ATen/ATen.h>
#include <torch/torch.h>

#include "seam/compression/codec.hpp"

#include "seam/session/session.hpp"
#include "state_store.hpp"

namespace seam::session {

namespace t = seam::training;
namespace st = seam::transport;

struct EdgeSession::Store : detail::StateStore {
  using detail::StateStore::StateStore;
};

EdgeSession::EdgeSession(const PreparedJob& job, SessionOptions o)
    : job_(job), owned_(std::make_unique<t::ModelHalf>(load_edge_half(job))), half_(owned_.get()) {
  init(std::move(o));
}

EdgeSession::EdgeSession(t::ModelHalf& edge, const PreparedJob& job, SessionOptions o) : job_(job), half_(&edge) {
  init(std::move(o));
}

EdgeSession::~EdgeSession() = default;

void EdgeSession::init(SessionOptions o) {
  every_ = o.state_dir.empty() ? 0 : o.checkpoint_every;
  job_name_ = o.job_name;
  trainer_ = std::make_unique<t::EdgeTrainer>(*half_, job_.spec.half);
  detail::place_delta_buffers(trainer_->state(), o.delta_ram_limit_bytes, o.state_dir);
  store_ = std::make_unique<Store>(o.state_dir, o.keep_checkpoints, true, &job_.spec.model, job_.fingerprint);
  // The nonce names this logical session to the cloud across reconnects and
  // restarts, so it lives beside the checkpoints.
  const std::string nonce_file = o.state_dir.empty() ? "" : o.state_dir + "/nonce";
  if (!nonce_file.empty() && std::filesystem::exists(nonce_file)) {
    nonce_ = std::stoull(detail::read_file(nonce_file));
  } else {
    std::random_device rd;
    while (nonce_ == 0) nonce_ = (std::uint64_t{rd()} << 32) ^ rd();
    if (!nonce_file.empty()) detail::write_file_synced(nonce_file, std::to_string(nonce_));
  }
  if (store_->enabled()) {
    auto all = store_->steps();
    if (!all.empty()) store_->load(all.back(), trainer_->state());
    else if (every_ > 0) store_->save(trainer_->state());  // step 0: always a point to roll back to
  }
}

std::uint64_t EdgeSession::step() const { return trainer_->steps_done(); }
std::uint64_t EdgeSession::nonce() const { return nonce_; }
t::ModelHalf& EdgeSession::half() { return *half_; }
t::HalfState& EdgeSession::state() { return trainer_->state(); }
std::vector<std::uint64_t> EdgeSession::checkpoints() const { return store_->steps(); }

st::Hello EdgeSession::hello(const std::string& client_id) const {
  st::Hello h;
  h.client_id = client_id;
  h.job = job_name_.empty() ? job_.fingerprint.substr(0, 16) : job_name_;
  h.up_codec = compression::make_codec(job_.spec.half.up_codec)->spec();
  h.down_codec = compression::make_codec(job_.spec.half.down_codec)->spec();
  h.seed = job_.spec.half.seed;
  h.job_fingerprint = job_.fingerprint;
  h.job_fields = job_.fields;
  h.session_nonce = nonce_;
  h.resume_step = step();
  h.checkpoint_every = every_;
  return h;
}

void EdgeSession::rollback_to(std::uint64_t s) {
  if (!store_->has(s))
    throw SessionError(SessionErrc::step_order, "edge: cannot resume at step " + std::to_string(s) +
                                                    ": no edge checkpoint of that step in '" + store_->dir() + "'");
  store_->load(s, trainer_->state());
}

void EdgeSession::reconcile(std::uint64_t cloud_step) {
  const auto mine = step();
  if (cloud_step == mine) return;
  if (cloud_step < mine) return rollback_to(cloud_step);
  throw SessionError(SessionErrc::step_order, "edge is at step " + std::to_string(mine) + " but the cloud is at step " +
                                                  std::to_string(cloud_step) + " and could not roll back to it");
}

std::uint64_t EdgeSession::connect(SessionLink& link, const std::string& client_id) {
  client_id_ = client_id;
  st::Welcome w = link.hello(hello(client_id));
  if (w.checkpoint_every != every_)
    throw SessionError(SessionErrc::checkpoint_failed, "edge asked for a checkpoint every " + std::to_string(every_) +
                                                           " steps, the cloud agreed to " + std::to_string(w.checkpoint_every));
  // The cloud may sit one step ahead when it applied our last step but the
  // reply was lost: the retried step is answered from its saved reply.
  if (w.next_step != step() + 1) reconcile(w.next_step);
  return step();
}

std::optional<t::StepMetrics> EdgeSession::train_step(SessionLink& link, const t::TaskBatch& b) {
  t::StepMetrics m;
  try {
    m = trainer_->step(link, b.x, b.labels, b.ids, b.mask);
  } catch (const SessionError& e) {
    // step_order: the cloud is elsewhere (it restarted from a checkpoint).
    // no_session: it saved and dropped this session to make room
    // (max-sessions). Either way: Hello again, learn its step, roll back.
    if (e.code() != SessionErrc::step_order && e.code() != SessionErrc::no_session) throw;
    connect(link, client_id_);
    return std::nullopt;
  }
  if (every_ > 0 && step() % every_ == 0) {
    store_->save(trainer_->state());
    try {
      link.checkpoint(step());
    } catch (const SessionError& e) {
      // no_session: the cloud saved and dropped this session between the step
      // and this request (max-sessions). Hello again; at the same step, ask
      // for the checkpoint again so that the cloud's copy is coordinated too.
      if (e.code() != SessionErrc::step_order && e.code() != SessionErrc::no_session) throw;
      const std::uint64_t s = step();
      connect(link, client_id_);
      if (step() == s) link.checkpoint(s);
      return std::nullopt;
    }
  }
  return m;
}

at::Tensor EdgeSession::infer(SessionLink& link, const t::TaskBatch& b, InferOutput out) {
  if (!b.x.defined() || b.x.dim() < 1 || b.x.size(0) < 1) throw std::invalid_argument("infer: empty batch");
  at::Tensor a;
  {
    torch::NoGradGuard ng;
    detail::EvalMode eval(*half_);
    a = half_->forward(b.x, t::BatchContext{b.mask, b.x.size(0)});
  }
  compression::CodecContext ctx(job_.spec.half.seed);  // fresh: inference touches no session state
  InferRequest r;
  r.batch_id = ++infer_batches_;
  r.batch = b.x.size(0);
  r.mask = b.mask;
  r.output = out;
  r.activations = compression::make_codec(infer_codec(job_.spec.half.up_codec))->encode(a, ctx);
  return link.infer(r);
}

double EdgeSession::evaluate(SessionLink& link, const t::Task& task, t::Split s, std::int64_t batch, std::size_t limit) {
  if (batch < 1) throw std::invalid_argument("evaluate: batch must be at least 1");
  std::size_t n = task.size(s);
  if (limit) n = std::min(n, limit);
  double correct = 0, counted = 0;
  const std::string& kind = job_.spec.half.task;
  for (std::size_t i = 0; i < n; i += static_cast<std::size_t>(batch)) {
    std::vector<std::int64_t> idx;
    for (std::size_t j = i; j < std::min(n, i + static_cast<std::size_t>(batch)); ++j) idx.push_back(static_cast<std::int64_t>(j));
    const auto b = task.batch(s, idx);
    const at::Tensor logits = infer(link, b, InferOutput::logits);
    correct += t::task_correct(kind, logits, b.labels);
    counted += kind == "classify" ? static_cast<double>(idx.size()) : b.labels.ne(-100).sum().item<double>();
  }
  return counted > 0 ? correct / counted : 0.0;
}

}  // namespace seam::session
