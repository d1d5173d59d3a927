#pragma once
// Seam frame header: fixed 32-byte little-endian prefix of every message.
// Layout is specified in docs/wire-protocol.md; limits are checked before any
// allocation so an attacker-controlled length can never size a buffer.
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace seam::transport {

inline constexpr std::uint32_t kFrameMagic = 0x4D414553;  // "SEAM" read as LE u32
inline constexpr std::uint16_t kProtocolMajor = 3;  // 3.0: compact Forward body, varint metadata
inline constexpr std::uint16_t kProtocolMinor = 1;  // 3.1: Infer carries a batch, Fetch/FetchReply (2.1 added the Working notice; every 3.x peer knows it)
inline constexpr std::size_t kFrameHeaderSize = 32;

struct FrameHeader {
  std::uint32_t magic = kFrameMagic;
  std::uint16_t major = kProtocolMajor;
  std::uint16_t minor = kProtocolMinor;
  std::uint16_t type = 0;   // MessageType
  std::uint16_t flags = 0;
  std::uint32_t metadata_len = 0;
  std::uint64_t payload_len = 0;
  std::uint64_t request_id = 0;
};

struct FrameLimits {
  std::uint32_t max_metadata = 1u << 20;          // 1 MiB of cereal metadata
  std::uint64_t max_payload = 256ull << 20;       // 256 MiB of tensor sections
};

enum class FrameStatus {
  ok,
  bad_magic,
  major_mismatch,
  metadata_too_large,
  payload_too_large,
};

const char* to_string(FrameStatus s);

using FrameHeaderBytes = std::array<std::uint8_t, kFrameHeaderSize>;

// Serialises to exactly kFrameHeaderSize little-endian bytes.
FrameHeaderBytes encode_header(const FrameHeader& h);

// Parses and validates against limits. On a non-ok status `out` holds what was
// parsed so the caller can report it, but no length in it may be trusted.
FrameStatus decode_header(const std::uint8_t* bytes, const FrameLimits& limits, FrameHeader& out);

}  // namespace seam::transport
