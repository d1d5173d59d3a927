#include "seam/transport/errors.hpp"

namespace seam::transport {
namespace {

class Category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "seam.transport"; }
  std::string message(int c) const override {
    switch (static_cast<Errc>(c)) {
      case Errc::ok: return "ok";
      case Errc::bad_magic: return "bad frame magic";
      case Errc::version_mismatch: return "protocol major version mismatch";
      case Errc::metadata_too_large: return "metadata length exceeds limit";
      case Errc::payload_too_large: return "payload length exceeds limit";
      case Errc::unknown_message_type: return "unknown message type";
      case Errc::malformed_metadata: return "malformed message metadata";
      case Errc::section_mismatch: return "payload sections do not match their metadata";
      case Errc::timeout: return "operation timed out";
      case Errc::connection_closed: return "connection closed";
      case Errc::tls_failure: return "TLS failure";
      case Errc::peer_error: return "peer reported an error";
      case Errc::server_busy: return "server busy: connection limit reached";
      case Errc::queue_full: return "send queue full";
      case Errc::shutting_down: return "shutting down";
      case Errc::insecure_refused: return "plaintext refused on a non-loopback address";
      case Errc::retries_exhausted: return "retries exhausted";
    }
    return "unknown transport error";
  }
};

}  // namespace

const std::error_category& transport_category() {
  static const Category c;
  return c;
}

std::error_code make_error_code(Errc e) { return {static_cast<int>(e), transport_category()}; }

}  // namespace seam::transport
