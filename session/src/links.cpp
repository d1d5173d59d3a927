#include "seam/session/links.hpp"

#include "seam/transport/errors.hpp"

namespace seam::session {

namespace t = seam::training;
namespace st = seam::transport;

namespace {

StepSpec codecs_of(const st::Hello& h) {
  StepSpec s;
  s.up_codec = h.up_codec;
  s.down_codec = h.down_codec;
  s.send_ids = codec_needs_ids(h.up_codec);
  return s;
}

// Counts one frame into a direction's totals.
void count(const st::EncodedFrame& f, std::uint64_t& bytes, t::ByteBreakdown& by) {
  bytes += f.total_bytes();
  by += t::ByteBreakdown{f.bytes.header, f.bytes.metadata, f.bytes.sections, f.bytes.ids, f.bytes.labels, f.bytes.mask};
}

template <class T>
const T& expect(const st::Message& m, const char* what) {
  throw_if_error(m);
  const T* p = m.as<T>();
  if (!p) throw SessionError(SessionErrc::bad_field, std::string("expected ") + what + ", got " + st::to_string(m.type()));
  return *p;
}

// An Error reply with a session code becomes SessionError; the transport's
// own failures (retries exhausted, TLS refused) stay TransportError.
[[noreturn]] void rethrow(const st::TransportError& e) {
  if (e.peer_code() >= 1000) {
    st::Message em;
    em.body = st::ErrorInfo{e.peer_code(), e.peer_text()};
    throw_if_error(em);
  }
  throw e;
}

st::Message checkpoint_message(std::uint64_t step) {
  st::Message m;
  m.body = st::Checkpoint{step, ""};
  return m;
}

}  // namespace

// ---------------------------------------------------------------- in-process

st::Message InProcessLink::round_trip(const st::Message& m) {
  const std::uint64_t id = ++stats_.exchanges;
  auto frame = [&](const st::Message& in, std::uint64_t& counter, t::ByteBreakdown& by) {
    auto encoded = st::encode_frame(in, id);
    count(encoded, counter, by);
    auto bytes = encoded.to_bytes();
    st::Message out;
    std::string why;
    if (auto ec = st::decode_frame_bytes(bytes.data(), bytes.size(), st::FrameLimits{}, out, &why))
      throw SessionError(SessionErrc::bad_field, "in-process link: frame does not decode: " + why);
    return out;
  };
  st::Message in = frame(m, stats_.bytes_up, stats_.up);
  return frame(cloud_.handle(in), stats_.bytes_down, stats_.down);
}

t::StepReply InProcessLink::exchange(const t::StepRequest& r) {
  return parse_backward(round_trip(forward_message(r, spec_)), spec_, r.step);
}

st::Welcome InProcessLink::hello(const st::Hello& h) {
  spec_ = codecs_of(h);
  st::Message m;
  m.body = h;
  return expect<st::Welcome>(round_trip(m), "welcome");
}

st::CheckpointAck InProcessLink::checkpoint(std::uint64_t step) {
  return expect<st::CheckpointAck>(round_trip(checkpoint_message(step)), "checkpoint ack");
}

at::Tensor InProcessLink::infer(const InferRequest& r) { return parse_infer_reply(round_trip(infer_message(r)), r); }

st::Message InProcessLink::fetch(const st::Fetch& f) {
  st::Message m;
  m.body = f;
  return round_trip(m);
}

// ---------------------------------------------------------------- TLS

TlsLink::TlsLink(st::ClientOptions o) : client_(std::make_unique<st::Client>(std::move(o))) {}
TlsLink::~TlsLink() = default;
st::Client& TlsLink::client() { return *client_; }
t::LinkStats TlsLink::stats() const { return stats_; }

st::Message TlsLink::request(st::Message m) {
  count(st::encode_frame(m, 0), stats_.bytes_up, stats_.up);
  ++stats_.exchanges;
  st::Message r;
  try {
    r = client_->request(std::move(m));
  } catch (const st::TransportError& e) {
    rethrow(e);
  }
  count(st::encode_frame(r, 0), stats_.bytes_down, stats_.down);
  return r;
}

t::StepReply TlsLink::exchange(const t::StepRequest& r) {
  if (hello_) {  // a reconnect inside the client re-sends Hello with the current step
    hello_->resume_step = r.step;
    client_->update_hello(*hello_);
  }
  return parse_backward(request(forward_message(r, spec_)), spec_, r.step);
}

st::Welcome TlsLink::hello(const st::Hello& h) {
  hello_ = h;
  spec_ = codecs_of(h);
  st::Message hm, wm;
  hm.body = h;
  try {
    wm.body = client_->connect(h);
  } catch (const st::TransportError& e) {
    rethrow(e);
  }
  // Counted like every other exchange (the in-process link's too); Hellos
  // that automatic reconnects re-send are the client's and not counted.
  ++stats_.exchanges;
  count(st::encode_frame(hm, 0), stats_.bytes_up, stats_.up);
  count(st::encode_frame(wm, 0), stats_.bytes_down, stats_.down);
  return std::get<st::Welcome>(wm.body);
}

at::Tensor TlsLink::infer(const InferRequest& r) { return parse_infer_reply(request(infer_message(r)), r); }

st::Message TlsLink::fetch(const st::Fetch& f) {
  st::Message m;
  m.body = f;
  return request(std::move(m));
}

st::CheckpointAck TlsLink::checkpoint(std::uint64_t step) {
  if (hello_) {
    hello_->resume_step = step;
    client_->update_hello(*hello_);
  }
  return expect<st::CheckpointAck>(request(checkpoint_message(step)), "checkpoint ack");
}

}  // namespace seam::session
