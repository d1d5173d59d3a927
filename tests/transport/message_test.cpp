// The decode gate on hand-made bytes, and the shaper/estimator arithmetic.
#include <gtest/gtest.h>

#include <cereal/archives/portable_binary.hpp>
#include <sstream>
#include <tuple>
#include <utility>

#include "byte_order.hpp"
#include "seam/transport/errors.hpp"
#include "seam/transport/message.hpp"
#include "seam/transport/shaper.hpp"

namespace seam::transport {
namespace {

std::vector<std::uint8_t> whole(const EncodedFrame& f) { return f.to_bytes(); }

// Every field of every body, for field-by-field comparison.
auto tie_of(const Hello& m) {
  return std::tie(m.protocol_major, m.protocol_minor, m.codec_version, m.client_id, m.job, m.up_codec, m.down_codec,
                  m.seed, m.job_fingerprint, m.job_fields, m.checkpoint_every, m.session_nonce, m.resume_step);
}
auto tie_of(const Welcome& m) {
  return std::tie(m.protocol_major, m.protocol_minor, m.server_id, m.session_id, m.next_step, m.resumed,
                  m.checkpoint_every);
}
auto tie_of(const Forward& m) { return std::tie(m.step_id, m.sample_ids, m.batch, m.label_len, m.labels, m.mask); }
auto tie_of(const Backward& m) { return std::tie(m.step_id, m.loss, m.metrics); }
auto tie_of(const Infer& m) { return std::tie(m.batch_id, m.batch, m.output, m.mask); }
auto tie_of(const InferReply& m) { return std::tie(m.batch_id); }
auto tie_of(const Checkpoint& m) { return std::tie(m.step_id, m.tag); }
auto tie_of(const CheckpointAck& m) { return std::tie(m.step_id, m.path); }
auto tie_of(const Ping& m) { return std::tie(m.nonce); }
auto tie_of(const Pong& m) { return std::tie(m.nonce); }
auto tie_of(const ErrorInfo& m) { return std::tie(m.code, m.text); }
auto tie_of(const Goodbye& m) { return std::tie(m.reason); }
auto tie_of(const Working& m) { return std::tie(m.elapsed_ms); }
auto tie_of(const Fetch& m) { return std::tie(m.job, m.file, m.offset, m.max_bytes); }
auto tie_of(const FetchReply& m) { return std::tie(m.file, m.offset, m.total); }

// The number of fields of an aggregate: the most initialisers it accepts. It
// makes a field added to a body but not to tie_of a compile error.
struct AnyField {
  template <class T>
  operator T() const;
};
template <class T, class... A>
constexpr auto accepts(int) -> decltype(T{std::declval<A>()...}, true) {
  return true;
}
template <class T, class... A>
constexpr bool accepts(long) {
  return false;
}
template <class T, class... A>
constexpr std::size_t field_count() {
  if constexpr (accepts<T, A..., AnyField>(0)) return field_count<T, A..., AnyField>();
  else return sizeof...(A);
}

template <class Tuple, std::size_t... I>
bool all_differ(const Tuple& a, const Tuple& b, std::index_sequence<I...>) {
  return ((std::get<I>(a) != std::get<I>(b)) && ...);
}

template <class T>
void expect_same_body(const T& sent, const Body& got) {
  static_assert(field_count<T>() == std::tuple_size_v<decltype(tie_of(sent))>, "tie_of must list every field");
  const auto fields = tie_of(sent);
  const T defaults{};
  // Only a non-default value shows that a field really crossed.
  EXPECT_TRUE(all_differ(fields, tie_of(defaults), std::make_index_sequence<std::tuple_size_v<decltype(fields)>>{}))
      << to_string(T::kType) << ": give every field a non-default value";
  const T* back = std::get_if<T>(&got);
  ASSERT_NE(back, nullptr) << to_string(T::kType);
  EXPECT_EQ(tie_of(*back), fields) << to_string(T::kType);
}

TEST(DecodeGate, EveryMessageTypeRoundTripsWithEveryField) {
  const std::vector<Body> bodies = {
      Hello{7, 5, 4, "edge", "job", "delta:bits=4", "quant:bits=8", 42, "fp-9f3a", "model=bert\nsplit=2\n", 50, 9, 3},
      Welcome{7, 5, "srv", "sess", 7, true, 25},
      Forward{3, {1, 2}, 2, 3, {0, 1, 2, 3, 4, -100}, StepMask{MaskKind::lengths, 3, {3, 1}, {}}},
      Backward{3, 0.5, {{"acc", 0.9}}},
      Infer{4, 2, InferOutput::classes, StepMask{MaskKind::bitmap, 5, {}, {0x1f, 0x01}}},
      InferReply{5},
      Checkpoint{5, "tag"},
      CheckpointAck{6, "/x"},
      Ping{6},
      Pong{7},
      ErrorInfo{1000, "bad"},
      Goodbye{"bye"},
      Working{1500},
      Fetch{"job", "edge_init.pt", 65536, 4096},
      FetchReply{"edge_init.pt", 65536, 123456}};
  ASSERT_EQ(bodies.size(), kMessageTypeCount);
  for (std::size_t i = 0; i < bodies.size(); ++i) {
    Message m;
    m.body = bodies[i];
    ASSERT_EQ(static_cast<std::size_t>(m.type()), i + 1);
    EXPECT_STRNE(to_string(m.type()), "unknown");
    Section s;
    s.info = {"x", WireDType::f32, {2, 3}, 0, ""};
    s.bytes.assign(24, 1);
    m.sections.push_back(s);
    auto bytes = whole(encode_frame(m, 11));
    Message out;
    std::string why;
    ASSERT_FALSE(decode_frame_bytes(bytes.data(), bytes.size(), {}, out, &why)) << why;
    EXPECT_EQ(out.type(), m.type());
    EXPECT_EQ(out.request_id, 11u);
    ASSERT_EQ(out.sections.size(), 1u);
    EXPECT_EQ(out.sections[0].info.name, "x");
    EXPECT_EQ(out.sections[0].info.dtype, WireDType::f32);
    EXPECT_EQ(out.sections[0].info.shape, (std::vector<std::int64_t>{2, 3}));
    EXPECT_EQ(out.sections[0].bytes, s.bytes);
    std::visit([&](const auto& sent) { expect_same_body(sent, out.body); }, m.body);
  }
  // One past the last type is unknown everywhere.
  EXPECT_STREQ(to_string(static_cast<MessageType>(kMessageTypeCount + 1)), "unknown");
  Message m;
  m.body = Ping{1};
  auto f = encode_frame(m, 1);
  FrameHeader h;
  ASSERT_EQ(decode_header(f.header.data(), {}, h), FrameStatus::ok);
  h.type = kMessageTypeCount + 1;
  f.header = encode_header(h);
  auto bytes = whole(f);
  Message out;
  EXPECT_EQ(decode_frame_bytes(bytes.data(), bytes.size(), {}, out), make_error_code(Errc::unknown_message_type));
}

TEST(DecodeGate, ForgedContainerLengthIsRefusedWithoutAllocating) {
  // Metadata claiming a 2^60-byte string: the gate refuses it from the metadata size.
  std::ostringstream os(std::ios::binary);
  {
    cereal::PortableBinaryOutputArchive ar(os);
    ar(std::uint8_t{0});              // no sections (varint 0)
    // Goodbye.reason length 2^60 as a varint: eight 0x80 bytes, then 0x10.
    for (int i = 0; i < 8; ++i) ar(std::uint8_t{0x80});
    ar(std::uint8_t{0x10});
  }
  auto meta = os.str();
  FrameHeader h;
  h.type = static_cast<std::uint16_t>(MessageType::goodbye);
  h.metadata_len = static_cast<std::uint32_t>(meta.size());
  auto hb = encode_header(h);
  std::vector<std::uint8_t> b(hb.begin(), hb.end());
  b.insert(b.end(), meta.begin(), meta.end());
  Message out;
  std::string why;
  EXPECT_EQ(decode_frame_bytes(b.data(), b.size(), {}, out, &why), make_error_code(Errc::malformed_metadata));
  EXPECT_NE(why.find("exceeds metadata size"), std::string::npos) << why;
}

TEST(DecodeGate, RawSectionSizeMustMatchShapeAndDtype) {
  Message m;
  m.body = Ping{1};
  Section s;
  s.info = {"x", WireDType::f32, {4}, 0, ""};
  s.bytes.assign(15, 0);  // 4 floats need 16 bytes
  m.sections.push_back(s);
  EXPECT_THROW(encode_frame(m, 1), TransportError);
  m.sections[0].info.codec = "quant:bits=4";  // encoded sections must be u8
  EXPECT_THROW(encode_frame(m, 1), TransportError);
  m.sections[0].info.dtype = WireDType::u8;
  auto b = whole(encode_frame(m, 1));
  Message out;
  EXPECT_FALSE(decode_frame_bytes(b.data(), b.size(), {}, out));
}

TEST(DecodeGate, TruncationsAndTrailingBytesAreRefused) {
  Message m = {};
  m.body = Forward{1, {1, 2, 3}, 3, 0, {0, 1, 0}, {}};
  auto b = whole(encode_frame(m, 1));
  for (std::size_t n = 0; n < b.size(); ++n) {
    Message out;
    EXPECT_TRUE(decode_frame_bytes(b.data(), n, {}, out)) << n;
  }
  // Metadata with a trailing byte (lengths adjusted so only the gate can notice).
  auto f = encode_frame(m, 1);
  f.metadata.push_back(0);
  FrameHeader h;
  decode_header(f.header.data(), {}, h);
  h.metadata_len += 1;
  f.header = encode_header(h);
  auto t = whole(f);
  Message out;
  std::string why;
  EXPECT_EQ(decode_frame_bytes(t.data(), t.size(), {}, out, &why), make_error_code(Errc::malformed_metadata));
  EXPECT_NE(why.find("trailing"), std::string::npos);
}

TEST(LinkShaper, TokenBucketArithmetic) {
  using C = LinkShaper::Clock;
  LinkOptions o;
  o.rate_bits_per_s = 8e6;  // 1 MB/s
  o.burst_bytes = 1000;
  o.latency = std::chrono::milliseconds(20);
  LinkShaper s(o);
  auto t0 = C::now();
  // The first burst goes at once (plus latency).
  EXPECT_EQ(s.schedule(1000, t0), t0 + std::chrono::milliseconds(20));
  // Back to back: 1 MB more takes 1 s of link time.
  auto t = s.schedule(1000000, t0);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t - t0).count();
  EXPECT_NEAR(ms, 1000 + 20, 2);
  // After a long idle the bucket refills only to its depth.
  auto later = t0 + std::chrono::seconds(10);
  EXPECT_EQ(s.schedule(1000, later), later + std::chrono::milliseconds(20));
  LinkShaper off;
  EXPECT_FALSE(off.enabled());
}

TEST(BandwidthEstimator, SmoothsSamples) {
  BandwidthEstimator e(0.5);
  EXPECT_EQ(e.bytes_per_second(), 0);
  e.record(1000, 1.0);
  EXPECT_DOUBLE_EQ(e.bytes_per_second(), 1000);
  e.record(3000, 1.0);
  EXPECT_DOUBLE_EQ(e.bytes_per_second(), 2000);
  EXPECT_DOUBLE_EQ(e.bits_per_second(), 16000);
  e.record(5, 0.0);  // ignored
  EXPECT_EQ(e.samples(), 2u);
}

}  // namespace
}  // namespace seam::transport
