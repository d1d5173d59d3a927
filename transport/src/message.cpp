// Message metadata in cereal portable binary, and the single decode gate.
#include "seam/transport/message.hpp"

#include <cereal/archives/portable_binary.hpp>

#include <cstring>
#include <iterator>
#include <istream>
#include <ostream>
#include <sstream>
#include <streambuf>

#include "byte_order.hpp"
#include "seam/transport/errors.hpp"

namespace seam::transport {

namespace {

constexpr std::uint32_t kMaxSections = 256;
constexpr int kMaxDims = 8;

// Upper bound for any container length read from metadata: no element takes
// less than one byte, so a length above the metadata size is a lie. Set by the
// gate before parsing; keeps a forged length from sizing an allocation.
thread_local std::uint64_t t_length_bound = 0;

struct MalformedMetadata : std::runtime_error {
  using std::runtime_error::runtime_error;
};

template <class A>
void size_prefix(A& ar, std::uint64_t& n) {
  ar(n);
  if constexpr (A::is_loading::value) {
    if (n > t_length_bound) throw MalformedMetadata("length " + std::to_string(n) + " exceeds metadata size");
  }
}

template <class A>
void field(A& ar, std::string& s) {
  std::uint64_t n = s.size();
  size_prefix(ar, n);
  if constexpr (A::is_loading::value) s.resize(n);
  if (n) ar(cereal::binary_data(s.data(), n));
}

template <class A, class T>
void field(A& ar, T& v) {
  ar(v);
}

template <class A>
void field(A& ar, std::vector<std::int64_t>& v) {
  std::uint64_t n = v.size();
  size_prefix(ar, n);
  if constexpr (A::is_loading::value) v.resize(n);
  for (auto& x : v) ar(x);
}

template <class A>
void field(A& ar, std::map<std::string, double>& m) {
  std::uint64_t n = m.size();
  size_prefix(ar, n);
  if constexpr (A::is_loading::value) {
    m.clear();
    for (std::uint64_t i = 0; i < n; ++i) {
      std::string k;
      double v;
      field(ar, k);
      ar(v);
      m.emplace(std::move(k), v);
    }
  } else {
    for (auto& [k, v] : m) {
      std::string key = k;
      double val = v;
      field(ar, key);
      ar(val);
    }
  }
}

template <class A, class... T>
void fields(A& ar, T&... f) {
  (field(ar, f), ...);
}

template <class A> void body(A& ar, Hello& m) {
  fields(ar, m.protocol_major, m.protocol_minor, m.codec_version, m.client_id, m.job, m.up_codec, m.down_codec, m.seed,
         m.job_fingerprint, m.job_fields, m.checkpoint_every, m.session_nonce, m.resume_step);
}
template <class A> void body(A& ar, Welcome& m) {
  fields(ar, m.protocol_major, m.protocol_minor, m.server_id, m.session_id, m.next_step, m.resumed,
         m.checkpoint_every);
}
template <class A> void body(A& ar, Forward& m) { fields(ar, m.step_id, m.sample_ids); }
template <class A> void body(A& ar, Backward& m) { fields(ar, m.step_id, m.loss, m.metrics); }
template <class A> void body(A& ar, Infer& m) { fields(ar, m.batch_id); }
template <class A> void body(A& ar, InferReply& m) { fields(ar, m.batch_id); }
template <class A> void body(A& ar, Checkpoint& m) { fields(ar, m.step_id, m.tag); }
template <class A> void body(A& ar, CheckpointAck& m) { fields(ar, m.step_id, m.path); }
template <class A> void body(A& ar, Ping& m) { fields(ar, m.nonce); }
template <class A> void body(A& ar, Pong& m) { fields(ar, m.nonce); }
template <class A> void body(A& ar, ErrorInfo& m) { fields(ar, m.code, m.text); }
template <class A> void body(A& ar, Goodbye& m) { fields(ar, m.reason); }
template <class A> void body(A& ar, Working& m) { fields(ar, m.elapsed_ms); }

template <class A>
void section_info(A& ar, SectionInfo& s) {
  std::uint8_t dt = static_cast<std::uint8_t>(s.dtype);
  fields(ar, s.name, dt);
  s.dtype = static_cast<WireDType>(dt);
  fields(ar, s.shape, s.byte_length, s.codec);
}

// Read-only streambuf over a byte range (no copy of the metadata).
struct MemBuf : std::streambuf {
  MemBuf(const std::uint8_t* p, std::size_t n) {
    char* c = const_cast<char*>(reinterpret_cast<const char*>(p));
    setg(c, c, c + n);
  }
  std::streamsize remaining() const { return egptr() - gptr(); }
};

bool type_known(std::uint16_t t) { return t >= 1 && t <= kMessageTypeCount; }

// A default body of the given (known) type: alternative t-1 of Body.
template <std::size_t I>
Body make_alternative() {
  return Body(std::in_place_index<I>);
}
template <std::size_t... I>
Body make_body(std::uint16_t t, std::index_sequence<I...>) {
  static constexpr Body (*const makers[])() = {&make_alternative<I>...};
  return makers[t - 1]();
}
Body make_body(std::uint16_t t) {
  if (!type_known(t)) throw MalformedMetadata("unknown message type");
  return make_body(t, std::make_index_sequence<kMessageTypeCount>{});
}

// Checks one section's metadata; returns an empty string when it is valid.
std::string check_section(const SectionInfo& s) {
  if (!wire_dtype_valid(static_cast<std::uint8_t>(s.dtype))) return "section '" + s.name + "' has an invalid dtype";
  if (s.shape.size() > kMaxDims) return "section '" + s.name + "' has more than 8 dims";
  std::uint64_t numel = 1;
  for (auto d : s.shape) {
    if (d < 0) return "section '" + s.name + "' has a negative dimension";
    if (d != 0 && numel > (std::uint64_t{1} << 48) / static_cast<std::uint64_t>(d))
      return "section '" + s.name + "' element count overflows";
    numel *= static_cast<std::uint64_t>(d);
  }
  if (s.codec.empty() && numel * wire_dtype_size(s.dtype) != s.byte_length)
    return "section '" + s.name + "' has " + std::to_string(s.byte_length) + " bytes but its shape and dtype need " +
           std::to_string(numel * wire_dtype_size(s.dtype));
  if (!s.codec.empty() && s.dtype != WireDType::u8) return "encoded section '" + s.name + "' must have dtype u8";
  return {};
}

}  // namespace

const char* to_string(MessageType t) {
  // Indexed by the MessageType value.
  static constexpr const char* names[] = {"?", "hello", "welcome", "forward", "backward", "infer", "infer_reply",
                                          "checkpoint", "checkpoint_ack", "ping", "pong", "error", "goodbye",
                                          "working"};
  static_assert(std::size(names) == kMessageTypeCount + 1, "one name per message type");
  auto i = static_cast<std::uint16_t>(t);
  return type_known(i) ? names[i] : "unknown";
}

MessageType Message::type() const { return static_cast<MessageType>(body.index() + 1); }

std::uint64_t EncodedFrame::total_bytes() const {
  std::uint64_t n = kFrameHeaderSize + metadata.size();
  for (auto* s : sections) n += s->bytes.size();
  return n;
}

std::vector<std::uint8_t> EncodedFrame::to_bytes() const {
  std::vector<std::uint8_t> b(static_cast<std::size_t>(total_bytes()));
  std::uint8_t* p = b.data();
  std::memcpy(p, header.data(), header.size());
  p += header.size();
  if (!metadata.empty()) std::memcpy(p, metadata.data(), metadata.size());
  p += metadata.size();
  for (auto* s : sections) {
    if (!s->bytes.empty()) std::memcpy(p, s->bytes.data(), s->bytes.size());
    p += s->bytes.size();
  }
  return b;
}

EncodedFrame encode_frame(const Message& m, std::uint64_t request_id) {
  EncodedFrame f;
  std::ostringstream os(std::ios::binary);
  {
    cereal::PortableBinaryOutputArchive ar(os);
    std::uint32_t n = static_cast<std::uint32_t>(m.sections.size());
    if (n > kMaxSections) throw TransportError(make_error_code(Errc::section_mismatch), "too many sections");
    ar(n);
    std::uint64_t payload = 0;
    for (const auto& s : m.sections) {
      SectionInfo info = s.info;
      info.byte_length = s.bytes.size();
      auto bad = check_section(info);
      if (!bad.empty()) throw TransportError(make_error_code(Errc::section_mismatch), bad);
      section_info(ar, info);
      payload += s.bytes.size();
      f.sections.push_back(&s);
    }
    std::visit([&](auto& b) { body(ar, const_cast<std::decay_t<decltype(b)>&>(b)); }, m.body);
    FrameHeader h;
    h.type = static_cast<std::uint16_t>(m.type());
    h.payload_len = payload;
    h.request_id = request_id;
    auto meta = os.str();
    h.metadata_len = static_cast<std::uint32_t>(meta.size());
    f.metadata.assign(meta.begin(), meta.end());
    f.header = encode_header(h);
  }
  return f;
}

std::error_code decode_frame(const FrameHeader& h, const std::uint8_t* metadata, std::size_t metadata_len,
                             std::vector<std::uint8_t>&& payload, Message& out, std::string* why) {
  auto fail = [&](Errc e, const std::string& text) {
    if (why) *why = text;
    return make_error_code(e);
  };
  if (!type_known(h.type)) return fail(Errc::unknown_message_type, "unknown message type " + std::to_string(h.type));
  if (payload.size() != h.payload_len) return fail(Errc::section_mismatch, "payload shorter than its header says");
  if (metadata_len != h.metadata_len) return fail(Errc::malformed_metadata, "metadata shorter than its header says");
  Message m;
  std::vector<SectionInfo> infos;
  try {
    MemBuf buf(metadata, metadata_len);
    std::istream is(&buf);
    t_length_bound = metadata_len;
    cereal::PortableBinaryInputArchive ar(is);
    std::uint32_t n = 0;
    ar(n);
    if (n > kMaxSections || n > metadata_len) return fail(Errc::malformed_metadata, "section count out of range");
    infos.resize(n);
    for (auto& s : infos) section_info(ar, s);
    m.body = make_body(h.type);
    std::visit([&](auto& b) { body(ar, b); }, m.body);
    if (buf.remaining() != 0)
      return fail(Errc::malformed_metadata, std::to_string(buf.remaining()) + " trailing metadata bytes");
  } catch (const MalformedMetadata& e) {
    return fail(Errc::malformed_metadata, e.what());
  } catch (const cereal::Exception& e) {
    return fail(Errc::malformed_metadata, std::string("truncated metadata: ") + e.what());
  }
  std::uint64_t total = 0;
  for (const auto& s : infos) {
    auto bad = check_section(s);
    if (!bad.empty()) return fail(Errc::section_mismatch, bad);
    if (s.byte_length > h.payload_len - total) return fail(Errc::section_mismatch, "sections exceed the payload");
    total += s.byte_length;
  }
  if (total != h.payload_len)
    return fail(Errc::section_mismatch, "sections add up to " + std::to_string(total) + " bytes, payload has " +
                                            std::to_string(h.payload_len));
  std::size_t off = 0;
  if (infos.size() == 1) {  // the common case: move the payload, no copy
    m.sections.push_back(Section{std::move(infos[0]), std::move(payload)});
  } else {
    for (auto& s : infos) {
      Section sec{std::move(s), {}};
      sec.bytes.assign(payload.begin() + off, payload.begin() + off + sec.info.byte_length);
      off += sec.info.byte_length;
      m.sections.push_back(std::move(sec));
    }
  }
  m.request_id = h.request_id;
  out = std::move(m);
  return {};
}

std::error_code decode_frame_bytes(const std::uint8_t* data, std::size_t size, const FrameLimits& limits, Message& out,
                                   std::string* why) {
  auto fail = [&](Errc e, const std::string& text) {
    if (why) *why = text;
    return make_error_code(e);
  };
  if (size < kFrameHeaderSize) return fail(Errc::connection_closed, "truncated frame header");
  FrameHeader h;
  switch (decode_header(data, limits, h)) {
    case FrameStatus::ok: break;
    case FrameStatus::bad_magic: return fail(Errc::bad_magic, "bad frame magic");
    case FrameStatus::major_mismatch:
      return fail(Errc::version_mismatch, "protocol major " + std::to_string(h.major) + ", expected " +
                                              std::to_string(kProtocolMajor));
    case FrameStatus::metadata_too_large: return fail(Errc::metadata_too_large, "metadata length exceeds limit");
    case FrameStatus::payload_too_large: return fail(Errc::payload_too_large, "payload length exceeds limit");
  }
  const std::uint64_t body = std::uint64_t{h.metadata_len} + h.payload_len;
  if (size - kFrameHeaderSize != body) return fail(Errc::connection_closed, "frame length differs from its header");
  const std::uint8_t* meta = data + kFrameHeaderSize;
  std::vector<std::uint8_t> payload(meta + h.metadata_len, meta + h.metadata_len + h.payload_len);
  return decode_frame(h, meta, h.metadata_len, std::move(payload), out, why);
}

}  // namespace seam::transport
