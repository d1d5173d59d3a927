#pragma once
// Reading one frame from any byte stream: header, limit check (before anything
// is sized), metadata + payload, then the decode gate. Shared by the server
// session and the client, and driven by an in-memory stream in the tests.
#include <algorithm>
#include <array>
#include <asio/buffer.hpp>
#include <memory>
#include <string>
#include <system_error>

#include "seam/transport/errors.hpp"
#include "seam/transport/message.hpp"

namespace seam::transport::detail {

struct IncomingFrame {
  FrameHeaderBytes header_bytes{};
  FrameHeader header;
  std::vector<std::uint8_t> metadata, payload;
};

inline Errc header_errc(FrameStatus s) {
  switch (s) {
    case FrameStatus::bad_magic: return Errc::bad_magic;
    case FrameStatus::major_mismatch: return Errc::version_mismatch;
    case FrameStatus::metadata_too_large: return Errc::metadata_too_large;
    case FrameStatus::payload_too_large: return Errc::payload_too_large;
    case FrameStatus::ok: break;
  }
  return Errc::ok;
}

// The payload is read a step at a time into memory reserved up front but
// touched only as bytes arrive: a header may declare up to max_payload, yet a
// peer that then sends slowly (or not at all) holds no more memory than it
// has sent, plus one step.
inline constexpr std::size_t kPayloadStep = std::size_t{1} << 20;

template <class Read, class Done>
void read_payload(Read read, std::shared_ptr<IncomingFrame> f, Done done) {
  const std::size_t have = f->payload.size(), total = static_cast<std::size_t>(f->header.payload_len);
  if (have == total) {
    Message m;
    std::string why;
    auto gate = decode_frame(f->header, f->metadata.data(), f->metadata.size(), std::move(f->payload), m, &why);
    return done(gate, std::move(m), why);
  }
  const std::size_t step = std::min(kPayloadStep, total - have);
  f->payload.resize(have + step);  // within the reserved capacity: no copy
  read(asio::buffer(f->payload.data() + have, step), [read, f, done](std::error_code ec, std::size_t) mutable {
    if (ec) return done(make_error_code(Errc::connection_closed), Message{}, ec.message());
    read_payload(read, f, done);
  });
}

// read(buffers, handler): an async "read exactly these buffers" (asio::async_read
// on some stream). on_header(header): called once a valid header is in (e.g. to
// switch from the idle timeout to the frame's). done(ec, message, why): ec is
// connection_closed for a stream error, or the gate's code.
template <class Read, class OnHeader, class Done>
void async_read_frame(Read read, const FrameLimits& limits, OnHeader on_header, Done done) {
  auto f = std::make_shared<IncomingFrame>();
  read(asio::buffer(f->header_bytes), [read, limits, on_header, done, f](std::error_code ec, std::size_t) mutable {
    if (ec) return done(make_error_code(Errc::connection_closed), Message{}, ec.message());
    auto st = decode_header(f->header_bytes.data(), limits, f->header);
    if (st != FrameStatus::ok) return done(make_error_code(header_errc(st)), Message{}, std::string(to_string(st)));
    on_header(static_cast<const FrameHeader&>(f->header));
    f->metadata.resize(f->header.metadata_len);  // bounded by the limits just checked
    f->payload.reserve(static_cast<std::size_t>(f->header.payload_len));
    read(asio::buffer(f->metadata), [read, done, f](std::error_code ec2, std::size_t) mutable {
      if (ec2) return done(make_error_code(Errc::connection_closed), Message{}, ec2.message());
      read_payload(read, f, done);
    });
  });
}

}  // namespace seam::transport::detail
