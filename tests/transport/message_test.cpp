// The decode gate on hand-made bytes, and the shaper/estimator arithmetic.
#include <gtest/gtest.h>

#include <cereal/archives/portable_binary.hpp>
#include <sstream>

#include "byte_order.hpp"
#include "seam/transport/errors.hpp"
#include "seam/transport/message.hpp"
#include "seam/transport/shaper.hpp"

namespace seam::transport {
namespace {

std::vector<std::uint8_t> whole(const EncodedFrame& f) { return f.to_bytes(); }

TEST(DecodeGate, EveryMessageTypeRoundTrips) {
  std::vector<Body> bodies = {Hello{1, 0, 1, "edge", "job", "delta:bits=4", "quant:bits=8", 42, "fp", 9, 3},
                              Welcome{1, 0, "srv", "sess", 7, true},
                              Forward{3, {1, 2}, {0, 1}},
                              Backward{3, 0.5, {{"acc", 0.9}}},
                              Infer{4},
                              InferReply{4},
                              Checkpoint{5, "tag"},
                              CheckpointAck{5, "/x"},
                              Ping{6},
                              Pong{6},
                              ErrorInfo{1000, "bad"},
                              Goodbye{"bye"}};
  for (auto& b : bodies) {
    Message m;
    m.body = b;
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
    EXPECT_EQ(out.sections[0].info.shape, (std::vector<std::int64_t>{2, 3}));
  }
  Message m;
  m.body = Hello{1, 0, 1, "edge", "job", "delta:bits=4", "quant:bits=8", 42, "fp", 9, 3};
  auto bytes = whole(encode_frame(m, 1));
  Message out;
  ASSERT_FALSE(decode_frame_bytes(bytes.data(), bytes.size(), {}, out));
  EXPECT_EQ(out.as<Hello>()->down_codec, "quant:bits=8");
  EXPECT_EQ(out.as<Hello>()->session_nonce, 9u);
}

TEST(DecodeGate, ForgedContainerLengthIsRefusedWithoutAllocating) {
  // Metadata claiming a 2^60-byte string: the gate refuses it from the metadata size.
  std::ostringstream os(std::ios::binary);
  {
    cereal::PortableBinaryOutputArchive ar(os);
    ar(std::uint32_t{0});             // no sections
    ar(std::uint64_t{1} << 60);       // Goodbye.reason length
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
  m.body = Forward{1, {1, 2, 3}, {4, 5, 6}};
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
