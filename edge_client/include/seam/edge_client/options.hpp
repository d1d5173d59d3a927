#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace seam::edge {

// What an app passes to the edge client. Programs fill it from flags/config;
// libraries never parse flags.
struct EdgeOptions {
  std::string server_host = "127.0.0.1";
  std::uint16_t server_port = 7433;
  std::string ca_file;      // CA that signed the server certificate
  std::string cert_file;    // this client's certificate (mutual TLS)
  std::string key_file;     // this client's private key
  std::string up_codec = "none";    // activations, edge -> cloud
  std::string down_codec = "none";  // gradients, cloud -> edge
  int threads = 0;                  // 0 = all cores
};

// Returns one message per problem found; empty means valid.
std::vector<std::string> validate(const EdgeOptions& o);

}  // namespace seam::edge
