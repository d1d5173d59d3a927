#pragma once
// Session state on each side, and step semantics.
//
// One object per side owns everything a step changes: the half's parameters
// and buffers, its optimizer, both codec contexts (AC-SGD buffers included)
// and the step counter. Save and restore are atomic (see state_store).
//
// Steps are numbered from 0. The cloud applies step s only when s is the
// next step it expects; a repeat of the last applied step gets the saved
// reply; a repeat that arrives while the original runs waits for it; anything
// else is refused (SessionErrc::step_order) with both numbers. Checkpoints
// are coordinated: every N steps (negotiated in Hello/Welcome) the edge saves
// its state, then asks the cloud to save at the same step (Checkpoint /
// CheckpointAck). After a restart the cloud's Welcome says which step it is
// at; the edge rolls back to its own checkpoint of that step and replays.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "seam/session/job.hpp"
#include "seam/session/protocol.hpp"
#include "seam/training/job.hpp"
#include "seam/transport/channel.hpp"

namespace seam::session {

struct SessionOptions {
  std::string state_dir;             // this side's checkpoints; empty: no checkpoints, no resume
  // Steps between coordinated checkpoints (0: none). Edge: what it asks for.
  // Cloud: the job's interval, which the cloud agrees to whatever the edge
  // asks (0: the edge's choice).
  std::uint64_t checkpoint_every = 0;
  int keep_checkpoints = 3;          // newest kept (at least 2)
  std::size_t delta_ram_limit_bytes = std::size_t{1} << 30;
  std::string job_name;  // edge: the job to join at a seam-cloud server (default: the fingerprint's first 16 digits)
};

using InferOutput = transport::InferOutput;

// What an edge talks to: training::Link plus the session messages.
class SessionLink : public training::Link {
 public:
  // Infer -> InferReply on the session (after hello); throws SessionError for an Error reply.
  virtual at::Tensor infer(const InferRequest& r) = 0;
  // Fetch -> FetchReply (no session needed); throws SessionError for an Error reply.
  virtual transport::Message fetch(const transport::Fetch& f) = 0;
  // Hello -> Welcome (throws SessionError for an Error reply).
  virtual transport::Welcome hello(const transport::Hello& h) = 0;
  // Checkpoint -> CheckpointAck; throws SessionError on refusal.
  virtual transport::CheckpointAck checkpoint(std::uint64_t step) = 0;
};

class EdgeSession {
 public:
  // Owns the edge half of a prepared job. With a state_dir it resumes from the
  // newest checkpoint there (and reuses the session nonce saved there).
  EdgeSession(const PreparedJob& job, SessionOptions o);
  // Uses a half built elsewhere (one-process runs, tests); `job` from in_memory_job.
  EdgeSession(training::ModelHalf& edge, const PreparedJob& job, SessionOptions o);
  ~EdgeSession();

  std::uint64_t step() const;  // steps applied = the number of the next step
  std::uint64_t nonce() const;
  const PreparedJob& job() const { return job_; }
  training::ModelHalf& half();
  training::HalfState& state();
  transport::Hello hello(const std::string& client_id) const;

  // Hello, then agree on a step with the cloud (rolling back if the cloud is
  // behind). Returns the step to train next.
  std::uint64_t connect(SessionLink& link, const std::string& client_id);
  // Trains step() on this batch. Returns nullopt when the cloud refused the
  // step for its order and the session rolled back: feed the batch of step() next.
  std::optional<training::StepMetrics> train_step(SessionLink& link, const training::TaskBatch& b);
  void rollback_to(std::uint64_t step);  // own checkpoint of exactly that step
  // Runs the edge half in eval mode on b.x, sends the activation encoded with
  // infer_codec(up codec) and returns the cloud half's logits ([B, ...],
  // float) or predicted classes (int64). Changes no state on either side.
  at::Tensor infer(SessionLink& link, const training::TaskBatch& b, InferOutput out = InferOutput::logits);
  // Accuracy (classify: per sample; mlm/lm: per labelled token) over the
  // first `limit` examples of split s (0 = all), in batches of `batch`,
  // through the cloud's Infer path.
  double evaluate(SessionLink& link, const training::Task& t, training::Split s, std::int64_t batch, std::size_t limit = 0);
  std::vector<std::uint64_t> checkpoints() const;

 private:
  void init(SessionOptions o);
  void reconcile(std::uint64_t cloud_step);
  PreparedJob job_;
  std::string job_name_;
  std::unique_ptr<training::ModelHalf> owned_;
  training::ModelHalf* half_;
  std::unique_ptr<training::EdgeTrainer> trainer_;
  struct Store;
  std::unique_ptr<Store> store_;
  std::uint64_t nonce_ = 0, every_ = 0, infer_batches_ = 0;
  std::string client_id_;
};

// The shared policy's cloud half: one half and one optimizer that every
// session of a job trains, one step at a time, in arrival order (vanilla
// split learning). Each session keeps its own codec contexts (AC-SGD
// buffers) and step counter. The half's state (weights, optimizer, steps
// applied by all sessions) has its own checkpoints, written whenever a
// session checkpoints and when the server stops; on start it resumes from
// the newest. A session that rolls back rolls back only its own state: the
// half keeps what every session taught it.
class SharedCloud {
 public:
  SharedCloud(const PreparedJob& job, const std::string& state_dir, int keep_checkpoints = 3);
  ~SharedCloud();
  training::ModelHalf& half() { return *half_; }
  training::HalfState& state() { return *state_; }
  std::mutex& compute() { return compute_; }  // held while a step or an inference runs on the half
  std::uint64_t steps() const;                // applied by every session
  std::string save();                         // "" without a state folder or before any step

 private:
  std::unique_ptr<training::ModelHalf> half_;
  std::unique_ptr<training::HalfState> state_;
  struct Store;
  std::unique_ptr<Store> store_;
  std::mutex compute_;
};

// One logical session on the cloud: thread-safe, called from server workers.
class CloudSession {
 public:
  // A session of a shared half (the shared policy); `shared` outlives it.
  CloudSession(SharedCloud& shared, const PreparedJob& job, SessionOptions o);
  CloudSession(const PreparedJob& job, SessionOptions o);  // resumes from state_dir's newest checkpoint
  CloudSession(training::ModelHalf& cloud, const PreparedJob& job, SessionOptions o);
  ~CloudSession();

  // Hello, Forward, Infer or Checkpoint -> Welcome, Backward, InferReply, CheckpointAck or Error.
  // Never throws: every refusal is an Error message with a SessionErrc code.
  // Takes the message by value so a Forward's activations move, not copy.
  transport::Message handle(transport::Message m);

  std::uint64_t next_step() const;
  // Saves the state at the current step (after the step in flight, if any),
  // for a server that stops: a client that reconnects at this step goes on
  // without a rollback. Returns the folder, or "" when there is nothing to
  // save (no state folder, no step applied, or a failed step not rolled back).
  std::string save_now();
  std::uint64_t applied() const { return applied_.load(); }  // steps applied since construction
  std::uint64_t replayed() const { return replayed_.load(); }
  std::uint64_t waiters() const { return waiters_.load(); }  // repeats waiting for the step in flight
  training::ModelHalf& half();
  // Tests: runs after a step is applied and before its reply is returned.
  std::function<void(std::uint64_t step)> after_apply;

 private:
  void init(SessionOptions o);
  transport::Message on_hello(const transport::Hello& h);
  transport::Message on_forward(transport::Message&& m);
  transport::Message on_checkpoint(const transport::Checkpoint& c);
  transport::Message on_infer(transport::Message&& m);
  PreparedJob job_;
  StepSpec spec_;
  std::unique_ptr<training::ModelHalf> owned_;
  training::ModelHalf* half_;
  SharedCloud* shared_ = nullptr;
  std::unique_ptr<training::CloudTrainer> trainer_;
  struct Store;
  std::unique_ptr<Store> store_;
  std::uint64_t every_ = 0, job_every_ = 0;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool running_ = false;
  bool dirty_ = false;  // a step failed after changing state: only a rollback clears it
  std::uint64_t running_step_ = 0;
  std::optional<std::uint64_t> last_step_;
  std::shared_ptr<const transport::Message> last_reply_;
  std::atomic<std::uint64_t> applied_{0}, replayed_{0}, waiters_{0};
};

// The files of a prepared job that an edge may download: never the cloud half.
// edge.ts is a TorchScript job's front file (only such jobs have one).
inline constexpr const char* kEdgeJobFiles[] = {"manifest", "job.conf", "edge_init.pt", "edge.ts"};
inline constexpr std::uint32_t kFetchChunkBytes = 1u << 20;  // the most one FetchReply carries

// Downloads the edge files of job `job_name` into `dir` in chunks, checks
// each against the downloaded manifest's SHA-256, and returns load_job(dir).
// Atomic: files land in a temporary folder renamed to `dir` at the end.
// Refuses when `dir` exists (std::runtime_error).
PreparedJob fetch_job(SessionLink& link, const std::string& job_name, const std::string& dir);
// The server's side: a FetchReply with up to min(max_bytes, kFetchChunkBytes)
// bytes of the named file of the prepared job, or an Error (bad_field) for a
// file not offered or an offset past the end.
transport::Message serve_fetch(const PreparedJob& job, const transport::Fetch& f);

// Cloud sessions of one job, keyed by the transport's session key (client
// identity | client id | nonce); each keeps its checkpoints in its own folder
// under root_dir, so a restarted server finds them again. Its handle() is a
// transport::Handler. Policy: per-client (each session trains its own cloud
// half) or shared (every session trains one SharedCloud, root_dir/shared).
class CloudSessions {
 public:
  CloudSessions(PreparedJob job, std::string root_dir, SessionOptions base = {}, bool shared = false);
  ~CloudSessions();
  const PreparedJob& job() const { return job_; }
  SharedCloud* shared() { return shared_.get(); }  // null for per-client
  transport::Message handle(const transport::PeerInfo& peer, transport::Message&& m);
  std::shared_ptr<CloudSession> find(const std::string& session_key) const;
  std::size_t size() const;
  std::uint64_t applied() const;  // over all sessions
  std::size_t save_all();         // save_now() on every session (and the shared half); returns how many saved
  // At most n sessions in memory (0: no cap). Opening one more first saves
  // and drops the least recently used session that no request is using (its
  // client resumes it from that checkpoint on its next Hello); when every
  // session is busy, the new one is refused (handler_failed, with the cap).
  // The save runs outside the registry's lock, so the other sessions keep
  // being served; the evicted session's own next Hello waits for it.
  void set_max_sessions(std::size_t n);
  std::uint64_t evicted() const { return evicted_.load(); }
  std::function<void(CloudSession&)> on_create;  // tests: hooks on new sessions

 private:
  PreparedJob job_;
  std::string root_;
  SessionOptions base_;
  std::unique_ptr<SharedCloud> shared_;
  mutable std::mutex mu_;
  std::condition_variable saved_;  // a session being saved by an eviction has been written
  std::map<std::string, std::shared_ptr<CloudSession>> sessions_;
  std::set<std::string> saving_;  // evicted sessions whose state is being written (outside mu_)
  std::string pick_victim() const;
  std::map<std::string, std::uint64_t> last_used_;  // session key -> tick of its latest request
  std::uint64_t tick_ = 0;
  std::size_t max_sessions_ = 0;
  std::atomic<std::uint64_t> evicted_{0};
};

}  // namespace seam::session
