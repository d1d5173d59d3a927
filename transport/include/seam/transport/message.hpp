#pragma once
// Seam messages: typed metadata (cereal portable binary on the wire, see
// docs/wire-protocol.md) plus raw tensor sections. No LibTorch here: a tensor
// is a section of bytes with dtype and shape.
#include <cstdint>
#include <map>
#include <string>
#include <system_error>
#include <utility>
#include <variant>
#include <vector>

#include "seam/transport/frame.hpp"
#include "seam/transport/wire_types.hpp"

namespace seam::transport {

// Wire type codes. Each body below names its code (kType) and sits at index
// code-1 of `Body`; static_asserts after `Body` keep the three in step.
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
  working = 13,      // since 2.1
  fetch = 14,        // since 3.1
  fetch_reply = 15,  // since 3.1
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
  static constexpr MessageType kType = MessageType::hello;
  std::uint16_t protocol_major = kProtocolMajor;
  std::uint16_t protocol_minor = kProtocolMinor;
  std::uint32_t codec_version = 1;
  std::string client_id;
  std::string job;
  std::string up_codec;
  std::string down_codec;
  std::uint64_t seed = 0;
  std::string job_fingerprint;  // hash of the job: config, split, seed, codecs, initial edge weights
  // The hashed fields as canonical "key=value" lines, so that a refusal can
  // name the field that differs.
  std::string job_fields;
  std::uint64_t checkpoint_every = 0;  // steps between coordinated checkpoints the client asks for (0 = none)
  std::uint64_t session_nonce = 0;     // chosen by the client; names its session across reconnects
  std::uint64_t resume_step = 0;       // steps the client's state has applied (0 = fresh)
};

struct Welcome {
  static constexpr MessageType kType = MessageType::welcome;
  std::uint16_t protocol_major = kProtocolMajor;
  std::uint16_t protocol_minor = kProtocolMinor;
  std::string server_id;
  std::string session_id;
  std::uint64_t next_step = 0;
  bool resumed = false;
  std::uint64_t checkpoint_every = 0;  // what the server agreed (0 = none)
};

// Limits the decode gate enforces on a Forward body.
inline constexpr std::uint32_t kMaxBatch = 65536;
inline constexpr std::uint64_t kMaxPackedValues = std::uint64_t{1} << 22;  // labels or mask cells per step

// How an attention mask travels: as per-sample lengths when every row is a
// prefix of ones (1..1 0..0), otherwise as a bitmap.
enum class MaskKind : std::uint8_t { none = 0, lengths = 1, bitmap = 2 };

struct StepMask {
  MaskKind kind = MaskKind::none;
  std::uint32_t len = 0;               // L (lengths, bitmap)
  std::vector<std::int64_t> lengths;   // lengths: B values in [0, L]
  std::vector<std::uint8_t> bitmap;    // bitmap: ceil(B*L/8) bytes, row-major, LSB first, padding bits 0
  friend bool operator==(const StepMask& a, const StepMask& b) {
    return a.kind == b.kind && a.len == b.len && a.lengths == b.lengths && a.bitmap == b.bitmap;
  }
  friend bool operator!=(const StepMask& a, const StepMask& b) { return !(a == b); }
};

// One training step's batch. Integers travel packed (docs/wire-protocol.md):
// the smallest value, then each value minus it in the fewest bits that hold
// them. The gate checks the structure: 1 <= batch <= kMaxBatch, ids all or
// none and unique, batch x max(1, label_len) labels, mask lengths within
// [0, L], a bitmap of exactly ceil(B*L/8) bytes. The tensor is a section.
struct Forward {
  static constexpr MessageType kType = MessageType::forward;
  std::uint64_t step_id = 0;
  std::vector<std::int64_t> sample_ids;  // empty when the session's codecs need no ids
  std::uint32_t batch = 0;               // B
  std::uint32_t label_len = 0;           // 0: labels are [B]; L: labels are [B, L]
  std::vector<std::int64_t> labels;      // row-major
  StepMask mask;
  friend bool operator==(const Forward& a, const Forward& b) {
    return a.step_id == b.step_id && a.sample_ids == b.sample_ids && a.batch == b.batch && a.label_len == b.label_len &&
           a.labels == b.labels && a.mask == b.mask;
  }
};

struct Backward {
  static constexpr MessageType kType = MessageType::backward;
  std::uint64_t step_id = 0;
  double loss = 0;
  std::map<std::string, double> metrics;
};

// What an Infer asks back: the logits, or the predicted class per sample.
enum class InferOutput : std::uint8_t { logits = 0, classes = 1 };

// An inference batch on a session (since 3.1): the encoded activation is
// section "activations" (a stateless codec message); the mask travels as in
// Forward. The gate checks 1 <= batch <= kMaxBatch and the mask's structure.
struct Infer {
  static constexpr MessageType kType = MessageType::infer;
  std::uint64_t batch_id = 0;
  std::uint32_t batch = 0;
  InferOutput output = InferOutput::logits;
  StepMask mask;
};

// Section "logits" (f32 [B, ...]) or "classes" (i64 [B, ...]).
struct InferReply {
  static constexpr MessageType kType = MessageType::infer_reply;
  std::uint64_t batch_id = 0;
};

struct Checkpoint {
  static constexpr MessageType kType = MessageType::checkpoint;
  std::uint64_t step_id = 0;
  std::string tag;
};

struct CheckpointAck {
  static constexpr MessageType kType = MessageType::checkpoint_ack;
  std::uint64_t step_id = 0;
  std::string path;
};

struct Ping {
  static constexpr MessageType kType = MessageType::ping;
  std::uint64_t nonce = 0;
};

struct Pong {
  static constexpr MessageType kType = MessageType::pong;
  std::uint64_t nonce = 0;
};

struct ErrorInfo {
  static constexpr MessageType kType = MessageType::error;
  std::uint32_t code = 0;  // Errc value, or an application code >= 1000
  std::string text;
};

struct Goodbye {
  static constexpr MessageType kType = MessageType::goodbye;
  std::string reason;
};

// Server -> client while a handler computes longer than the keep-alive
// interval, with the request's id: the request arrived and is being worked
// on. It keeps the client's stall timeout from firing; it is not the reply.
// Sent only to peers whose request frame says protocol minor >= 1.
struct Working {
  static constexpr MessageType kType = MessageType::working;
  std::uint64_t elapsed_ms = 0;  // how long the handler has run so far
};
// Whether a peer of protocol major.minor knows the Working type (2.1 and
// later); the server sends none to one that does not.
constexpr bool knows_working(std::uint16_t major, std::uint16_t minor) {
  return major > 2 || (major == 2 && minor >= 1);
}

// One chunk of a prepared job's edge files (since 3.1): `file` is one of the
// names the server offers (manifest, job.conf, edge_init.pt); the reply's
// section "data" holds up to max_bytes bytes from `offset`. No session is
// needed: the server checks the client's certificate against the job's list.
struct Fetch {
  static constexpr MessageType kType = MessageType::fetch;
  std::string job;
  std::string file;
  std::uint64_t offset = 0;
  std::uint32_t max_bytes = 0;
};

struct FetchReply {
  static constexpr MessageType kType = MessageType::fetch_reply;
  std::string file;
  std::uint64_t offset = 0;
  std::uint64_t total = 0;  // the whole file's size
};

using Body = std::variant<Hello, Welcome, Forward, Backward, Infer, InferReply, Checkpoint, CheckpointAck, Ping, Pong,
                          ErrorInfo, Goodbye, Working, Fetch, FetchReply>;

// Message types are 1..kMessageTypeCount, and Body's index i holds type i+1.
inline constexpr std::uint16_t kMessageTypeCount = std::variant_size_v<Body>;
namespace detail {
template <std::size_t... I>
constexpr bool body_indices_match(std::index_sequence<I...>) {
  return ((static_cast<std::size_t>(std::variant_alternative_t<I, Body>::kType) == I + 1) && ...);
}
}  // namespace detail
static_assert(detail::body_indices_match(std::make_index_sequence<kMessageTypeCount>{}),
              "Body alternative i must be the body of MessageType i+1");
static_assert(static_cast<std::uint16_t>(MessageType::fetch_reply) == kMessageTypeCount,
              "every MessageType needs a body in Body");

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

// Where one frame's bytes go. A Forward's packed ids, labels and mask are
// counted apart from the rest of its metadata.
struct FrameBytes {
  std::uint64_t header = 0, metadata = 0, ids = 0, labels = 0, mask = 0;
  std::uint64_t sections = 0;  // the payload: tensor sections
  std::uint64_t total() const;
};

// A message ready to send: 32 header bytes, metadata, then the sections' bytes
// (referenced, not copied).
struct EncodedFrame {
  FrameHeaderBytes header;
  FrameBytes bytes;
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
