// The frame reader the server and client share, driven by an in-memory stream
// that delivers one byte (or a random number of bytes) per read.
#include <gtest/gtest.h>

#include <asio.hpp>
#include <functional>
#include <random>

#include "byte_order.hpp"
#include "frame_io.hpp"

namespace seam::transport {
namespace {

// A minimal AsyncReadStream over a byte vector; `chunk()` says how many bytes
// the next read_some may deliver at most.
class TrickleStream {
 public:
  using executor_type = asio::io_context::executor_type;
  TrickleStream(asio::io_context& io, std::vector<std::uint8_t> data, std::function<std::size_t()> chunk)
      : io_(io), data_(std::move(data)), chunk_(std::move(chunk)) {}
  executor_type get_executor() { return io_.get_executor(); }
  template <class Buffers, class Handler>
  void async_read_some(const Buffers& b, Handler&& h) {
    std::size_t n = std::min({chunk_(), data_.size() - pos_, asio::buffer_size(b)});
    asio::buffer_copy(b, asio::buffer(data_.data() + pos_, n));
    pos_ += n;
    ++reads_;
    const bool eof = n == 0 && asio::buffer_size(b) > 0;
    asio::post(io_, [h = std::forward<Handler>(h), n, eof]() mutable {
      h(eof ? std::error_code(asio::error::eof) : std::error_code{}, n);
    });
  }
  std::size_t consumed() const { return pos_; }
  std::size_t reads() const { return reads_; }

 private:
  asio::io_context& io_;
  std::vector<std::uint8_t> data_;
  std::function<std::size_t()> chunk_;
  std::size_t pos_ = 0, reads_ = 0;
};

std::vector<std::uint8_t> frame(std::uint64_t id, std::size_t payload) {
  Message m;
  m.body = Forward{id, {7, 8, 9}, 3, 0, {0, 0, 0}, {}};
  Section s;
  s.info.name = "a";
  s.info.shape = {static_cast<std::int64_t>(payload)};
  for (std::size_t i = 0; i < payload; ++i) s.bytes.push_back(static_cast<std::uint8_t>(i * 13 + id));
  m.sections.push_back(s);
  return encode_frame(m, id).to_bytes();
}

struct Result {
  std::error_code ec;
  Message m;
  std::string why;
  bool done = false;
};

Result read_one(asio::io_context& io, TrickleStream& s, const FrameLimits& lim = {}) {
  Result r;
  detail::async_read_frame([&s](auto b, auto h) { asio::async_read(s, b, std::move(h)); }, lim, [](const FrameHeader&) {},
                           [&](std::error_code ec, Message m, const std::string& why) {
                             r = {ec, std::move(m), why, true};
                           });
  io.restart();
  io.run();
  return r;
}

TEST(FrameIo, OneByteAtATimeAcrossTwoFrames) {
  asio::io_context io;
  auto a = frame(1, 300), b = frame(2, 5);
  auto both = a;
  both.insert(both.end(), b.begin(), b.end());
  TrickleStream s(io, both, [] { return std::size_t{1}; });
  auto r1 = read_one(io, s);
  ASSERT_TRUE(r1.done);
  ASSERT_FALSE(r1.ec) << r1.why;
  EXPECT_EQ(r1.m.request_id, 1u);
  EXPECT_EQ(r1.m.sections[0].bytes.size(), 300u);
  EXPECT_EQ(r1.m.sections[0].bytes[299], static_cast<std::uint8_t>(299 * 13 + 1));
  EXPECT_EQ(s.consumed(), a.size());  // never reads into the next frame
  auto r2 = read_one(io, s);
  ASSERT_FALSE(r2.ec) << r2.why;
  EXPECT_EQ(r2.m.as<Forward>()->sample_ids, (std::vector<std::int64_t>{7, 8, 9}));
  EXPECT_GE(s.reads(), both.size());  // really one byte per read
}

TEST(FrameIo, RandomChunkSizes) {
  std::mt19937 rng(11);
  for (int trial = 0; trial < 50; ++trial) {
    asio::io_context io;
    auto f = frame(trial, rng() % 5000);
    TrickleStream s(io, f, [&] { return std::size_t{1 + rng() % 97}; });
    auto r = read_one(io, s);
    ASSERT_FALSE(r.ec) << r.why;
    EXPECT_EQ(r.m.request_id, static_cast<std::uint64_t>(trial));
  }
}

TEST(FrameIo, PayloadsOverOneReadStepArriveWhole) {
  std::mt19937 rng(3);
  for (std::size_t payload : {detail::kPayloadStep - 1, detail::kPayloadStep, 2 * detail::kPayloadStep + 77}) {
    asio::io_context io;
    auto f = frame(5, payload);
    TrickleStream s(io, f, [&] { return std::size_t{1 + rng() % 200000}; });
    auto r = read_one(io, s);
    ASSERT_FALSE(r.ec) << r.why;
    ASSERT_EQ(r.m.sections[0].bytes.size(), payload);
    EXPECT_EQ(r.m.sections[0].bytes[payload - 1], static_cast<std::uint8_t>((payload - 1) * 13 + 5));
    EXPECT_EQ(s.consumed(), f.size());
  }
}

TEST(FrameIo, TruncatedStreamIsAClosedConnection) {
  auto f = frame(1, 100);
  for (std::size_t cut : {std::size_t{0}, std::size_t{5}, std::size_t{31}, std::size_t{32}, f.size() - 1}) {
    asio::io_context io;
    TrickleStream s(io, std::vector<std::uint8_t>(f.begin(), f.begin() + cut), [] { return std::size_t{3}; });
    auto r = read_one(io, s);
    EXPECT_EQ(r.ec, make_error_code(Errc::connection_closed)) << cut;
  }
}

TEST(FrameIo, OversizedLengthIsRefusedBeforeTheBodyIsRead) {
  auto f = frame(1, 100);
  detail::store_le64(f.data() + 16, std::uint64_t{1} << 50);
  asio::io_context io;
  TrickleStream s(io, f, [] { return std::size_t{1}; });
  auto r = read_one(io, s);
  EXPECT_EQ(r.ec, make_error_code(Errc::payload_too_large));
  EXPECT_EQ(s.consumed(), kFrameHeaderSize);
}

TEST(FrameIo, GateErrorsComeThrough) {
  auto f = frame(1, 10);
  detail::store_le16(f.data() + 8, 77);
  asio::io_context io;
  TrickleStream s(io, f, [] { return std::size_t{1}; });
  EXPECT_EQ(read_one(io, s).ec, make_error_code(Errc::unknown_message_type));
}

}  // namespace
}  // namespace seam::transport
