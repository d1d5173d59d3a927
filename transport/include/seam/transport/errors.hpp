#pragma once
// Transport errors: std::error_code with Seam's own category inside async I/O,
// TransportError for the synchronous public APIs.
#include <cstdint>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

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
  // The peer answered with an Error message (code() is Errc::peer_error):
  // peer_code and peer_text are its fields, so callers can branch on an
  // application code (>= 1000) without parsing what().
  TransportError(std::error_code ec, const std::string& what, std::uint32_t peer_code, std::string peer_text)
      : std::runtime_error(what), code_(ec), peer_code_(peer_code), peer_text_(std::move(peer_text)) {}
  std::error_code code() const { return code_; }
  std::uint32_t peer_code() const { return peer_code_; }  // 0 unless the peer sent an Error
  const std::string& peer_text() const { return peer_text_; }

 private:
  std::error_code code_;
  std::uint32_t peer_code_ = 0;
  std::string peer_text_;
};

}  // namespace seam::transport

template <>
struct std::is_error_code_enum<seam::transport::Errc> : std::true_type {};
