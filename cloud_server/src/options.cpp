#include "seam/cloud_server/options.hpp"

namespace seam::cloud {

std::vector<std::string> validate(const ServerOptions& o) {
  std::vector<std::string> errors;
  if (o.bind_address.empty()) errors.emplace_back("bind address is empty");
  if (o.max_sessions < 1) errors.emplace_back("max sessions must be >= 1");
  if (o.threads < 0) errors.emplace_back("threads must be >= 0 (0 = all cores)");
  if (o.cert_file.empty() || o.key_file.empty()) {
    errors.emplace_back("server certificate and key are required (TLS is mandatory)");
  }
  if (o.checkpoint_dir.empty()) errors.emplace_back("checkpoint directory is empty");
  return errors;
}

}  // namespace seam::cloud
