#pragma once
// The cloud service: several jobs behind one TLS server. A Hello names its
// job; the server checks the client's certificate subject against the job's
// list and hands the session to that job's cloud sessions (session/).
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "seam/cloud_server/metrics.hpp"
#include "seam/cloud_server/options.hpp"
#include "seam/session/job.hpp"
#include "seam/session/session.hpp"

namespace seam::cloud {

// A job as an operator writes it: JOBS_DIR/NAME.job, `key = value` lines with
// seam-train's option names where the meaning is the same (docs/cloud.md).
struct JobDef {
  std::string name;  // the file name without .job
  session::JobSpec spec;
  std::string policy = "per-client";   // per-client: each session trains its own cloud half; shared: one for all
  std::vector<std::string> allow;      // certificate subjects that may join, e.g. "CN=edge-1"
  std::uint64_t checkpoint_every = 0;  // steps between coordinated checkpoints (0 = none)
  int keep_checkpoints = 3;
  std::int64_t max_sessions = 64;      // sessions in memory; the least recently used idle one is saved and dropped
  std::int64_t delta_ram_mib = 256;    // AC-SGD buffers per session in RAM; beyond, files in the session's folder
};

// Reads a job file. Refuses, naming the file and the key: unknown keys, bad
// values, a missing `allow`, a policy other than per-client or shared, a job
// the session layer refuses (check_job).
JobDef read_job_file(const std::string& path);

// Where a job's prepared halves live: STATE_DIR/NAME/job.
std::string prepared_dir(const std::string& state_dir, const std::string& name);

// Builds the job's initial halves once (pretrained load, SFT factors) into
// prepared_dir(). Refuses a job that is already prepared.
session::PreparedJob prepare(const JobDef& job, const std::string& state_dir);

class Service {
 public:
  // Loads every *.job in o.jobs_dir. Each must have been prepared with the
  // same settings (otherwise: a refusal naming `seam-cloud prepare` or the
  // field that differs). Throws std::invalid_argument naming the problem.
  explicit Service(ServiceOptions o);
  ~Service();
  // Starts the TLS server and, when asked, the /metrics endpoint.
  void start();
  // Stops accepting, lets in-flight steps finish, then saves every session's
  // state at its current step.
  void stop();
  std::uint16_t port() const;
  int metrics_port() const;  // -1 when off
  const Metrics& metrics() const { return metrics_; }
  std::string metrics_text() const;  // what /metrics serves
  std::vector<std::string> jobs() const;
  session::CloudSessions& sessions(const std::string& job);
  // The transport handler (public for in-process tests).
  transport::Message handle(const transport::PeerInfo& peer, transport::Message&& m);

 private:
  struct Job {
    JobDef def;
    std::unique_ptr<session::CloudSessions> sessions;
  };
  const Job* admit(const transport::PeerInfo& peer, const std::string& job, const char* what,
                   transport::Message& refusal) const;
  transport::Message route(const transport::PeerInfo& peer, transport::Message&& m, std::string& job);
  struct Http;
  ServiceOptions opts_;
  std::map<std::string, Job> jobs_;
  std::unique_ptr<transport::Server> server_;
  Metrics metrics_;
  std::unique_ptr<Http> http_;
};

}  // namespace seam::cloud
