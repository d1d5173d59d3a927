#include "seam/edge_client/options.hpp"

namespace seam::edge {

std::vector<std::string> validate(const EdgeOptions& o) {
  std::vector<std::string> errors;
  if (o.server_host.empty()) errors.emplace_back("server host is empty");
  if (o.server_port == 0) errors.emplace_back("server port must be 1..65535");
  if (o.threads < 0) errors.emplace_back("threads must be >= 0 (0 = all cores)");
  if (o.up_codec.empty()) errors.emplace_back("up codec spec is empty (use \"none\" for raw)");
  if (o.down_codec.empty()) errors.emplace_back("down codec spec is empty (use \"none\" for raw)");
  if (o.cert_file.empty() != o.key_file.empty()) {
    errors.emplace_back("client certificate and key must be given together");
  }
  return errors;
}

}  // namespace seam::edge
