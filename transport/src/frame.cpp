#include "seam/transport/frame.hpp"

#include "byte_order.hpp"

namespace seam::transport {

const char* to_string(FrameStatus s) {
  switch (s) {
    case FrameStatus::ok: return "ok";
    case FrameStatus::bad_magic: return "bad frame magic";
    case FrameStatus::major_mismatch: return "protocol major version mismatch";
    case FrameStatus::metadata_too_large: return "metadata length exceeds limit";
    case FrameStatus::payload_too_large: return "payload length exceeds limit";
  }
  return "unknown frame status";
}

FrameHeaderBytes encode_header(const FrameHeader& h) {
  FrameHeaderBytes b{};
  detail::store_le32(b.data() + 0, h.magic);
  detail::store_le16(b.data() + 4, h.major);
  detail::store_le16(b.data() + 6, h.minor);
  detail::store_le16(b.data() + 8, h.type);
  detail::store_le16(b.data() + 10, h.flags);
  detail::store_le32(b.data() + 12, h.metadata_len);
  detail::store_le64(b.data() + 16, h.payload_len);
  detail::store_le64(b.data() + 24, h.request_id);
  return b;
}

FrameStatus decode_header(const std::uint8_t* b, const FrameLimits& limits, FrameHeader& out) {
  out.magic = detail::load_le32(b + 0);
  out.major = detail::load_le16(b + 4);
  out.minor = detail::load_le16(b + 6);
  out.type = detail::load_le16(b + 8);
  out.flags = detail::load_le16(b + 10);
  out.metadata_len = detail::load_le32(b + 12);
  out.payload_len = detail::load_le64(b + 16);
  out.request_id = detail::load_le64(b + 24);
  if (out.magic != kFrameMagic) return FrameStatus::bad_magic;
  if (out.major != kProtocolMajor) return FrameStatus::major_mismatch;
  if (out.metadata_len > limits.max_metadata) return FrameStatus::metadata_too_large;
  if (out.payload_len > limits.max_payload) return FrameStatus::payload_too_large;
  return FrameStatus::ok;
}

}  // namespace seam::transport
