#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace seam::cloud {

// Options of the cloud service; the program fills them from flags/config.
struct ServerOptions {
  std::string bind_address = "127.0.0.1";
  std::uint16_t port = 7433;
  std::string cert_file;       // server certificate
  std::string key_file;        // server private key
  std::string client_ca_file;  // CA for client certificates (mutual TLS)
  int max_sessions = 64;
  int threads = 0;             // 0 = all cores
  std::string checkpoint_dir = "checkpoints";
};

// Returns one message per problem found; empty means valid.
std::vector<std::string> validate(const ServerOptions& o);

}  // namespace seam::cloud
