#pragma once
// What an edge client needs to join a job at a seam-cloud server. Programs
// fill it from flags; apps pass a config text (key = value lines with the
// same names as seam-edge's flags, read by Boost.Program_options).
#include <cstdint>
#include <string>
#include <vector>

namespace boost::program_options {
class options_description;
}

namespace seam::edge {

struct EdgeOptions {
  std::string server = "127.0.0.1:7433";  // HOST:PORT of seam-cloud
  std::string ca_file;                    // CA that signed the server certificate
  std::string cert_file;                  // this client's certificate (mutual TLS)
  std::string key_file;                   // this client's private key
  std::string job;                        // the job's name at the server
  // The job's front half (job.conf, edge_init.pt, manifest). Empty:
  // STATE_DIR/job. Join downloads it there when it is missing.
  std::string job_dir;
  std::string state_dir;                  // edge checkpoints and session nonce; empty: none, no resume
  std::string client_id = "edge";         // names this app instance inside the client's identity
  std::uint64_t checkpoint_every = 0;     // steps between coordinated checkpoints (0: none)
  int keep_checkpoints = 3;
  // Reconnection: the transport's capped exponential backoff, from a first
  // delay each client draws in [0.5, 1.5] x backoff_initial_ms (jitter).
  std::int64_t connect_timeout_ms = 10000;
  std::int64_t stall_timeout_ms = 20000;
  int max_attempts = 6;
  std::int64_t backoff_initial_ms = 50;
  std::int64_t backoff_max_ms = 5000;

  std::string host() const;    // of `server`
  std::uint16_t port() const;  // of `server`; 0 when it has none
  std::string resolved_job_dir() const;
};

// One message per problem found, each naming the option; empty means valid.
std::vector<std::string> validate(const EdgeOptions& o);

// The options under their flag / config names (server, ca, cert, key, job,
// job-dir, state-dir, client-id, checkpoint-every, keep-checkpoints,
// connect-timeout-ms, stall-timeout-ms, max-attempts, backoff-initial-ms,
// backoff-max-ms), bound to `o`. seam-edge adds its own on top.
void describe_options(boost::program_options::options_description& d, EdgeOptions& o);

// Parses a config text. Unknown keys and bad values throw
// std::invalid_argument naming the key; the result is validated.
EdgeOptions options_from_text(const std::string& text);
EdgeOptions options_from_file(const std::string& path);

}  // namespace seam::edge
