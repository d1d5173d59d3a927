// Message metadata in cereal portable binary, and the single decode gate.
#include "seam/transport/message.hpp"

#include <cereal/archives/portable_binary.hpp>

#include <algorithm>
#include <cstring>
#include <iterator>
#include <istream>
#include <ostream>
#include <sstream>
#include <streambuf>
#include <limits>
#include <type_traits>
#include <unordered_set>

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
// Metadata bytes not yet read, while the gate parses (for refusals that say
// how many bytes a packed field needs and how many remain).
thread_local std::streambuf* t_meta = nullptr;

struct MalformedMetadata : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// ---- integers: unsigned LEB128 varints, minimal; signed ones zigzagged first.

template <class A>
void varint(A& ar, std::uint64_t& v) {
  if constexpr (A::is_loading::value) {
    v = 0;
    for (int shift = 0;; shift += 7) {
      std::uint8_t b = 0;
      ar(b);
      if (shift == 63 && b > 1) throw MalformedMetadata("varint overflows 64 bits");
      v |= std::uint64_t(b & 0x7f) << shift;
      if (!(b & 0x80)) {
        if (b == 0 && shift > 0) throw MalformedMetadata("varint is not minimal");
        return;
      }
    }
  } else {
    std::uint64_t x = v;
    do {
      std::uint8_t b = x & 0x7f;
      x >>= 7;
      if (x) b |= 0x80;
      ar(b);
    } while (x);
  }
}

std::uint64_t zigzag(std::int64_t v) {
  return (static_cast<std::uint64_t>(v) << 1) ^ static_cast<std::uint64_t>(v >> 63);
}
std::int64_t unzigzag(std::uint64_t u) { return static_cast<std::int64_t>(u >> 1) ^ -static_cast<std::int64_t>(u & 1); }

template <class A>
void size_prefix(A& ar, std::uint64_t& n) {
  varint(ar, n);
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

template <class A, class T, std::enable_if_t<std::is_unsigned_v<T> && !std::is_same_v<T, bool> &&
                                                 (sizeof(T) > 1), int> = 0>
void field(A& ar, T& v) {
  std::uint64_t x = v;
  varint(ar, x);
  if constexpr (A::is_loading::value) {
    if (x > std::numeric_limits<T>::max()) throw MalformedMetadata("value " + std::to_string(x) + " out of range");
    v = static_cast<T>(x);
  }
}

template <class A>
void field(A& ar, std::int64_t& v) {
  std::uint64_t x = zigzag(v);
  varint(ar, x);
  v = unzigzag(x);
}

template <class A>
void field(A& ar, bool& v) {
  std::uint8_t b = v ? 1 : 0;
  ar(b);
  if (b > 1) throw MalformedMetadata("bool byte " + std::to_string(b));
  v = b == 1;
}

template <class A>
void field(A& ar, std::uint8_t& v) {
  ar(v);
}

template <class A>
void field(A& ar, double& v) {
  ar(v);
}

template <class A>
void field(A& ar, std::vector<std::int64_t>& v) {
  std::uint64_t n = v.size();
  size_prefix(ar, n);
  if constexpr (A::is_loading::value) v.resize(n);
  for (auto& x : v) field(ar, x);
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
      if (!m.emplace(std::move(k), v).second) throw MalformedMetadata("map key appears twice");
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

// ---- packed integers: `n` values known from the context, sent as the
// smallest value (zigzag varint), a bit width w (the fewest bits that hold
// max - min) and ceil(n*w/8) bytes, value - min in w bits each, LSB first.
// Canonical: the gate refuses a base that is not the minimum, a width that is
// not the fewest bits, and nonzero padding bits.

int bits_for(std::uint64_t x) {
  int w = 0;
  while (x) {
    ++w;
    x >>= 1;
  }
  return w;
}

// Refuses, naming the field, a field that needs more bytes than remain.
void need(std::uint64_t bytes, const char* what) {
  const auto left = t_meta ? static_cast<std::uint64_t>(t_meta->in_avail()) : t_length_bound;
  if (bytes > left)
    throw MalformedMetadata(std::string(what) + ": needs " + std::to_string(bytes) + " bytes, " + std::to_string(left) +
                            " remain");
}

std::size_t packed_len(std::uint64_t n, int w) { return static_cast<std::size_t>((n * static_cast<unsigned>(w) + 7) / 8); }

template <class A>
void packed(A& ar, std::vector<std::int64_t>& v, std::uint64_t n, const char* what) {
  if (n == 0) {  // nothing at all on the wire
    if constexpr (A::is_loading::value) v.clear();
    else if (!v.empty()) throw TransportError(make_error_code(Errc::section_mismatch), std::string(what) + ": values where none are expected");
    return;
  }
  if constexpr (A::is_loading::value) {
    if (n > kMaxPackedValues) throw MalformedMetadata(std::string(what) + ": " + std::to_string(n) + " values, more than the limit");
    std::int64_t base = 0;
    field(ar, base);
    std::uint8_t w = 0;
    ar(w);
    if (w > 64) throw MalformedMetadata(std::string(what) + ": bit width " + std::to_string(w) + " > 64");
    const std::size_t len = packed_len(n, w);
    need(len, what);
    std::vector<std::uint8_t> bytes(len);
    if (len) ar(cereal::binary_data(bytes.data(), len));
    v.assign(static_cast<std::size_t>(n), 0);
    std::uint64_t max_off = 0, min_off = ~std::uint64_t{0};
    std::uint64_t bit = 0;
    for (auto& x : v) {
      std::uint64_t u = 0;
      for (int i = 0; i < w; ++i, ++bit) u |= std::uint64_t((bytes[bit >> 3] >> (bit & 7)) & 1) << i;
      // Unsigned arithmetic: INT64_MAX - base, exact for any base.
      if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) - static_cast<std::uint64_t>(base))
        throw MalformedMetadata(std::string(what) + ": value overflows int64");
      x = static_cast<std::int64_t>(static_cast<std::uint64_t>(base) + u);
      max_off = std::max(max_off, u);
      min_off = std::min(min_off, u);
    }
    for (; bit < len * 8; ++bit)
      if ((bytes[bit >> 3] >> (bit & 7)) & 1) throw MalformedMetadata(std::string(what) + ": nonzero padding bits");
    if (min_off != 0) throw MalformedMetadata(std::string(what) + ": base is not the smallest value");
    if (bits_for(max_off) != w) throw MalformedMetadata(std::string(what) + ": bit width is not the fewest that hold the values");
  } else {
    if (v.size() != n) throw TransportError(make_error_code(Errc::section_mismatch),
                                            std::string(what) + ": " + std::to_string(v.size()) + " values, expected " + std::to_string(n));
    std::int64_t base = *std::min_element(v.begin(), v.end());
    std::uint64_t max_off = 0;
    for (auto x : v) max_off = std::max(max_off, static_cast<std::uint64_t>(x) - static_cast<std::uint64_t>(base));
    std::uint8_t w = static_cast<std::uint8_t>(bits_for(max_off));
    field(ar, base);
    ar(w);
    std::vector<std::uint8_t> bytes(packed_len(n, w), 0);
    std::uint64_t bit = 0;
    for (auto x : v) {
      const std::uint64_t u = static_cast<std::uint64_t>(x) - static_cast<std::uint64_t>(base);
      for (int i = 0; i < w; ++i, ++bit)
        if ((u >> i) & 1) bytes[bit >> 3] |= static_cast<std::uint8_t>(1u << (bit & 7));
    }
    if (!bytes.empty()) ar(cereal::binary_data(bytes.data(), bytes.size()));
  }
}

[[noreturn]] void bad_part(const char* body, const std::string& text) {
  throw MalformedMetadata(std::string(body) + ": " + text);
}
[[noreturn]] void bad_forward(const std::string& text) { bad_part("forward", text); }

template <class A> void body(A& ar, Hello& m) {
  fields(ar, m.protocol_major, m.protocol_minor, m.codec_version, m.client_id, m.job, m.up_codec, m.down_codec, m.seed,
         m.job_fingerprint, m.job_fields, m.checkpoint_every, m.session_nonce, m.resume_step);
}
template <class A> void body(A& ar, Welcome& m) {
  fields(ar, m.protocol_major, m.protocol_minor, m.server_id, m.session_id, m.next_step, m.resumed,
         m.checkpoint_every);
}

// The parts of Forward, each on its own so that encode_frame can measure them.
template <class A> void forward_ids(A& ar, Forward& m) {
  std::uint64_t n = m.sample_ids.size();
  varint(ar, n);
  if constexpr (A::is_loading::value) {
    if (n != 0 && n != m.batch)
      bad_forward(std::to_string(n) + " sample ids for a batch of " + std::to_string(m.batch) + " (send all or none)");
  }
  packed(ar, m.sample_ids, n, "forward: sample_ids");
  if constexpr (A::is_loading::value) {
    std::unordered_set<std::int64_t> seen;
    for (auto id : m.sample_ids)
      if (!seen.insert(id).second) bad_forward("sample id " + std::to_string(id) + " appears twice in one batch");
  }
}
template <class A> void forward_labels(A& ar, Forward& m) {
  field(ar, m.label_len);
  const std::uint64_t n = std::uint64_t{m.batch} * std::max<std::uint64_t>(1, m.label_len);
  if (n > kMaxPackedValues) bad_forward("labels: " + std::to_string(n) + " values, more than the limit");
  packed(ar, m.labels, n, "forward: labels");
}
// A mask for a batch of `batch` rows; label_len 0 or the labels' L.
template <class A> void mask_part(A& ar, StepMask& k, std::uint32_t batch, std::uint32_t label_len, const char* what) {
  std::uint8_t kind = static_cast<std::uint8_t>(k.kind);
  ar(kind);
  if constexpr (A::is_loading::value) {
    if (kind > static_cast<std::uint8_t>(MaskKind::bitmap)) bad_part(what, "mask: unknown kind " + std::to_string(kind));
    k.kind = static_cast<MaskKind>(kind);
  }
  if (k.kind == MaskKind::none) return;
  field(ar, k.len);
  if constexpr (A::is_loading::value) {
    if (k.len < 1) bad_part(what, "mask: L is 0");
    if (std::uint64_t{batch} * k.len > kMaxPackedValues) bad_part(what, "mask: B x L more than the limit");
    if (label_len != 0 && k.len != label_len)
      bad_part(what, "mask: L " + std::to_string(k.len) + " differs from the labels' L " + std::to_string(label_len));
  }
  if (k.kind == MaskKind::lengths) {
    packed(ar, k.lengths, batch, (std::string(what) + ": mask lengths").c_str());
    if constexpr (A::is_loading::value) {
      for (std::size_t i = 0; i < k.lengths.size(); ++i)
        if (k.lengths[i] < 0 || k.lengths[i] > k.len)
          bad_part(what, "mask: length " + std::to_string(k.lengths[i]) + " of sample " + std::to_string(i) +
                      " is outside [0, L=" + std::to_string(k.len) + "]");
    }
    return;
  }
  const std::size_t nbytes = packed_len(std::uint64_t{batch} * k.len, 1);
  if constexpr (A::is_loading::value) {
    need(nbytes, (std::string(what) + ": mask bitmap").c_str());
    k.bitmap.resize(nbytes);
  } else if (k.bitmap.size() != nbytes) {
    throw TransportError(make_error_code(Errc::section_mismatch),
                         std::string(what) + ": mask bitmap has " + std::to_string(k.bitmap.size()) + " bytes, B x L needs " +
                             std::to_string(nbytes));
  }
  if (nbytes) ar(cereal::binary_data(k.bitmap.data(), nbytes));
  if constexpr (A::is_loading::value) {
    const std::uint64_t used = std::uint64_t{batch} * k.len;
    for (std::uint64_t bit = used; bit < nbytes * 8; ++bit)
      if ((k.bitmap[bit >> 3] >> (bit & 7)) & 1) bad_part(what, "mask: nonzero padding bits after the bitmap");
  }
}
template <class A> void forward_mask(A& ar, Forward& m) { mask_part(ar, m.mask, m.batch, m.label_len, "forward"); }
template <class A> void batch_size(A& ar, std::uint32_t& batch, const char* what) {
  field(ar, batch);
  if constexpr (A::is_loading::value) {
    if (batch < 1 || batch > kMaxBatch)
      bad_part(what, "batch of " + std::to_string(batch) + "; a batch has 1.." + std::to_string(kMaxBatch) + " samples");
  }
}
template <class A> void forward_head(A& ar, Forward& m) {
  field(ar, m.step_id);
  batch_size(ar, m.batch, "forward");
}
// encode_frame writes these parts itself, to measure them; keep the order in step.
template <class A> void body(A& ar, Forward& m) {
  forward_head(ar, m);
  forward_ids(ar, m);
  forward_labels(ar, m);
  forward_mask(ar, m);
}
template <class A> void body(A& ar, Backward& m) { fields(ar, m.step_id, m.loss, m.metrics); }
template <class A> void body(A& ar, Infer& m) {
  field(ar, m.batch_id);
  batch_size(ar, m.batch, "infer");
  std::uint8_t out = static_cast<std::uint8_t>(m.output);
  ar(out);
  if constexpr (A::is_loading::value) {
    if (out > static_cast<std::uint8_t>(InferOutput::classes))
      throw MalformedMetadata("infer: unknown output kind " + std::to_string(out));
    m.output = static_cast<InferOutput>(out);
  }
  mask_part(ar, m.mask, m.batch, 0, "infer");
}
template <class A> void body(A& ar, InferReply& m) { fields(ar, m.batch_id); }
template <class A> void body(A& ar, Checkpoint& m) { fields(ar, m.step_id, m.tag); }
template <class A> void body(A& ar, CheckpointAck& m) { fields(ar, m.step_id, m.path); }
template <class A> void body(A& ar, Ping& m) { fields(ar, m.nonce); }
template <class A> void body(A& ar, Pong& m) { fields(ar, m.nonce); }
template <class A> void body(A& ar, ErrorInfo& m) { fields(ar, m.code, m.text); }
template <class A> void body(A& ar, Goodbye& m) { fields(ar, m.reason); }
template <class A> void body(A& ar, Working& m) { fields(ar, m.elapsed_ms); }
template <class A> void body(A& ar, Fetch& m) { fields(ar, m.job, m.file, m.offset, m.max_bytes); }
template <class A> void body(A& ar, FetchReply& m) { fields(ar, m.file, m.offset, m.total); }

// A raw section's byte length follows from its dtype and shape, so only
// encoded sections (codec non-empty) carry it.
template <class A>
void section_info(A& ar, SectionInfo& s) {
  std::uint8_t dt = static_cast<std::uint8_t>(s.dtype);
  fields(ar, s.name, dt);
  s.dtype = static_cast<WireDType>(dt);
  std::uint64_t dims = s.shape.size();
  varint(ar, dims);
  if constexpr (A::is_loading::value) {
    if (dims > kMaxDims) throw MalformedMetadata("section '" + s.name + "' has more than 8 dims");
    s.shape.resize(dims);
  }
  for (auto& d : s.shape) {
    std::uint64_t u = static_cast<std::uint64_t>(d);
    varint(ar, u);
    if (u > (std::uint64_t{1} << 48)) throw MalformedMetadata("section '" + s.name + "' has a dimension out of range");
    d = static_cast<std::int64_t>(u);
  }
  field(ar, s.codec);
  if (!s.codec.empty()) {
    field(ar, s.byte_length);
  } else if constexpr (A::is_loading::value) {
    if (!wire_dtype_valid(dt)) throw MalformedMetadata("section '" + s.name + "' has an invalid dtype");
    std::uint64_t numel = 1;
    for (auto d : s.shape) {
      if (d != 0 && numel > (std::uint64_t{1} << 48) / static_cast<std::uint64_t>(d))
        throw MalformedMetadata("section '" + s.name + "' element count overflows");
      numel *= static_cast<std::uint64_t>(d);
    }
    s.byte_length = numel * wire_dtype_size(s.dtype);
  }
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
                                          "working", "fetch", "fetch_reply"};
  static_assert(std::size(names) == kMessageTypeCount + 1, "one name per message type");
  auto i = static_cast<std::uint16_t>(t);
  return type_known(i) ? names[i] : "unknown";
}

MessageType Message::type() const { return static_cast<MessageType>(body.index() + 1); }

std::uint64_t FrameBytes::total() const { return header + metadata + ids + labels + mask + sections; }

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
  FrameHeader h;
  {
    cereal::PortableBinaryOutputArchive ar(os);
    std::uint64_t n = m.sections.size();
    if (n > kMaxSections) throw TransportError(make_error_code(Errc::section_mismatch), "too many sections");
    varint(ar, n);
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
    if (const auto* fw = m.as<Forward>()) {
      // Forward's packed parts are measured as they are written (the
      // archive writes straight into `os`).
      auto& w = const_cast<Forward&>(*fw);
      const auto at = [&] { return static_cast<std::uint64_t>(os.tellp()); };
      forward_head(ar, w);
      auto p = at();
      forward_ids(ar, w);
      f.bytes.ids = at() - p;
      p = at();
      forward_labels(ar, w);
      f.bytes.labels = at() - p;
      p = at();
      forward_mask(ar, w);
      f.bytes.mask = at() - p;
    } else {
      std::visit([&](auto& b) { body(ar, const_cast<std::decay_t<decltype(b)>&>(b)); }, m.body);
    }
    h.type = static_cast<std::uint16_t>(m.type());
    h.payload_len = payload;
    h.request_id = request_id;
  }
  auto meta = os.str();
  if (meta.size() > std::numeric_limits<std::uint32_t>::max())
    throw TransportError(make_error_code(Errc::metadata_too_large), "metadata over 4 GiB");
  h.metadata_len = static_cast<std::uint32_t>(meta.size());
  f.metadata.assign(meta.begin(), meta.end());
  f.header = encode_header(h);
  f.bytes.header = kFrameHeaderSize;
  f.bytes.sections = h.payload_len;
  f.bytes.metadata = meta.size() - f.bytes.ids - f.bytes.labels - f.bytes.mask;
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
    t_meta = &buf;
    struct Reset {
      ~Reset() { t_meta = nullptr; }
    } reset;
    cereal::PortableBinaryInputArchive ar(is);
    std::uint64_t n = 0;
    varint(ar, n);
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
