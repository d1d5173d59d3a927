#include <ATen/ATen.h>
#include <torch/torch.h>

#include <filesystem>

#include "seam/compression/codec.hpp"

#include "seam/session/session.hpp"
#include "state_store.hpp"

namespace seam::session {

namespace t = seam::training;
namespace st = seam::transport;

struct CloudSession::Store : detail::StateStore {
  using detail::StateStore::StateStore;
};

CloudSession::CloudSession(const PreparedJob& job, SessionOptions o)
    : job_(job), owned_(std::make_unique<t::ModelHalf>(load_cloud_half(job))), half_(owned_.get()) {
  init(std::move(o));
}

CloudSession::CloudSession(t::ModelHalf& cloud, const PreparedJob& job, SessionOptions o) : job_(job), half_(&cloud) {
  init(std::move(o));
}

CloudSession::CloudSession(SharedCloud& shared, const PreparedJob& job, SessionOptions o)
    : job_(job), half_(&shared.half()), shared_(&shared) {
  init(std::move(o));
}

// ---------------------------------------------------------------- shared half

struct SharedCloud::Store : detail::StateStore {
  using detail::StateStore::StateStore;
};

SharedCloud::SharedCloud(const PreparedJob& job, const std::string& state_dir, int keep)
    : half_(std::make_unique<t::ModelHalf>(load_cloud_half(job))),
      state_(std::make_unique<t::HalfState>(*half_, job.spec.half)),
      store_(std::make_unique<Store>(state_dir, keep, false, &job.spec.model, job.fingerprint)) {
  if (store_->enabled()) {
    auto all = store_->steps();
    if (!all.empty()) store_->load(all.back(), *state_);
  }
}

SharedCloud::~SharedCloud() = default;

std::uint64_t SharedCloud::steps() const { return state_->steps_done(); }

std::string SharedCloud::save() {
  std::lock_guard<std::mutex> g(compute_);
  if (!store_->enabled() || state_->steps_done() == 0) return "";
  return store_->save(*state_);
}

CloudSession::~CloudSession() = default;

void CloudSession::init(SessionOptions o) {
  spec_ = step_spec(job_.spec.model, job_.spec.half);
  job_every_ = o.checkpoint_every;
  trainer_ = std::make_unique<t::CloudTrainer>(*half_, job_.spec.half, shared_ ? &shared_->state() : nullptr);
  detail::place_delta_buffers(trainer_->state(), o.delta_ram_limit_bytes, o.state_dir);
  store_ = std::make_unique<Store>(o.state_dir, o.keep_checkpoints, false, &job_.spec.model, job_.fingerprint);
  if (store_->enabled()) {
    auto all = store_->steps();
    if (!all.empty()) store_->load(all.back(), trainer_->state());
  }
}

std::uint64_t CloudSession::next_step() const {
  std::lock_guard<std::mutex> l(mu_);
  return trainer_->steps_done();
}

t::ModelHalf& CloudSession::half() { return *half_; }

st::Message CloudSession::handle(st::Message m) {
  try {
    if (auto* h = m.as<st::Hello>()) return on_hello(*h);
    if (m.as<st::Forward>()) return on_forward(std::move(m));
    if (auto* c = m.as<st::Checkpoint>()) return on_checkpoint(*c);
    if (m.as<st::Infer>()) return on_infer(std::move(m));
    if (auto* f = m.as<st::Fetch>()) return serve_fetch(job_, *f);
    return error_message(SessionErrc::bad_field, std::string("a session does not take ") + st::to_string(m.type()) + " messages");
  } catch (const SessionError& e) {
    return error_message(e.code(), e.what());
  } catch (const std::exception& e) {
    return error_message(SessionErrc::handler_failed, e.what());
  }
}

namespace {
// Names the first job field that differs; checked before any session exists.
void check_hello_job(const PreparedJob& job, const st::Hello& h) {
  if (h.job_fingerprint == job.fingerprint && h.job_fields == job.fields) return;
  auto why = compare_fields(job.fields, h.job_fields);
  if (why.empty()) why = "fingerprint " + h.job_fingerprint + " is not this job's " + job.fingerprint;
  throw SessionError(SessionErrc::job_mismatch, "hello refused: not this job: " + why);
}
}  // namespace

st::Message CloudSession::on_hello(const st::Hello& h) {
  check_hello_job(job_, h);
  std::unique_lock<std::mutex> l(mu_);
  cv_.wait(l, [&] { return !running_; });
  // The job's interval when it sets one (the edge must ask for the same and
  // refuses otherwise); else what the edge asks for.
  every_ = store_->enabled() ? (job_every_ ? job_every_ : h.checkpoint_every) : 0;
  const std::uint64_t mine = trainer_->steps_done(), theirs = h.resume_step;
  const bool reattach = !dirty_ && (theirs == mine || (theirs + 1 == mine && last_step_ == theirs));
  if (!reattach && (theirs != mine || dirty_)) {
    // The edge is behind (it restarted from a checkpoint), or ahead (the cloud
    // restarted from an uncoordinated checkpoint, written at eviction or
    // shutdown, and the edge trained on after it): go back to our checkpoint
    // of the edge's step, or the newest coordinated one before it; the edge
    // then rolls back to match.
    auto k = store_->resume_point(theirs);
    if (k) {
      store_->load(*k, trainer_->state());
      store_->drop_after(*k);
      last_step_.reset();
      last_reply_.reset();
      dirty_ = false;
    } else if (theirs < mine || dirty_) {
      throw SessionError(SessionErrc::step_order, "edge resumes at step " + std::to_string(theirs) +
                                                      " but the cloud, at step " + std::to_string(mine) +
                                                      ", has no checkpoint at or before it");
    }
  }
  if (every_ > 0 && trainer_->steps_done() == 0) store_->save(trainer_->state());  // a point to roll back to
  st::Welcome w;
  w.server_id = "seam";
  w.session_id = job_.fingerprint.substr(0, 16) + "-" + std::to_string(h.session_nonce);
  w.next_step = trainer_->steps_done();
  w.resumed = w.next_step > 0;
  w.checkpoint_every = every_;
  st::Message out;
  out.body = w;
  return out;
}

st::Message CloudSession::on_forward(st::Message&& m) {
  const std::uint64_t s = m.as<st::Forward>()->step_id;
  std::unique_lock<std::mutex> l(mu_);
  // A repeat of the step in flight waits for its result.
  if (running_ && running_step_ == s) {
    ++waiters_;
    cv_.wait(l, [&] { return !(running_ && running_step_ == s); });
    --waiters_;
  }
  const std::uint64_t next = trainer_->steps_done();
  if (last_step_ == s && last_reply_) {
    ++replayed_;
    return *last_reply_;
  }
  if (dirty_)
    throw SessionError(SessionErrc::step_order, "step " + std::to_string(s) + " refused: a failed step at " +
                                                    std::to_string(next) +
                                                    " left the session's state changed; send Hello to resume from a checkpoint");
  if (running_ || s != next)
    throw SessionError(SessionErrc::step_order, "step " + std::to_string(s) + " refused: the cloud expects step " +
                                                    std::to_string(running_ ? running_step_ + 1 : next) +
                                                    (s > next ? " (a step from the future)" : " (a stale step)"));
  // Validate everything before any state changes.
  t::StepRequest r = parse_forward(std::move(m), spec_);
  running_ = true;
  running_step_ = s;
  l.unlock();
  st::Message reply;
  try {
    std::unique_lock<std::mutex> compute;  // a shared half: one step at a time, in arrival order
    if (shared_) compute = std::unique_lock<std::mutex>(shared_->compute());
    reply = backward_message(trainer_->step(r));
    compute = {};
    ++applied_;
    if (after_apply) after_apply(s);
  } catch (...) {
    // A step can fail after it changed state (delta buffers decoded, an
    // optimizer step taken): never apply a retry on top of that; only a
    // rollback to a checkpoint (on the next Hello) clears it.
    l.lock();
    running_ = false;
    dirty_ = true;
    cv_.notify_all();
    throw;
  }
  l.lock();
  running_ = false;
  last_step_ = s;
  last_reply_ = std::make_shared<const st::Message>(reply);
  cv_.notify_all();
  return reply;
}

st::Message CloudSession::on_checkpoint(const st::Checkpoint& c) {
  std::unique_lock<std::mutex> l(mu_);
  cv_.wait(l, [&] { return !running_; });
  if (!store_->enabled() || every_ == 0)
    throw SessionError(SessionErrc::checkpoint_failed, "this session was agreed without checkpoints");
  const std::uint64_t next = trainer_->steps_done();
  if (c.step_id != next)
    throw SessionError(SessionErrc::step_order, "checkpoint of step " + std::to_string(c.step_id) +
                                                    " refused: the cloud is at step " + std::to_string(next));
  st::CheckpointAck ack;
  ack.step_id = c.step_id;
  ack.path = store_->save(trainer_->state());
  if (shared_) shared_->save();
  st::Message out;
  out.body = ack;
  return out;
}

st::Message CloudSession::on_infer(st::Message&& m) {
  const InferRequest r = parse_infer(std::move(m), spec_);
  compression::CodecContext ctx(job_.spec.half.seed);  // fresh: the session's codec state stays as it is
  at::Tensor a = compression::decode_message(r.activations.data(), r.activations.size(), ctx).to(at::kFloat);
  if (!at::isfinite(a).all().item<bool>())
    throw SessionError(SessionErrc::bad_field, "infer batch " + std::to_string(r.batch_id) +
                                                   ": field 'activations': values that are not finite (NaN or Inf)");
  // The half is this session's: a step of the session waits, and so do we.
  std::unique_lock<std::mutex> l(mu_);
  cv_.wait(l, [&] { return !running_; });
  at::Tensor logits;
  {
    std::unique_lock<std::mutex> compute;
    if (shared_) compute = std::unique_lock<std::mutex>(shared_->compute());
    torch::NoGradGuard ng;
    detail::EvalMode eval(*half_);
    logits = half_->forward(a, t::BatchContext{r.mask, r.batch});
  }
  if (logits.size(0) != r.batch)
    throw SessionError(SessionErrc::bad_field, "infer batch " + std::to_string(r.batch_id) + ": the activation gives " +
                                                   std::to_string(logits.size(0)) + " rows for a batch of " +
                                                   std::to_string(r.batch));
  return infer_reply_message(r.batch_id, r.output == InferOutput::classes ? logits.argmax(-1) : logits, r.output);
}

std::string CloudSession::save_now() {
  std::unique_lock<std::mutex> l(mu_);
  cv_.wait(l, [&] { return !running_; });
  if (!store_->enabled() || dirty_ || trainer_->steps_done() == 0) return "";
  return store_->save(trainer_->state(), /*coordinated=*/false);
}

// ---------------------------------------------------------------- registry

CloudSessions::CloudSessions(PreparedJob job, std::string root_dir, SessionOptions base, bool shared)
    : job_(std::move(job)), root_(std::move(root_dir)), base_(std::move(base)) {
  if (shared) shared_ = std::make_unique<SharedCloud>(job_, root_.empty() ? "" : root_ + "/shared", base_.keep_checkpoints);
}

CloudSessions::~CloudSessions() {
  std::lock_guard<std::mutex> l(mu_);
  sessions_.clear();  // before the shared half they point to
}

st::Message CloudSessions::handle(const st::PeerInfo& peer, st::Message&& m) {
  if (peer.session_key.empty())
    return error_message(SessionErrc::no_session, std::string("send Hello before ") + st::to_string(m.type()));
  const std::string& key = peer.session_key;
  std::shared_ptr<CloudSession> s;
  while (!s) {
    std::string victim_key;
    std::shared_ptr<CloudSession> victim;
    {
      std::unique_lock<std::mutex> l(mu_);
      // An evicted session of this key is still being written: its state
      // folder is what a new session would load.
      saved_.wait(l, [&] { return saving_.count(key) == 0; });
      auto it = sessions_.find(key);
      if (it != sessions_.end()) {
        s = it->second;
        last_used_[key] = ++tick_;
        break;
      }
      const auto* h = m.as<st::Hello>();
      if (!h)
        return error_message(SessionErrc::no_session, std::string("no session for this connection; send Hello before ") +
                                                          st::to_string(m.type()));
      try {  // a Hello for another job creates nothing (no model, no folder)
        check_hello_job(job_, *h);
      } catch (const SessionError& e) {
        return error_message(e.code(), e.what());
      }
      if (max_sessions_ > 0 && sessions_.size() + saving_.size() >= max_sessions_) {
        // Sessions being saved still hold their memory: wait for one to go
        // rather than evict another.
        if (!saving_.empty()) {
          saved_.wait(l);
          continue;
        }
        victim_key = pick_victim();
        if (victim_key.empty())
          return error_message(SessionErrc::handler_failed,
                               "cannot open the session: " + std::to_string(max_sessions_) +
                                   " sessions of this job are open and busy (max-sessions); try again later");
        victim = std::move(sessions_[victim_key]);
        sessions_.erase(victim_key);
        last_used_.erase(victim_key);
        saving_.insert(victim_key);
        ++evicted_;
      } else {
        SessionOptions o = base_;
        o.state_dir = root_.empty() ? "" : root_ + "/" + sha256_hex(key).substr(0, 24);
        try {
          s = shared_ ? std::make_shared<CloudSession>(*shared_, job_, o) : std::make_shared<CloudSession>(job_, o);
        } catch (const std::exception& e) {
          return error_message(SessionErrc::handler_failed, std::string("cannot open the session: ") + e.what());
        }
        if (on_create) on_create(*s);
        sessions_[key] = s;
        last_used_[key] = ++tick_;
        break;
      }
    }
    // Outside the lock: the other sessions keep being served while it writes.
    // A failed save loses only the steps since the session's last coordinated
    // checkpoint; its client rolls back to that one on its next Hello.
    try {
      victim->save_now();
    } catch (...) {
    }
    victim.reset();
    {
      std::lock_guard<std::mutex> l(mu_);
      saving_.erase(victim_key);
    }
    saved_.notify_all();
  }
  return s->handle(std::move(m));
}

void CloudSessions::set_max_sessions(std::size_t n) {
  std::lock_guard<std::mutex> l(mu_);
  max_sessions_ = n;
}

// Under mu_: the least recently used session that no request is using. Only
// sessions with a state folder can go (their clients resume from it).
std::string CloudSessions::pick_victim() const {
  if (root_.empty()) return "";
  std::string victim;
  std::uint64_t oldest = 0;
  for (const auto& [k, s] : sessions_) {
    if (s.use_count() > 1) continue;  // a request is using it
    auto u = last_used_.find(k);
    const std::uint64_t used = u == last_used_.end() ? 0 : u->second;
    if (victim.empty() || used < oldest) {
      victim = k;
      oldest = used;
    }
  }
  return victim;
}

std::size_t CloudSessions::save_all() {
  std::vector<std::shared_ptr<CloudSession>> all;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (const auto& [key, s] : sessions_) all.push_back(s);
  }
  std::size_t saved = 0;
  for (auto& s : all) saved += s->save_now().empty() ? 0 : 1;
  if (shared_) saved += shared_->save().empty() ? 0 : 1;
  return saved;
}

std::shared_ptr<CloudSession> CloudSessions::find(const std::string& key) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = sessions_.find(key);
  return it == sessions_.end() ? nullptr : it->second;
}

std::size_t CloudSessions::size() const {
  std::lock_guard<std::mutex> l(mu_);
  return sessions_.size();
}

std::uint64_t CloudSessions::applied() const {
  std::lock_guard<std::mutex> l(mu_);
  std::uint64_t n = 0;
  for (const auto& kv : sessions_) n += kv.second->applied();
  return n;
}

}  // namespace seam::session
