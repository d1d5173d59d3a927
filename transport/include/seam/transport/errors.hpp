#pragma once
// Transport errors: std::error_code with Seam's own category inside async I/O,
// TransportError for the synchronous public APIs.
#include <stdexcept>
#include <string>
#include <system_error>

namespace seam::transport {

enum class Errc {
  ok = 0,
  bad_magic = 1,
  version_mismatch,
  metadata_too_large,
  payload_too_large,
  unknown_message_type,
  malformed_metadata,
  section_mismatch,
  timeout,
  connection_closed,
  tls_failure,
  peer_error,        // the peer sent an Error message
  server_busy,       // max connections reached
  queue_full,        // send queue bound reached
  shutting_down,
  insecure_refused,  // plaintext asked for on a non-loopback address
  retries_exhausted,
};

const std::error_category& transport_category();
std::error_code make_error_code(Errc e);

class TransportError : public std::runtime_error {
 public:
  TransportError(std::error_code ec, const std::string& what) : std::runtime_error(what), code_(ec) {}
  std::error_code code() const { return code_; }

 private:
  std::error_code code_;
};

}  // namespace seam::transport

template <>
struct std::is_error_code_enum<seam::transport::Errc> : std::true_type {};
