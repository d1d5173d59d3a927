#pragma once
// Seam messages: typed metadata (cereal portable binary on the wire, see
// docs/wire-protocol.md) plus raw tensor sections. No LibTorch here: a tensor
// is a section of bytes with dtype and shape.
#include <cstdint>
#include <map>
#include <string>
#include <system_error>
#include <variant>
#include <vector>

#include "seam/transport/frame.hpp"
#include "seam/transport/wire_types.hpp"

namespace seam::transport {

enum class MessageType : std::uint16_t {
  hello = 1,
  welcome = 2,
  forward = 3,
  backward = 4,
  infer = 5,
  infer_reply = 6,
  checkpoint = 7,
  checkpoint_ack = 8,
  ping = 9,
  pong = 10,
  error = 11,
  goodbye = 12,
};
const char* to_string(MessageType t);

// Metadata of one payload section. Raw tensors have numel(shape)*size(dtype)
// bytes; codec-encoded tensors are u8 sections whose `codec` names the spec.
struct SectionInfo {
  std::string name;
  WireDType dtype = WireDType::u8;
  std::vector<std::int64_t> shape;
  std::uint64_t byte_length = 0;
  std::string codec;  // empty = raw
};

struct Section {
  SectionInfo info;
  std::vector<std::uint8_t> bytes;
};

struct Hello {
  std::uint16_t protocol_major = kProtocolMajor;
  std::uint16_t protocol_minor = kProtocolMinor;
  std::uint32_t codec_version = 1;
  std::string client_id;
  std::string job;
  std::string up_codec;
  std::string down_codec;
  std::uint64_t seed = 0;
  std::string model_fingerprint;
  std::uint64_t session_nonce = 0;  // chosen by the client; names its session across reconnects
  std::uint64_t resume_step = 0;    // last step the client saw completed (0 = fresh)
};

struct Welcome {
  std::uint16_t protocol_major = kProtocolMajor;
  std::uint16_t protocol_minor = kProtocolMinor;
  std::string server_id;
  std::string session_id;
  std::uint64_t next_step = 0;
  bool resumed = false;
};

struct Forward {
  std::uint64_t step_id = 0;
  std::vector<std::int64_t> sample_ids;
  std::vector<std::int64_t> labels;
};

struct Backward {
  std::uint64_t step_id = 0;
  double loss = 0;
  std::map<std::string, double> metrics;
};

struct Infer {
  std::uint64_t batch_id = 0;
};

struct InferReply {
  std::uint64_t batch_id = 0;
};

struct Checkpoint {
  std::uint64_t step_id = 0;
  std::string tag;
};

struct CheckpointAck {
  std::uint64_t step_id = 0;
  std::string path;
};

struct Ping {
  std::uint64_t nonce = 0;
};

struct Pong {
  std::uint64_t nonce = 0;
};

struct ErrorInfo {
  std::uint32_t code = 0;  // Errc value, or an application code >= 1000
  std::string text;
};

struct Goodbye {
  std::string reason;
};

using Body = std::variant<Hello, Welcome, Forward, Backward, Infer, InferReply, Checkpoint, CheckpointAck, Ping, Pong,
                          ErrorInfo, Goodbye>;

struct Message {
  Body body;
  std::vector<Section> sections;
  std::uint64_t request_id = 0;  // set by the channel

  MessageType type() const;
  template <class T>
  const T* as() const {
    return std::get_if<T>(&body);
  }
};

// A message ready to send: 32 header bytes, metadata, then the sections' bytes
// (referenced, not copied).
struct EncodedFrame {
  FrameHeaderBytes header;
  std::vector<std::uint8_t> metadata;
  std::vector<const Section*> sections;
  std::uint64_t total_bytes() const;
  std::vector<std::uint8_t> to_bytes() const;  // the whole frame in one buffer (copies)
};

// Fills section byte_length from the bytes; throws TransportError if a raw
// section's bytes do not match its dtype and shape.
EncodedFrame encode_frame(const Message& m, std::uint64_t request_id);

// The one validating decode gate for everything that arrives from the network:
// header already checked by decode_header; this checks the type, parses the
// metadata with every length bounded by the bytes that remain, and checks that
// sections add up exactly to the payload. Returns a Seam error code and a
// message naming what was wrong; `out` is valid only on success.
std::error_code decode_frame(const FrameHeader& h, const std::uint8_t* metadata, std::size_t metadata_len,
                             std::vector<std::uint8_t>&& payload, Message& out, std::string* why = nullptr);

// Convenience for tests and fuzzing: a whole frame in one buffer.
std::error_code decode_frame_bytes(const std::uint8_t* data, std::size_t size, const FrameLimits& limits, Message& out,
                                   std::string* why = nullptr);

}  // namespace seam::transport
