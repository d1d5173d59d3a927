#include "seam/cloud_server/options.hpp"

namespace seam::cloud {

std::vector<std::string> validate(const ServiceOptions& o) {
  std::vector<std::string> errors;
  const auto& s = o.server;
  if (s.bind_address.empty()) errors.emplace_back("--bind-address is empty");
  if (s.max_connections < 1) errors.emplace_back("--max-connections must be >= 1");
  if (s.worker_threads < 1) errors.emplace_back("--worker-threads must be >= 1");
  if (s.tls.insecure_plaintext) {
    errors.emplace_back("plaintext is for benchmarks only; seam-cloud always serves TLS");
  } else {
    if (s.tls.cert_file.empty()) errors.emplace_back("--cert is required (the server's certificate, PEM)");
    if (s.tls.key_file.empty()) errors.emplace_back("--key is required (the server's private key, PEM)");
    if (s.tls.ca_file.empty()) errors.emplace_back("--client-ca is required (the CA of the clients' certificates: mutual TLS)");
    if (!s.tls.require_client_cert) errors.emplace_back("client certificates are required (mutual TLS)");
  }
  if (o.jobs_dir.empty()) errors.emplace_back("--jobs-dir is empty");
  if (o.state_dir.empty()) errors.emplace_back("--state-dir is empty");
  if (o.metrics_port < -1 || o.metrics_port > 65535) errors.emplace_back("--metrics-port must be -1 (off) or 0..65535");
  if (o.metrics_port >= 0 && o.metrics_address.empty()) errors.emplace_back("--metrics-address is empty");
  return errors;
}

}  // namespace seam::cloud
