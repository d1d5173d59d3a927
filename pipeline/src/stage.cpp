#include "seam/pipeline/stage.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "seam/compression/codec.hpp"
#include "seam/session/job.hpp"
#include "seam/session/protocol.hpp"
#include "seam/training/checkpoint.hpp"
#include "seam/training/stages.hpp"

namespace seam::pipeline {

namespace st = seam::transport;
namespace ss = seam::session;
using Clock = std::chrono::steady_clock;

namespace {

// A bounded FIFO whose waits give up after a while, so that stop() and
// failures are noticed.
template <class T>
class Queue {
 public:
  explicit Queue(std::size_t cap) : cap_(std::max<std::size_t>(1, cap)) {}
  // Moves `v` in only when there is room; on a time-out `v` is left as it was.
  bool push(T& v, std::chrono::milliseconds wait) {
    std::unique_lock<std::mutex> lock(mu_);
    if (!room_.wait_for(lock, wait, [&] { return q_.size() < cap_; })) return false;
    q_.push_back(std::move(v));
    ready_.notify_one();
    return true;
  }
  std::optional<T> pop(std::chrono::milliseconds wait) {
    std::unique_lock<std::mutex> lock(mu_);
    if (!ready_.wait_for(lock, wait, [&] { return !q_.empty(); })) return std::nullopt;
    T v = std::move(q_.front());
    q_.pop_front();
    room_.notify_one();
    return v;
  }
  void clear() {
    std::lock_guard<std::mutex> lock(mu_);
    q_.clear();
    room_.notify_all();
  }

 private:
  std::size_t cap_;
  std::mutex mu_;
  std::condition_variable room_, ready_;
  std::deque<T> q_;
};

st::ClientOptions hop_client(const HopOptions& h) {
  st::ClientOptions c;
  c.host = h.host;
  c.port = h.port;
  c.tls = h.tls;
  c.stall_timeout = h.stall_timeout;
  c.connect_timeout = std::chrono::duration_cast<st::Millis>(h.stall_timeout);
  c.max_attempts = 1;
  c.max_in_flight = std::max(1, h.in_flight);
  c.link = h.link;
  c.clock = h.clock;
  return c;
}

std::string where(const HopOptions& h) { return h.host + ":" + std::to_string(h.port); }

st::Message welcome(const std::string& name) {
  st::Message m;
  st::Welcome w;
  w.server_id = name;
  w.session_id = name;
  m.body = w;
  return m;
}

st::Message ack(std::uint64_t batch_id) {
  st::Message m;
  m.body = st::Pong{batch_id};
  return m;
}

// The failure text of a hop: the deepest stage's own report when the next hop
// passed one on, else this hop's connection error, naming the next stage.
std::string hop_failure(const std::string& self, const HopOptions& next, const std::exception& e) {
  if (auto* te = dynamic_cast<const st::TransportError*>(&e); te && te->code() == make_error_code(st::Errc::peer_error))
    return te->peer_text();
  return "stage '" + next.name + "' (" + where(next) + ") failed: " + e.what() + " (seen by " + self + ")";
}

}  // namespace

// ---------------------------------------------------------------- stage

struct StageWorker::Impl : std::enable_shared_from_this<StageWorker::Impl> {
  struct Inbound {
    std::uint64_t generation, batch_id;
    std::int64_t batch;
    at::Tensor mask;
    std::vector<std::uint8_t> activations;
  };
  struct Outbound {
    std::uint64_t generation, batch_id;
    std::int64_t batch;
    at::Tensor mask, y;
    double compute_s;
  };

  explicit Impl(StageOptions opts)
      : o(std::move(opts)), half(build()), in(static_cast<std::size_t>(o.queue)), out(static_cast<std::size_t>(o.queue)) {}

  StageOptions o;
  bool is_last = false, text_input = false;
  training::ModelHalf half;
  Queue<Inbound> in;
  Queue<Outbound> out;
  std::unique_ptr<st::Server> server;
  std::thread compute_thread, send_thread;
  std::atomic<bool> stopping{false};
  std::atomic<std::uint64_t> generation{0}, sent{0};
  mutable std::mutex mu;
  std::string failed;  // guarded by mu

  std::string self() const { return "stage '" + o.name + "'"; }

  training::ModelHalf build() {
    if (o.name.empty()) throw std::invalid_argument("stage: a name is required");
    if (o.queue < 1) throw std::invalid_argument("stage '" + o.name + "': queue must be >= 1");
    training::ModelHalf h = o.job_dir.empty() ? build_range() : build_job_half();
    h.train(false);
    is_last = o.end == training::block_count(o.model);
    text_input = o.begin == 0 && (o.model.kind == "bert" || o.model.kind == "gpt");
    if (!is_last && o.next.codec != "quantpipe") {
      const auto spec = compression::make_codec(o.next.codec)->spec();
      if (ss::codec_needs_ids(spec))
        throw std::invalid_argument("stage '" + o.name + "': codec '" + spec +
                                    "' keeps per-sample state; a pipeline hop takes a stateless codec");
    }
    return h;
  }

  training::ModelHalf build_range() {
    if (!o.job_half.empty() || !o.job_weights.empty())
      throw std::invalid_argument("stage '" + o.name + "': a job half and its weights need the job's folder");
    if (!o.checkpoint.empty()) o.model = training::checkpoint_config(o.checkpoint);
    return training::build_model_range(o.model, o.begin, o.end, o.checkpoint);
  }

  training::ModelHalf build_job_half() {
    const bool edge = o.job_half == "edge";
    if (!edge && o.job_half != "cloud")
      throw std::invalid_argument("stage '" + o.name + "': job half '" + o.job_half + "': expected edge or cloud");
    if (!o.checkpoint.empty())
      throw std::invalid_argument("stage '" + o.name + "': give a checkpoint or a job, not both");
    const auto job = ss::load_job(o.job_dir);
    o.model = job.spec.model;
    o.begin = edge ? 0 : o.model.split;
    o.end = edge ? o.model.split : training::block_count(o.model);
    training::ModelHalf h = edge ? ss::load_edge_half(job) : ss::load_cloud_half(job);
    if (!o.job_weights.empty()) {
      std::string file = o.job_weights;
      if (std::filesystem::is_directory(file)) file += "/half.pt";
      training::CheckpointParts parts;
      parts.config = &job.spec.model;
      (edge ? parts.edge : parts.cloud) = &h;
      parts.fingerprint = job.fingerprint;
      try {
        training::load_checkpoint(file, parts);
      } catch (const std::exception& e) {
        throw std::invalid_argument("stage '" + o.name + "': weights '" + o.job_weights + "' of job '" + o.job_dir +
                                    "': " + e.what());
      }
    }
    return h;
  }

  std::string failure() const {
    std::lock_guard<std::mutex> lock(mu);
    return failed;
  }
  void fail(const std::string& why) {
    std::lock_guard<std::mutex> lock(mu);
    if (failed.empty()) failed = why;
  }

  st::Message handle(st::Message&& m) {
    if (m.as<st::Hello>()) {
      // A (re)connecting upstream starts afresh: a failure seen by the last
      // run is forgotten and its leftover micro-batches dropped.
      std::lock_guard<std::mutex> lock(mu);
      if (!failed.empty()) {
        failed.clear();
        ++generation;
        in.clear();
        out.clear();
      }
      return welcome(o.name);
    }
    if (!m.as<st::Infer>()) throw std::runtime_error(self() + ": unexpected " + std::string(st::to_string(m.type())));
    if (auto f = failure(); !f.empty()) throw std::runtime_error(f);
    ss::StepSpec spec;
    spec.up_codec = "none";  // named only in a refusal of a stateful codec
    spec.max_len = o.max_len;
    auto r = ss::parse_infer(std::move(m), spec);
    Inbound item{generation.load(), r.batch_id, r.batch, r.mask, std::move(r.activations)};
    // A full queue waits as long as this stage and the hops after it are
    // alive, however long a micro-batch computes: meanwhile the server's
    // Working notices tell the previous hop that this stage is busy, not
    // stalled. A dead or frozen next stage is the send thread's failure.
    while (!in.push(item, std::chrono::milliseconds(50))) {
      if (auto f = failure(); !f.empty()) throw std::runtime_error(f);
      if (stopping) throw std::runtime_error(self() + " is stopping");
    }
    return ack(r.batch_id);
  }

  void compute_loop() {
    compression::CodecContext ctx;
    while (!stopping) {
      auto item = in.pop(std::chrono::milliseconds(50));
      if (!item || item->generation != generation) continue;
      try {
        const auto t0 = Clock::now();
        at::Tensor x = compression::decode_message(item->activations.data(), item->activations.size(), ctx);
        if (text_input) x = x.to(at::kLong);
        training::BatchContext bc;
        bc.attention_mask = item->mask;
        bc.batch_size = item->batch;
        at::Tensor y;
        {
          c10::InferenceMode guard;
          y = half.forward(x, bc).contiguous();
        }
        Outbound ob{item->generation, item->batch_id, item->batch, item->mask, y,
                    std::chrono::duration<double>(Clock::now() - t0).count()};
        while (!stopping && item->generation == generation && !out.push(ob, std::chrono::milliseconds(50))) {
        }
      } catch (const std::exception& e) {
        fail(self() + " failed on batch " + std::to_string(item->batch_id) + ": " + e.what());
      }
    }
  }

  void send_loop() {
    std::unique_ptr<st::Client> client;
    std::unique_ptr<compression::Codec> codec;
    std::optional<BitwidthController> controller;
    HopEncoder encoder(o.next.clip);
    std::map<std::int64_t, std::map<int, std::uint64_t>> frame_bytes;  // numel -> bits -> frame bytes
    std::int64_t numel = 0;
    bool search = true;
    const bool quantpipe = !is_last && o.next.codec == "quantpipe";
    if (!is_last && !quantpipe) codec = compression::make_codec(o.next.codec);
    if (quantpipe)
      controller.emplace(o.next.controller, [&](int bits) { return frame_bytes.at(numel).at(bits); });
    compression::CodecContext ctx;
    std::uint64_t gen = generation;
    while (!stopping) {
      try {
        if (gen != generation) {  // a restart: a fresh connection and controller
          gen = generation;
          client.reset();
        }
        auto ob = out.pop(std::chrono::milliseconds(20));
        if (!ob) {
          if (client && client->in_flight() > 0) client->collect();
          continue;
        }
        if (ob->generation != generation) continue;
        if (!failure().empty()) continue;  // dropped until the upstream reconnects
        if (!client) {
          client = std::make_unique<st::Client>(hop_client(o.next));
          st::Hello h;
          h.client_id = o.name;
          client->connect(h);
        }
        StageEvent ev;
        ev.batch_id = ob->batch_id;
        ev.compute_s = ob->compute_s;
        st::Message msg;
        const auto t0 = Clock::now();
        if (is_last) {
          msg = ss::infer_reply_message(ob->batch_id, ob->y, st::InferOutput::logits);
          ev.codec = "logits";
        } else {
          ss::InferRequest r;
          r.batch_id = ob->batch_id;
          r.batch = ob->batch;
          r.mask = ob->mask;
          if (quantpipe) {
            numel = ob->y.numel();
            if (!frame_bytes.count(numel)) {  // exact frame sizes at every width, once per shape
              for (int b : o.next.controller.bits) {
                HopEncoder probe(o.next.clip);
                r.activations = probe.encode(ob->y, b, false);
                frame_bytes[numel][b] = st::encode_frame(ss::infer_message(r), 1).total_bytes();
              }
            }
            ev.bits = controller->bits();
            const auto searches = encoder.searches();
            r.activations = encoder.encode(ob->y, ev.bits, search);
            if (encoder.searches() != searches) ev.search_s = encoder.last_search_s();
            ev.codec = spec_for_bits(ev.bits, o.next.clip);
          } else {
            r.activations = codec->encode(ob->y, ctx);
            ev.codec = codec->spec();
          }
          ev.frame_bytes = r.activations.size();
          msg = ss::infer_message(r);
        }
        ev.encode_s = std::chrono::duration<double>(Clock::now() - t0).count();
        while (client->in_flight() >= static_cast<std::size_t>(std::max(1, o.next.in_flight))) client->collect();
        client->post(std::move(msg));
        ++sent;
        // An emulated link is measured as the frames cross it; a real one
        // by how fast frames are acknowledged.
        ev.bandwidth_bytes_per_s = o.next.link.rate_bits_per_s > 0 ? client->bandwidth().bytes_per_second()
                                                                   : client->acked_bandwidth().bytes_per_second();
        if (quantpipe) search = controller->on_sent(ev.bandwidth_bytes_per_s);
        if (o.on_event) o.on_event(ev);
      } catch (const std::exception& e) {
        fail(hop_failure(self(), o.next, e));
        client.reset();
        out.clear();
      }
    }
  }

  void start() {
    st::ServerOptions so;
    so.bind_address = o.bind_address;
    so.port = o.port;
    so.tls = o.tls;
    so.worker_threads = 1;
    // Working notices while a handler waits for room in the queue: a stage
    // that computes a micro-batch for longer than the hop's stall timeout is
    // busy, not stalled. A frozen process sends none, so its stall is still seen.
    // At most every 250 ms: the previous hop's stall timeout is its own setting.
    so.keepalive_interval = std::clamp(o.next.stall_timeout / 4, st::Millis(10), st::Millis(250));
    so.drain_timeout = st::Millis(1000);
    auto self_ptr = shared_from_this();
    server = std::make_unique<st::Server>(so, [w = std::weak_ptr<Impl>(self_ptr)](const st::PeerInfo&, st::Message&& m) {
      auto s = w.lock();
      if (!s) throw std::runtime_error("stage is gone");
      return s->handle(std::move(m));
    });
    server->start();
    compute_thread = std::thread([s = self_ptr] { s->compute_loop(); });
    send_thread = std::thread([s = self_ptr] { s->send_loop(); });
  }

  void stop() {
    stopping = true;  // first: a handler waiting for queue room gives up
    if (server) server->stop();
    if (compute_thread.joinable()) compute_thread.join();
    if (send_thread.joinable()) send_thread.join();
    server.reset();
  }
};

StageWorker::StageWorker(StageOptions o) : impl_(std::make_shared<Impl>(std::move(o))) {}
StageWorker::~StageWorker() { stop(); }
void StageWorker::start() { impl_->start(); }
std::uint16_t StageWorker::port() const { return impl_->server ? impl_->server->port() : 0; }
void StageWorker::stop() { impl_->stop(); }
bool StageWorker::last() const { return impl_->is_last; }
std::uint64_t StageWorker::batches_sent() const { return impl_->sent.load(); }
std::string StageWorker::failure() const { return impl_->failure(); }

// ---------------------------------------------------------------- source

struct PipelineSource::Impl {
  explicit Impl(SourceOptions opts) : o(std::move(opts)) {}
  SourceOptions o;
  std::unique_ptr<st::Server> server;
  std::mutex mu;
  std::condition_variable cv;
  std::uint64_t run_no = 0;                      // guarded by mu
  std::map<std::uint64_t, std::int64_t> asked;   // batch id -> batch size, this run
  std::map<std::uint64_t, at::Tensor> results;   // guarded by mu
  std::map<std::uint64_t, Clock::time_point> arrived;
  std::string late_error;                        // a result that did not parse

  st::Message handle(st::Message&& m) {
    if (m.as<st::Hello>()) return welcome("source");
    const auto* r = m.as<st::InferReply>();
    if (!r) throw std::runtime_error("source: unexpected " + std::string(st::to_string(m.type())));
    std::lock_guard<std::mutex> lock(mu);
    auto it = asked.find(r->batch_id);
    if (it == asked.end()) return ack(r->batch_id);  // a result of an abandoned run
    ss::InferRequest q;
    q.batch_id = r->batch_id;
    q.batch = it->second;
    try {
      results[r->batch_id] = ss::parse_infer_reply(m, q);
      arrived[r->batch_id] = Clock::now();
    } catch (const std::exception& e) {
      late_error = e.what();
    }
    cv.notify_all();
    return ack(r->batch_id);
  }

  // The first stage that does not answer a ping on a new connection (a dead
  // or frozen process), described; empty when every stage answers.
  std::string unresponsive() {
    for (const auto& s : o.stages) {
      st::ClientOptions c;
      c.host = s.host;
      c.port = s.port;
      c.tls = o.first.tls;
      c.connect_timeout = o.ping_timeout;
      c.request_timeout = o.ping_timeout;
      c.stall_timeout = o.ping_timeout;
      c.max_attempts = 1;
      try {
        st::Client probe(c);
        st::Message ping;
        ping.body = st::Ping{1};
        probe.request(ping);
      } catch (const std::exception& e) {
        return "stage '" + s.name + "' (" + s.host + ":" + std::to_string(s.port) + ") does not answer a ping within " +
               std::to_string(o.ping_timeout.count()) + " ms: " + e.what();
      }
    }
    return {};
  }

  [[noreturn]] void stalled(std::uint64_t waiting_for) {
    if (auto who = unresponsive(); !who.empty()) throw PipelineError(who);
    throw PipelineError("no result for micro-batch " + std::to_string(waiting_for) + " within " +
                        std::to_string(o.result_timeout.count()) + " ms, though every stage answers a ping");
  }

  SourceResult run(const std::vector<MicroBatch>& batches) {
    std::uint64_t base;
    {
      std::lock_guard<std::mutex> lock(mu);
      base = ++run_no << 32;
      asked.clear();
      results.clear();
      arrived.clear();
      late_error.clear();
      for (std::size_t i = 0; i < batches.size(); ++i) asked[base + i] = batches[i].x.size(0);
    }
    SourceResult res;
    res.sent_s.resize(batches.size());
    const auto t0 = Clock::now();
    auto since = [&](Clock::time_point t) { return std::chrono::duration<double>(t - t0).count(); };
    auto hop_error = [&](const std::exception& e) -> PipelineError {
      return PipelineError(hop_failure("the source", o.first, e));
    };
    st::Client client(hop_client(o.first));
    auto codec = compression::make_codec(o.first.codec);
    compression::CodecContext ctx;
    try {
      st::Hello h;
      h.client_id = "source";
      client.connect(h);
      for (std::size_t i = 0; i < batches.size(); ++i) {
        ss::InferRequest r;
        r.batch_id = base + i;
        r.batch = batches[i].x.size(0);
        r.mask = batches[i].mask;
        r.activations = codec->encode(batches[i].x.to(at::kFloat).contiguous(), ctx);
        auto msg = ss::infer_message(r);
        while (client.in_flight() >= static_cast<std::size_t>(std::max(1, o.first.in_flight))) client.collect();
        res.sent_s[i] = since(Clock::now());
        client.post(std::move(msg));
      }
      while (client.in_flight() > 0) client.collect();
    } catch (const std::exception& e) {
      // A stage's own report names the failed stage. A broken or stalled
      // first hop may only be the symptom: a frozen stage further down fills
      // every queue before it, so the stages are pinged to find it.
      const auto* te = dynamic_cast<const st::TransportError*>(&e);
      if (!(te && te->code() == make_error_code(st::Errc::peer_error)))
        if (auto who = unresponsive(); !who.empty())
          throw PipelineError(who + " (the source's hop to stage '" + o.first.name + "' failed: " + e.what() + ")");
      throw hop_error(e);
    }
    // Every micro-batch is with the stages: wait for the results, each
    // within result_timeout of the one before.
    std::unique_lock<std::mutex> lock(mu);
    for (std::size_t i = 0; i < batches.size(); ++i) {
      const auto id = base + i;
      if (!cv.wait_for(lock, o.result_timeout, [&] { return results.count(id) || !late_error.empty(); })) {
        lock.unlock();
        stalled(id);
      }
      if (!late_error.empty()) throw PipelineError("a result did not parse: " + late_error);
    }
    for (std::size_t i = 0; i < batches.size(); ++i) {
      res.logits.push_back(results[base + i]);
      res.done_s.push_back(since(arrived[base + i]));
    }
    res.seconds = since(Clock::now());
    asked.clear();
    return res;
  }
};

PipelineSource::PipelineSource(SourceOptions o) : impl_(std::make_shared<Impl>(std::move(o))) {}
PipelineSource::~PipelineSource() { stop(); }

void PipelineSource::start() {
  st::ServerOptions so;
  so.bind_address = impl_->o.bind_address;
  so.port = impl_->o.port;
  so.tls = impl_->o.tls;
  so.worker_threads = 1;
  so.drain_timeout = st::Millis(1000);
  impl_->server = std::make_unique<st::Server>(
      so, [w = std::weak_ptr<Impl>(impl_)](const st::PeerInfo&, st::Message&& m) {
        auto s = w.lock();
        if (!s) throw std::runtime_error("source is gone");
        return s->handle(std::move(m));
      });
  impl_->server->start();
}

std::uint16_t PipelineSource::port() const { return impl_->server ? impl_->server->port() : 0; }
SourceResult PipelineSource::run(const std::vector<MicroBatch>& batches) { return impl_->run(batches); }
void PipelineSource::stop() {
  if (impl_->server) impl_->server->stop();
  impl_->server.reset();
}

}  // namespace seam::pipeline
