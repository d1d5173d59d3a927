#include "seam/cloud_server/service.hpp"

#include <boost/program_options.hpp>
#include <httplib.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <thread>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "seam/session/protocol.hpp"
#include "seam/training/job.hpp"
#include "seam/training/option_table.hpp"

namespace seam::cloud {

namespace fs = std::filesystem;
namespace po = boost::program_options;
namespace ss = seam::session;
namespace st = seam::transport;
namespace t = seam::training;

namespace {

// A log value as one quoted token: quotes, backslashes and line breaks
// escaped, so that a client's text cannot forge a log line.
std::string q(const std::string& v) {
  std::string o = "\"";
  for (char c : v) {
    if (c == '"' || c == '\\') o += '\\';
    if (c == '\n') o += "\\n";
    else if (c == '\r') o += "\\r";
    else o += c;
  }
  return o + "\"";
}

[[noreturn]] void refuse(const std::string& path, const std::string& why) {
  throw std::invalid_argument("job file '" + path + "': " + why);
}

// The keys of a job file. Model, codec and optimizer keys are seam-train's.
po::options_description job_keys(JobDef& j, std::string& task) {
  auto& mc = j.spec.model;
  auto& hs = j.spec.half;
  auto& oc = hs.optim;
  po::options_description d("job");
  t::add_model_options(d, mc);  // seam-train's names, defaults and help (training/option_table.hpp)
  t::add_codec_options(d, hs);
  t::add_optimizer_options(d, oc);
  d.add_options()("task", po::value(&task), "the task whose classes the head predicts (or give classes)")(
      "classes", po::value(&mc.classes)->default_value(0), "classes of the head (0: from task)")(
      "steps", po::value(&oc.total_steps)->default_value(1000), "schedule length")(
      "pretrained", po::value(&j.spec.pretrained), "")(
      "script", po::value(&mc.script_path), "model = torchscript: the front file (a scripted module; the edge's half)")(
      "script-back", po::value(&mc.script_back_path), "model = torchscript: the back file (the cloud's half)")(
      "policy", po::value(&j.policy)->default_value("per-client"), "")(
      "allow", po::value(&j.allow)->composing(), "a certificate subject that may join (repeatable)")(
      "checkpoint-every", po::value(&j.checkpoint_every)->default_value(0), "")(
      "keep-checkpoints", po::value(&j.keep_checkpoints)->default_value(3), "")(
      "max-sessions", po::value(&j.max_sessions)->default_value(64), "sessions kept in memory (least recently used saved and dropped)")(
      "delta-ram-mib", po::value(&j.delta_ram_mib)->default_value(256), "AC-SGD buffers per session kept in RAM; the rest spill to the session's folder");
  return d;
}

std::string names(const std::map<std::string, std::string>& m) {
  std::string s;
  for (const auto& [k, v] : m) s += (s.empty() ? "" : ", ") + k;
  return s.empty() ? "none" : s;
}

}  // namespace

JobDef read_job_file(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) refuse(path, fs::exists(path, ec) ? "not a regular file" : "does not exist");
  std::ifstream f(path);
  if (!f) refuse(path, "cannot be read");
  JobDef j;
  j.name = fs::path(path).stem().string();
  std::string task;
  auto keys = job_keys(j, task);
  try {
    po::variables_map vm;
    po::store(po::parse_config_file(f, keys), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    refuse(path, e.what());
  }
  if (j.name.empty() || j.name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") !=
                            std::string::npos)
    refuse(path, "a job name (the file name) may hold only letters, digits, '-', '_' and '.'");
  if (j.policy != "per-client" && j.policy != "shared")
    refuse(path, "policy '" + j.policy + "': expected per-client (each client trains its own cloud half) or shared (one cloud half for every client)");
  if (j.max_sessions < 1) refuse(path, "max-sessions must be at least 1");
  if (j.delta_ram_mib < 0) refuse(path, "delta-ram-mib must be at least 0");
  if (j.allow.empty()) refuse(path, "no 'allow' line: name the certificate subjects that may join, e.g. allow = CN=edge-1");
  if (j.spec.model.classes <= 0) {
    if (task.empty()) refuse(path, "give 'classes' or a 'task' to take them from");
    j.spec.model.classes = t::make_task(task, j.spec.model.max_len)->num_classes();
  }
  j.spec.half.task = "classify";
  j.spec.half.seed = j.spec.model.seed;
  try {
    ss::check_job(j.spec);
  } catch (const std::exception& e) {
    refuse(path, e.what());
  }
  return j;
}

std::string prepared_dir(const std::string& state_dir, const std::string& name) {
  return (fs::path(state_dir) / name / "job").string();
}

ss::PreparedJob prepare(const JobDef& job, const std::string& state_dir) {
  const auto dir = prepared_dir(state_dir, job.name);
  std::error_code ec;
  fs::create_directories(fs::path(dir).parent_path(), ec);
  if (ec) throw std::invalid_argument("cannot create '" + fs::path(dir).parent_path().string() + "': " + ec.message());
  ss::prepare_job(job.spec, dir);
  return ss::load_job(dir);
}

// The /metrics endpoint: cpp-httplib on its own thread.
struct Service::Http {
  httplib::Server server;
  std::thread thread;
  int port = -1;
};

Service::Service(ServiceOptions o) : opts_(std::move(o)) {
  auto problems = validate(opts_);
  if (!problems.empty()) throw std::invalid_argument(problems.front());
  std::error_code ec;
  if (!fs::is_directory(opts_.jobs_dir, ec)) throw std::invalid_argument("--jobs-dir '" + opts_.jobs_dir + "' is not a folder");
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(opts_.jobs_dir))
    if (e.path().extension() == ".job") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  if (files.empty()) throw std::invalid_argument("--jobs-dir '" + opts_.jobs_dir + "' holds no *.job file");
  for (const auto& p : files) {
    Job job;
    job.def = read_job_file(p.string());
    const auto dir = prepared_dir(opts_.state_dir, job.def.name);
    if (!fs::exists(dir, ec))
      throw std::invalid_argument("job '" + job.def.name + "' is not prepared: run `seam-cloud prepare " + p.string() +
                                  " --state-dir " + opts_.state_dir + "` first");
    ss::PreparedJob prepared = ss::load_job(dir);
    const auto why = ss::compare_fields(prepared.fields, ss::job_fields(job.def.spec, prepared.edge_weights_sha256));
    if (!why.empty())
      throw std::invalid_argument("job '" + job.def.name + "': the job file and its prepared halves differ (" + why +
                                  "); prepare it again into a new --state-dir");
    ss::SessionOptions so;
    so.checkpoint_every = job.def.checkpoint_every;
    so.keep_checkpoints = job.def.keep_checkpoints;
    so.delta_ram_limit_bytes = static_cast<std::size_t>(job.def.delta_ram_mib) << 20;
    job.sessions = std::make_unique<ss::CloudSessions>(
        std::move(prepared), (fs::path(opts_.state_dir) / job.def.name / "sessions").string(), so,
        job.def.policy == "shared");
    job.sessions->set_max_sessions(static_cast<std::size_t>(job.def.max_sessions));
    jobs_.emplace(job.def.name, std::move(job));
  }
}

Service::~Service() { stop(); }

void Service::start() {
  auto so = opts_.server;
  so.on_refusal = [this](const st::PeerInfo& p, std::error_code ec, const std::string& why) {
    metrics_.refusal(ec);
    if (opts_.log)
      opts_.log->warn("event=connection_refused peer={} address={} kind={} reason={}", q(p.identity), p.address,
                      error_kind(static_cast<std::uint32_t>(ec.value())), q(why));
  };
  server_ = std::make_unique<st::Server>(so, [this](const st::PeerInfo& p, st::Message&& m) {
    return handle(p, std::move(m));
  });
  server_->start();
  if (opts_.metrics_port >= 0) {
    http_ = std::make_unique<Http>();
    http_->server.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(metrics_text(), "text/plain; version=0.0.4; charset=utf-8");
    });
    http_->port = opts_.metrics_port == 0 ? http_->server.bind_to_any_port(opts_.metrics_address)
                                          : (http_->server.bind_to_port(opts_.metrics_address, opts_.metrics_port)
                                                 ? opts_.metrics_port
                                                 : -1);
    if (http_->port < 0) {
      server_->stop();
      throw std::invalid_argument("--metrics-port: cannot listen on " + opts_.metrics_address + ":" +
                                  std::to_string(opts_.metrics_port));
    }
    http_->thread = std::thread([h = http_.get()] { h->server.listen_after_bind(); });
  }
  if (opts_.log)
    opts_.log->info("event=started port={} metrics_port={} jobs={}", port(), metrics_port(), jobs_.size());
}

int Service::metrics_port() const { return http_ ? http_->port : -1; }

std::string Service::metrics_text() const {
  std::map<std::string, std::size_t> sessions;
  for (const auto& [name, job] : jobs_) sessions[name] = job.sessions->size();
  return metrics_.render(sessions);
}

void Service::stop() {
  if (http_) {
    http_->server.stop();
    if (http_->thread.joinable()) http_->thread.join();
    http_.reset();
  }
  if (server_) server_->stop();
  std::size_t saved = 0;
  for (auto& [name, job] : jobs_) saved += job.sessions->save_all();
  if (opts_.log && server_) opts_.log->info("event=stopped saved_checkpoints={}", saved);
  server_.reset();
}

std::uint16_t Service::port() const { return server_ ? server_->port() : 0; }

std::vector<std::string> Service::jobs() const {
  std::vector<std::string> v;
  for (const auto& [name, job] : jobs_) v.push_back(name);
  return v;
}

ss::CloudSessions& Service::sessions(const std::string& job) { return *jobs_.at(job).sessions; }

// The job a Hello or Fetch names, if it exists and the client's certificate
// subject is on its list; otherwise `refusal` says why.
const Service::Job* Service::admit(const st::PeerInfo& peer, const std::string& job, const char* what,
                                   st::Message& refusal) const {
  auto it = jobs_.find(job);
  if (it == jobs_.end()) {
    std::map<std::string, std::string> served;
    for (const auto& [n, j] : jobs_) served[n];
    refusal = ss::error_message(ss::SessionErrc::unknown_job, std::string(what) + " refused: job '" + job +
                                                                  "' is not served here (jobs: " + names(served) + ")");
    return nullptr;
  }
  const auto& allow = it->second.def.allow;
  if (std::find(allow.begin(), allow.end(), peer.identity) == allow.end()) {
    refusal = ss::error_message(ss::SessionErrc::not_allowed, std::string(what) + " refused: '" + peer.identity +
                                                                  "' may not join job '" + job + "'");
    return nullptr;
  }
  return &it->second;
}

st::Message Service::handle(const st::PeerInfo& peer, st::Message&& m) {
  const auto t0 = std::chrono::steady_clock::now();
  const auto type = m.type();
  const Metrics::Request req = Metrics::measure(m);
  std::string job;
  st::Message reply = route(peer, std::move(m), job);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  metrics_.record(job, req, reply, seconds);
  if (auto* log = opts_.log.get()) {
    if (const auto* e = reply.as<st::ErrorInfo>()) {
      log->warn("event=refused job={} peer={} request={} kind={} reason={}", q(job), q(peer.identity),
                st::to_string(type), error_kind(e->code), q(e->text));
    } else if (const auto* w = reply.as<st::Welcome>()) {
      log->info("event=joined job={} peer={} address={} session={} next_step={} resumed={}", q(job), q(peer.identity),
                peer.address, q(w->session_id), w->next_step, w->resumed);
    } else if (const auto* b = reply.as<st::Backward>()) {
      log->debug("event=step job={} peer={} step={} loss={} seconds={:.4f}", q(job), q(peer.identity), b->step_id,
                 b->loss, seconds);
    } else if (const auto* c = reply.as<st::CheckpointAck>()) {
      log->info("event=checkpoint job={} peer={} step={} path={}", q(job), q(peer.identity), c->step_id, q(c->path));
    }
  }
  return reply;
}

st::Message Service::route(const st::PeerInfo& peer, st::Message&& m, std::string& job) {
  std::string name;
  st::Message refusal;
  if (const auto* f = m.as<st::Fetch>()) {  // no session: the job's list decides
    const Job* j = admit(peer, f->job, "fetch", refusal);
    if (j) job = f->job;
    return j ? ss::serve_fetch(j->sessions->job(), *f) : refusal;
  }
  if (const auto* h = m.as<st::Hello>()) {
    if (!admit(peer, h->job, "hello", refusal)) return refusal;
    name = h->job;
  } else {
    // The job whose sessions hold this one. Nothing is kept per session key
    // here, so a client that keeps making new sessions grows nothing: a
    // session the job dropped (max-sessions) gets no_session, and its edge
    // says Hello again.
    for (const auto& [n, j] : jobs_)
      if (j.sessions->find(peer.session_key)) {
        name = n;
        break;
      }
    if (name.empty())
      return ss::error_message(ss::SessionErrc::no_session, std::string("no session for this connection; send Hello before ") +
                                                             st::to_string(m.type()));
  }
  job = name;
  return jobs_.at(name).sessions->handle(peer, std::move(m));
}

}  // namespace seam::cloud
