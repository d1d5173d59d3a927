#include <gtest/gtest.h>

#include <asio.hpp>
#include <thread>

#include "byte_order.hpp"
#include "seam/transport/frame.hpp"

namespace st = seam::transport;

TEST(FrameHeader, RoundTripsAllFields) {
  st::FrameHeader h;
  h.type = 7;
  h.flags = 0x0102;
  h.metadata_len = 1234;
  h.payload_len = 0x01020304ull;
  h.request_id = 0xDEADBEEFCAFEull;
  auto bytes = st::encode_header(h);
  static_assert(sizeof(bytes) == st::kFrameHeaderSize);
  st::FrameHeader back;
  ASSERT_EQ(st::decode_header(bytes.data(), {}, back), st::FrameStatus::ok);
  EXPECT_EQ(back.type, 7);
  EXPECT_EQ(back.flags, 0x0102);
  EXPECT_EQ(back.metadata_len, 1234u);
  EXPECT_EQ(back.payload_len, 0x01020304ull);
  EXPECT_EQ(back.request_id, 0xDEADBEEFCAFEull);
}

TEST(FrameHeader, IsLittleEndianOnTheWire) {
  st::FrameHeader h;
  h.payload_len = 0x0807060504030201ull;
  auto b = st::encode_header(h);
  EXPECT_EQ(b[0], 'S');
  EXPECT_EQ(b[1], 'E');
  EXPECT_EQ(b[2], 'A');
  EXPECT_EQ(b[3], 'M');
  for (int i = 0; i < 8; ++i) EXPECT_EQ(b[16 + i], i + 1);
}

TEST(FrameHeader, RejectsBadMagicVersionAndOversizedLengths) {
  st::FrameHeader h;
  st::FrameLimits lim;
  lim.max_metadata = 100;
  lim.max_payload = 1000;
  st::FrameHeader out;

  auto b = st::encode_header(h);
  b[0] ^= 0xFF;
  EXPECT_EQ(st::decode_header(b.data(), lim, out), st::FrameStatus::bad_magic);

  h.major = st::kProtocolMajor + 1;
  b = st::encode_header(h);
  EXPECT_EQ(st::decode_header(b.data(), lim, out), st::FrameStatus::major_mismatch);

  h = {};
  h.metadata_len = 101;
  b = st::encode_header(h);
  EXPECT_EQ(st::decode_header(b.data(), lim, out), st::FrameStatus::metadata_too_large);

  h = {};
  h.payload_len = ~0ull;
  b = st::encode_header(h);
  EXPECT_EQ(st::decode_header(b.data(), lim, out), st::FrameStatus::payload_too_large);
}

// Smoke test of the Asio build: a header and body cross a real TCP socket on
// 127.0.0.1 and come back intact.
TEST(AsioSmoke, TcpRoundTripOnLoopback) {
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  const auto port = acceptor.local_endpoint().port();

  std::thread echo([&] {
    asio::ip::tcp::socket s(io);
    acceptor.accept(s);
    st::FrameHeaderBytes hb;
    asio::read(s, asio::buffer(hb));
    st::FrameHeader h;
    ASSERT_EQ(st::decode_header(hb.data(), {}, h), st::FrameStatus::ok);
    std::vector<std::uint8_t> body(h.payload_len);
    asio::read(s, asio::buffer(body));
    h.request_id += 1;  // reply to the request
    auto out = st::encode_header(h);
    asio::write(s, asio::buffer(out));
    asio::write(s, asio::buffer(body));
  });

  asio::ip::tcp::socket c(io);
  c.connect({asio::ip::make_address("127.0.0.1"), port});
  std::vector<std::uint8_t> payload(100000);
  for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<std::uint8_t>(i * 31);
  st::FrameHeader h;
  h.payload_len = payload.size();
  h.request_id = 41;
  auto hb = st::encode_header(h);
  asio::write(c, asio::buffer(hb));
  asio::write(c, asio::buffer(payload));

  st::FrameHeaderBytes rb;
  asio::read(c, asio::buffer(rb));
  st::FrameHeader r;
  ASSERT_EQ(st::decode_header(rb.data(), {}, r), st::FrameStatus::ok);
  EXPECT_EQ(r.request_id, 42u);
  std::vector<std::uint8_t> back(r.payload_len);
  asio::read(c, asio::buffer(back));
  EXPECT_EQ(back, payload);
  echo.join();
}
