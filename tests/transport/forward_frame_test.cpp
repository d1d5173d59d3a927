// The compact Forward body: a golden frame that pins the wire layout and its
// byte breakdown, round trips of every form, and the gate's refusals of
// malformed compact fields, each by name.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "seam/transport/errors.hpp"
#include "seam/transport/message.hpp"

namespace seam::transport {
namespace {

Message forward_of(Forward f, std::vector<std::uint8_t> tensor = {9, 9, 9}) {
  Message m;
  m.body = std::move(f);
  Section s;
  s.info.name = "activations";
  s.info.dtype = WireDType::u8;
  s.info.shape = {static_cast<std::int64_t>(tensor.size())};
  s.bytes = std::move(tensor);
  m.sections.push_back(std::move(s));
  return m;
}

Forward decode_forward(const Message& m) {
  auto bytes = encode_frame(m, 1).to_bytes();
  Message out;
  std::string why;
  EXPECT_FALSE(decode_frame_bytes(bytes.data(), bytes.size(), {}, out, &why)) << why;
  const auto* f = out.as<Forward>();
  return f ? *f : Forward{};
}

TEST(ForwardFrame, GoldenBytesAndBreakdown) {
  Forward f;
  f.step_id = 5;
  f.sample_ids = {7, 3};
  f.batch = 2;
  f.labels = {1, 2};
  f.mask = {MaskKind::lengths, 4, {3, 1}, {}};
  const Message msg = forward_of(f);  // the frame references its section bytes
  const auto enc = encode_frame(msg, 9);
  const std::vector<std::uint8_t> golden = {
      // header: "SEAM", major 3, minor, type 3 (forward), flags 0, metadata 33, payload 3, request 9
      0x53, 0x45, 0x41, 0x4D, 0x03, 0x00, kProtocolMinor, 0x00, 0x03, 0x00, 0x00, 0x00, 0x21, 0x00, 0x00, 0x00,  //
      0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  //
      0x01,                                                                    // cereal: little endian
      0x01,                                                                    // one section
      0x0B, 'a', 'c', 't', 'i', 'v', 'a', 't', 'i', 'o', 'n', 's', 0x00, 0x01, 0x03, 0x00,  // u8 [3], raw
      0x05, 0x02,                                                              // step 5, batch 2
      0x02, 0x06, 0x03, 0x04,              // 2 ids: base 3 (zigzag 6), 3 bits: 4, 0
      0x00, 0x02, 0x01, 0x02,              // labels [B]: base 1, 1 bit: 0, 1
      0x01, 0x04, 0x02, 0x02, 0x02,        // mask lengths, L 4: base 1, 2 bits: 2, 0
      0x09, 0x09, 0x09};                   // the tensor section
  EXPECT_EQ(enc.to_bytes(), golden);
  EXPECT_EQ(enc.bytes.header, 32u);
  EXPECT_EQ(enc.bytes.ids, 4u);
  EXPECT_EQ(enc.bytes.labels, 4u);
  EXPECT_EQ(enc.bytes.mask, 5u);
  EXPECT_EQ(enc.bytes.metadata, 20u);
  EXPECT_EQ(enc.bytes.sections, 3u);
  EXPECT_EQ(enc.bytes.total(), golden.size());
  EXPECT_EQ(decode_forward(forward_of(f)), f);
}

TEST(ForwardFrame, EveryFormRoundTrips) {
  Forward f;
  f.step_id = 1ull << 40;
  f.batch = 3;
  f.sample_ids = {-5, 1ll << 40, 0};
  f.label_len = 4;
  f.labels = {-100, 7, -100, 30521, 0, 0, 0, 0, -100, -100, -100, -100};
  f.mask = {MaskKind::bitmap, 4, {}, {0xB5, 0x0A}};  // 12 bits used of 16
  EXPECT_EQ(decode_forward(forward_of(f)), f);
  f.mask = {MaskKind::lengths, 4, {4, 4, 4}, {}};  // width 0: no bytes at all
  EXPECT_EQ(decode_forward(forward_of(f)), f);
  EXPECT_EQ(encode_frame(forward_of(f), 1).bytes.mask, 4u);  // kind, L, base, width
  f.mask = {};
  f.sample_ids.clear();
  f.labels.assign(12, std::numeric_limits<std::int64_t>::min());
  f.labels[5] = std::numeric_limits<std::int64_t>::max();  // the widest range: 64 bits
  EXPECT_EQ(decode_forward(forward_of(f)), f);
}

TEST(ForwardFrame, SenderRefusesWhatCannotTravel) {
  Forward f;
  f.batch = 2;
  f.labels = {1};  // [B] needs 2
  EXPECT_THROW(encode_frame(forward_of(f), 1), TransportError);
  f.labels = {1, 2};
  f.mask = {MaskKind::bitmap, 9, {}, {0, 0}};  // 2 x 9 bits need 3 bytes
  EXPECT_THROW(encode_frame(forward_of(f), 1), TransportError);
}

// Hand-written Forward metadata (no sections), for refusals the sender's own
// encoder would never produce.
struct Meta {
  std::vector<std::uint8_t> b{0x01, 0x00};  // cereal endianness flag, no sections
  Meta& v(std::uint64_t x) {
    do {
      std::uint8_t c = x & 0x7f;
      x >>= 7;
      b.push_back(static_cast<std::uint8_t>(c | (x ? 0x80 : 0)));
    } while (x);
    return *this;
  }
  Meta& u8(std::vector<std::uint8_t> bytes) {
    b.insert(b.end(), bytes.begin(), bytes.end());
    return *this;
  }
};

// Decodes a Forward frame of this metadata; returns the gate's verdict.
std::error_code gate(const Meta& m, std::string& why) {
  FrameHeader h;
  h.type = static_cast<std::uint16_t>(MessageType::forward);
  h.metadata_len = static_cast<std::uint32_t>(m.b.size());
  auto hb = encode_header(h);
  std::vector<std::uint8_t> frame(hb.begin(), hb.end());
  frame.insert(frame.end(), m.b.begin(), m.b.end());
  Message out;
  return decode_frame_bytes(frame.data(), frame.size(), {}, out, &why);
}

std::string refusal(const Meta& m) {
  std::string why;
  EXPECT_EQ(gate(m, why), make_error_code(Errc::malformed_metadata));
  return why;
}

// Step 1, batch 2, no ids, labels [0, 0] (base 0, width 0).
Meta head() { return Meta().v(1).v(2).v(0).v(0).v(0).u8({0}); }

TEST(ForwardFrame, GateRefusesMalformedCompactFieldsByName) {
  // The well-formed base case decodes.
  std::string why;
  EXPECT_FALSE(gate(head().u8({0}), why)) << why;
  auto expect = [](const Meta& m, const std::string& text) {
    const auto text_of = refusal(m);
    EXPECT_NE(text_of.find(text), std::string::npos) << text_of;
  };
  // A length greater than L: lengths 5 and 0 in 3 bits, L = 4.
  expect(head().u8({1}).v(4).v(0).u8({3, 0x05}), "forward: mask: length 5 of sample 0 is outside [0, L=4]");
  // A short bitmap: 2 x 9 bits need 3 bytes.
  expect(head().u8({2}).v(9).u8({0xFF, 0x01}), "forward: mask bitmap: needs 3 bytes, 2 remain");
  // Bits set past B x L.
  expect(head().u8({2}).v(3).u8({0x40}), "forward: mask: nonzero padding bits");
  expect(head().u8({3}), "forward: mask: unknown kind 3");
  // Duplicate ids: 7 and 7 (base 7, width 0).
  expect(Meta().v(1).v(2).v(2).v(14).u8({0}), "forward: sample id 7 appears twice in one batch");
  expect(Meta().v(1).v(2).v(1), "forward: 1 sample ids for a batch of 2 (send all or none)");
  expect(Meta().v(1).v(0), "forward: batch of 0; a batch has 1..65536 samples");
  expect(Meta().v(1).v(65537), "forward: batch of 65537");
  // Non-canonical packing: a width wider than needed, a base above the minimum, padding bits.
  expect(Meta().v(1).v(2).v(0).v(0).v(0).u8({2, 0x04}), "forward: labels: bit width is not the fewest");
  expect(Meta().v(1).v(2).v(0).v(0).v(2).u8({1, 0x03}), "forward: labels: base is not the smallest value");
  expect(Meta().v(1).v(2).v(0).v(0).v(0).u8({1, 0x82}), "forward: labels: nonzero padding bits");
  expect(Meta().v(1).v(2).v(0).v(0).v(0).u8({65}), "forward: labels: bit width 65 > 64");
  // Token labels [2, 3] with a mask of L 4.
  expect(Meta().v(1).v(2).v(0).v(3).v(0).u8({0}).u8({1}).v(4), "forward: mask: L 4 differs from the labels' L 3");
  expect(Meta().v(1).v(65536).v(0).v(65536), "forward: labels: 4294967296 values, more than the limit");
  // A varint with a redundant continuation byte.
  expect(Meta().u8({0x81, 0x00}), "varint is not minimal");
}

}  // namespace
}  // namespace seam::transport
