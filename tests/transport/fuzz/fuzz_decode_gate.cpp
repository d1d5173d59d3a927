// libFuzzer target for the transport's single decode gate. The first byte picks
// a mode: whole frames as they arrive from a socket, or metadata behind a
// well-formed header (so the fuzzer reaches the cereal parsing quickly).
#include <cstddef>
#include <cstdint>
#include <vector>

#include "seam/transport/message.hpp"

using namespace seam::transport;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  FrameLimits limits;
  limits.max_metadata = 1 << 16;
  limits.max_payload = 1 << 20;
  Message m;
  if (data[0] & 1) {
    decode_frame_bytes(data + 1, size - 1, limits, m);
    return 0;
  }
  // Header made here: type from data[1], metadata = the rest, payload = the
  // last (data[1] >> 4) bytes of it, so sections can be checked too.
  const std::size_t body = size - 2;
  const std::size_t payload = std::min<std::size_t>(body, data[1] >> 4);
  FrameHeader h;
  h.type = static_cast<std::uint16_t>(1 + data[1] % (kMessageTypeCount + 1));  // every type, and one unknown
  h.metadata_len = static_cast<std::uint32_t>(body - payload);
  h.payload_len = payload;
  auto hb = encode_header(h);
  std::vector<std::uint8_t> frame(hb.begin(), hb.end());
  frame.insert(frame.end(), data + 2, data + size);
  decode_frame_bytes(frame.data(), frame.size(), limits, m);
  return 0;
}
