#pragma once
// Options of the cloud service. The TLS server's options are the transport's
// own (one vocabulary, one set of names); the service adds where jobs and
// state live. The program (seam-cloud) fills them from flags and a config file.
#include <string>
#include <vector>

#include "seam/transport/channel.hpp"

namespace seam::cloud {

struct ServiceOptions {
  // bind_address, port, tls (cert, key, client CA), limits, max_connections,
  // worker_threads and the timeouts. Mutual TLS is required: tls.ca_file must
  // name the CA of the clients' certificates.
  transport::ServerOptions server;
  std::string jobs_dir = "jobs";    // one NAME.job file per job
  std::string state_dir = "state";  // NAME/job (prepared), NAME/sessions (checkpoints)
};

// One message per problem, each naming the option; empty means valid.
std::vector<std::string> validate(const ServiceOptions& o);

}  // namespace seam::cloud
