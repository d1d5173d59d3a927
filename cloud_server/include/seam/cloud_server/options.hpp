#pragma once
// Options of the cloud service. The TLS server's options are the transport's
// own (one vocabulary, one set of names); the service adds where jobs and
// state live. The program (seam-cloud) fills them from flags and a config file.
#include <memory>
#include <string>
#include <vector>

#include "seam/transport/channel.hpp"

namespace spdlog {
class logger;
}

namespace seam::cloud {

struct ServiceOptions {
  // bind_address, port, tls (cert, key, client CA), limits, max_connections,
  // worker_threads and the timeouts. Mutual TLS is required: tls.ca_file must
  // name the CA of the clients' certificates.
  transport::ServerOptions server;
  std::string jobs_dir = "jobs";    // one NAME.job file per job
  std::string state_dir = "state";  // NAME/job (prepared), NAME/sessions (checkpoints)
  // Prometheus /metrics over HTTP on its own address and port (0: a free
  // port, see Service::metrics_port(); -1: off). Loopback by default.
  std::string metrics_address = "127.0.0.1";
  int metrics_port = -1;
  // Structured log lines (key=value) go here; null: no logs. The program
  // makes one on stderr with the --log-level it was given.
  std::shared_ptr<spdlog::logger> log;
};

// One message per problem, each naming the option; empty means valid.
std::vector<std::string> validate(const ServiceOptions& o);

}  // namespace seam::cloud
