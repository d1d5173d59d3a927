// The channel over plain TCP and TLS on loopback: one shared suite, then TLS
// specifics, bad input, concurrency, retries and shutdown.
#include <algorithm>
#include <asio/ssl.hpp>
#include <chrono>
#include <functional>
#include <future>
#include <initializer_list>
#include <mutex>
#include <random>

#include "byte_order.hpp"
#include "progress_watch.hpp"
#include "seam/transport/message.hpp"
#include "transport_test_util.hpp"

namespace seam::transport {
namespace {

using namespace test;

std::vector<std::uint8_t> frame_bytes(const Message& m, std::uint64_t id = 1) { return encode_frame(m, id).to_bytes(); }

// A raw plaintext TCP peer for hand-made bytes. Every read has a deadline, so a
// server that never answers fails the test instead of hanging it.
class RawPeer {
 public:
  explicit RawPeer(std::uint16_t port) : socket_(io_) {
    socket_.connect({asio::ip::make_address("127.0.0.1"), port});
    socket_.set_option(asio::ip::tcp::no_delay(true));
  }
  void send(const std::uint8_t* data, std::size_t n) { asio::write(socket_, asio::buffer(data, n)); }
  void send(const std::vector<std::uint8_t>& b) { send(b.data(), b.size()); }
  void half_close() { socket_.shutdown(asio::ip::tcp::socket::shutdown_send); }
  // Whether the server has closed this connection (end of stream or a reset),
  // without blocking; bytes that arrived instead are dropped.
  bool closed_by_peer() {
    socket_.non_blocking(true);
    std::array<std::uint8_t, 256> buf;
    std::error_code ec;
    socket_.read_some(asio::buffer(buf), ec);
    socket_.non_blocking(false);
    return ec == asio::error::eof || ec == asio::error::connection_reset;
  }

  // Appends to `into` until it holds `want` bytes, the peer closes, or 10 s
  // pass. Returns what stopped it: nothing (`want` reached), the stream's
  // error (eof or reset: the peer closed), or timed_out.
  std::error_code read(std::vector<std::uint8_t>& into, std::size_t want = SIZE_MAX) {
    std::error_code end = asio::error::timed_out;
    bool finished = false;
    std::array<std::uint8_t, 4096> buf;
    std::function<void()> more = [&] {
      if (into.size() >= want) {
        end = {};
        finished = true;
        return;
      }
      socket_.async_read_some(asio::buffer(buf.data(), std::min(buf.size(), want - into.size())),
                              [&](std::error_code ec, std::size_t n) {
                                into.insert(into.end(), buf.begin(), buf.begin() + n);
                                if (!ec) return more();
                                end = ec;
                                finished = true;
                              });
    };
    more();
    io_.restart();
    io_.run_for(std::chrono::seconds(10));
    if (!finished) {  // deadline: cancel the read and let its handler run here
      socket_.cancel();
      io_.restart();
      io_.run();
      return asio::error::timed_out;
    }
    return end;
  }

  // Reads one whole frame and decodes it; false (with a test failure) if it
  // does not arrive or does not decode.
  bool read_frame(Message& out) {
    std::vector<std::uint8_t> b;
    if (auto ec = read(b, kFrameHeaderSize)) {
      ADD_FAILURE() << "no reply header: " << ec.message();
      return false;
    }
    FrameHeader h;
    if (decode_header(b.data(), {}, h) != FrameStatus::ok) {
      ADD_FAILURE() << "bad reply header";
      return false;
    }
    if (auto ec = read(b, kFrameHeaderSize + h.metadata_len + h.payload_len)) {
      ADD_FAILURE() << "reply body cut short: " << ec.message();
      return false;
    }
    std::string why;
    if (auto ec = decode_frame_bytes(b.data(), b.size(), {}, out, &why)) {
      ADD_FAILURE() << "reply does not decode: " << why;
      return false;
    }
    return true;
  }

  // Sends one frame and returns the reply; a Goodbye when none came (the
  // failure is already recorded).
  Message exchange(const Message& m, std::uint64_t id) {
    send(frame_bytes(m, id));
    Message r;
    if (!read_frame(r)) r.body = Goodbye{"no reply"};
    return r;
  }

 private:
  asio::io_context io_;
  asio::ip::tcp::socket socket_;
};

class ChannelSuite : public ::testing::TestWithParam<bool> {  // true = TLS
 protected:
  TlsOptions srv_tls() const { return GetParam() ? server_tls() : plaintext(); }
  TlsOptions cli_tls() const { return GetParam() ? client_tls() : plaintext(); }
};

TEST_P(ChannelSuite, RequestReplyCarriesSectionsIntact) {
  ServerOptions so;
  so.tls = srv_tls();
  std::string seen_identity;
  Server server(so, [&](const PeerInfo& p, Message&& m) {
    seen_identity = p.identity;
    return echo(p, std::move(m));
  });
  server.start();
  Client c(client_options(server.port(), cli_tls()));
  // Sizes around one TLS record (16 KiB), beyond the TLS stream's 128 KiB
  // ring, and odd; random bytes, so any reordering or loss shows.
  const std::size_t sizes[] = {1 << 20, 1, 16383, 16385, (3u << 20) + 7};
  std::mt19937 rng(11);
  for (std::uint64_t step = 1; step <= 5; ++step) {
    auto req = forward(step, sizes[step - 1], 0);
    for (auto& byte : req.sections[0].bytes) byte = static_cast<std::uint8_t>(rng());
    auto rep = c.request(req);
    auto* b = rep.as<Backward>();
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(b->step_id, step);
    EXPECT_EQ(b->loss, double(sizes[step - 1]));
    ASSERT_EQ(rep.sections.size(), 1u);
    EXPECT_EQ(rep.sections[0].bytes, req.sections[0].bytes);
    EXPECT_EQ(rep.sections[0].info.name, "activations");
  }
  if (GetParam()) {
    EXPECT_EQ(seen_identity, "CN=edge-1");
  } else {
    EXPECT_EQ(seen_identity.rfind("plaintext:127.0.0.1", 0), 0u) << seen_identity;
  }
  EXPECT_GT(c.bandwidth().samples(), 0u);
}

TEST_P(ChannelSuite, HandlerErrorsReachTheClientAndTheSessionContinues) {
  ServerOptions so;
  so.tls = srv_tls();
  Server server(so, [](const PeerInfo& p, Message&& m) -> Message {
    if (auto* f = m.as<Forward>(); f && f->step_id == 2) throw std::runtime_error("shape mismatch in step 2");
    return echo(p, std::move(m));
  });
  server.start();
  Client c(client_options(server.port(), cli_tls()));
  c.request(forward(1, 10));
  try {
    c.request(forward(2, 10));
    FAIL() << "expected peer error";
  } catch (const TransportError& e) {
    EXPECT_EQ(e.code(), make_error_code(Errc::peer_error));
    EXPECT_NE(std::string(e.what()).find("shape mismatch in step 2"), std::string::npos);
    EXPECT_EQ(e.peer_code(), 1000u);  // a handler's exception: the generic application code
    EXPECT_EQ(e.peer_text(), "shape mismatch in step 2");
  }
  EXPECT_NE(c.request(forward(3, 10)).as<Backward>(), nullptr);
  EXPECT_EQ(c.reconnects(), 0u);
}

TEST_P(ChannelSuite, SixtyFourConcurrentClientsAllSucceedWithBoundedMemory) {
  ServerOptions so;
  so.tls = srv_tls();
  so.max_connections = 64;
  Server server(so, echo);
  server.start();
  const std::size_t rss0 = rss_bytes();
  std::atomic<int> failures{0};
  std::vector<std::thread> ts;
  for (int i = 0; i < 64; ++i) {
    ts.emplace_back([&, i] {
      try {
        Client c(client_options(server.port(), cli_tls()));
        for (int k = 1; k <= 10; ++k) {
          auto r = c.request(forward(k, 16 * 1024, static_cast<std::uint8_t>(i)));
          if (!r.as<Backward>() || r.sections[0].bytes[0] != static_cast<std::uint8_t>(i)) ++failures;
        }
      } catch (const std::exception& e) {
        ++failures;
        ADD_FAILURE() << "client " << i << ": " << e.what();
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(failures.load(), 0);
  // 64 clients x 16 KiB in flight: a leak or unbounded queue would show as growth.
  // ASan's quarantine keeps freed memory resident, so its bound is wider.
#if defined(__SANITIZE_ADDRESS__)
  const std::size_t bound = std::size_t{512} << 20;
#else
  const std::size_t bound = std::size_t{96} << 20;
#endif
  EXPECT_LT(rss_bytes(), rss0 + bound);
}

// Raw bytes can only be hand-fed over plain TCP (TLS re-frames them into records).
TEST(ChannelFraming, FramesDeliveredOneByteAtATimeAndInRandomChunks) {
  ServerOptions so;
  so.tls = plaintext();
  Server server(so, echo);
  server.start();
  auto fw = forward(9, 300);
  auto bytes = encode_frame(fw, 77).to_bytes();
  std::mt19937 rng(5);
  for (int mode = 0; mode < 2; ++mode) {
    RawPeer peer(server.port());
    for (std::size_t off = 0; off < bytes.size();) {
      std::size_t n = mode == 0 ? 1 : std::min<std::size_t>(1 + rng() % 40, bytes.size() - off);
      peer.send(bytes.data() + off, n);
      off += n;
      if (mode == 0 && off % 64 == 0) std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    Message reply;
    ASSERT_TRUE(peer.read_frame(reply));
    EXPECT_EQ(reply.request_id, 77u);
    ASSERT_NE(reply.as<Backward>(), nullptr);
    EXPECT_EQ(reply.as<Backward>()->step_id, 9u);
    ASSERT_EQ(reply.sections.size(), 1u);
    EXPECT_EQ(reply.sections[0].bytes, fw.sections[0].bytes);
  }
}

INSTANTIATE_TEST_SUITE_P(TcpAndTls, ChannelSuite, ::testing::Values(false, true),
                         [](const auto& i) { return i.param ? std::string("tls") : std::string("tcp"); });

// ---- bad input from a raw peer, while a good client keeps being served

struct RawReply {
  bool got_error = false;
  std::uint32_t code = 0;
  std::string text;
  bool closed = false;
};

RawReply send_raw(std::uint16_t port, const std::vector<std::uint8_t>& bytes, bool half_close = false) {
  RawPeer peer(port);
  peer.send(bytes);
  if (half_close) peer.half_close();
  std::vector<std::uint8_t> all;
  const std::error_code end = peer.read(all);
  RawReply r;
  // Closed means the server really closed: end of stream, or a reset when it
  // closed with some of our bytes unread. A deadline or any other error is not.
  r.closed = end == asio::error::eof || end == asio::error::connection_reset;
  Message m;
  if (!all.empty() && !decode_frame_bytes(all.data(), all.size(), {}, m)) {
    if (auto* e = m.as<ErrorInfo>()) {
      r.got_error = true;
      r.code = e->code;
      r.text = e->text;
    }
  }
  return r;
}

TEST(ChannelBadInput, EachGetsItsErrorAndAGoodClientIsStillServed) {
  ServerOptions so;
  so.tls = plaintext();
  so.limits.max_payload = 1 << 20;
  so.io_timeout = Millis(500);
  Server server(so, echo);
  server.start();

  std::atomic<bool> done{false};
  std::atomic<int> good{0}, bad{0};
  std::thread good_client([&] {
    Client c(client_options(server.port(), plaintext()));
    for (std::uint64_t k = 1; !done; ++k) {
      try {
        auto r = c.request(forward(k, 4096));
        (r.as<Backward>() ? good : bad)++;
      } catch (...) {
        ++bad;
      }
    }
  });

  // Events, not sleeps: the good client is served before the bad input starts,
  // and again after all of it.
  auto served_beyond = [&](int n) {
    wait_until([&] { return good.load() > n || bad.load() != 0; }, std::chrono::seconds(20));
    return good.load() > n;
  };
  if (!served_beyond(0)) {
    done = true;
    good_client.join();
    FAIL() << "the good client was never served";
  }

  auto valid = frame_bytes(forward(1, 64));
  auto expect_error = [&](std::vector<std::uint8_t> bytes, Errc code, const char* what) {
    auto r = send_raw(server.port(), bytes);
    EXPECT_TRUE(r.got_error) << what;
    EXPECT_EQ(r.code, static_cast<std::uint32_t>(code)) << what << ": " << r.text;
    EXPECT_TRUE(r.closed) << what;
  };
  {
    auto b = valid;
    b[0] ^= 0xFF;
    expect_error(b, Errc::bad_magic, "wrong magic");
  }
  {
    auto b = valid;
    detail::store_le16(b.data() + 4, kProtocolMajor + 1);
    expect_error(b, Errc::version_mismatch, "wrong major version");
  }
  {
    auto b = valid;
    detail::store_le64(b.data() + 16, std::uint64_t{1} << 40);  // 1 TiB payload: refused before allocating
    expect_error(b, Errc::payload_too_large, "oversized payload length");
  }
  {
    auto b = valid;
    detail::store_le32(b.data() + 12, 0xFFFFFFFFu);
    expect_error(b, Errc::metadata_too_large, "oversized metadata length");
  }
  {
    auto b = valid;
    detail::store_le16(b.data() + 8, 999);
    expect_error(b, Errc::unknown_message_type, "unknown type");
  }
  {
    auto b = valid;
    // Claim one more payload byte than the sections describe, and send it.
    detail::store_le64(b.data() + 16, detail::load_le64(b.data() + 16) + 1);
    b.push_back(0);
    expect_error(b, Errc::section_mismatch, "sections do not add up");
  }
  {
    // Garbage: not a frame at all.
    std::vector<std::uint8_t> g(200);
    std::mt19937 rng(1);
    for (auto& x : g) x = static_cast<std::uint8_t>(rng());
    expect_error(g, Errc::bad_magic, "garbage");
  }
  {
    // Truncated: header promises more than arrives, then the peer stops sending.
    auto b = valid;
    b.resize(b.size() - 10);
    auto r = send_raw(server.port(), b, /*half_close=*/true);
    EXPECT_TRUE(r.closed);
    EXPECT_FALSE(r.got_error);
  }
  const int before = good.load();
  EXPECT_TRUE(served_beyond(before)) << "the good client was not served after the bad input";
  done = true;
  good_client.join();
  EXPECT_EQ(bad.load(), 0);
}

// ---- TLS: certificates and host names

struct TlsServer {
  ServerOptions so;
  std::unique_ptr<Server> server;
  explicit TlsServer(bool mutual = true) {
    so.tls = server_tls();
    so.tls.require_client_cert = mutual;
    so.handshake_timeout = Millis(2000);
    server = std::make_unique<Server>(so, echo);
    server->start();
  }
};

// The client's request must fail with `code`, and its message must hold one
// of `reasons` (OpenSSL's text for the alert or the verification error).
void expect_tls_refused(std::uint16_t port, TlsOptions tls, const char* what, Errc code,
                        std::initializer_list<const char*> reasons) {
  auto o = client_options(port, std::move(tls));
  o.max_attempts = 1;
  Client c(o);
  try {
    c.request(forward(1, 8));
    ADD_FAILURE() << what << ": expected a refusal";
  } catch (const TransportError& e) {
    const std::string text = e.what();
    EXPECT_EQ(e.code(), make_error_code(code)) << what << ": " << text;
    EXPECT_TRUE(std::any_of(reasons.begin(), reasons.end(),
                            [&](const char* r) { return text.find(r) != std::string::npos; }))
        << what << ": " << text;
    EXPECT_EQ(e.peer_code(), 0u) << what;
  }
}

TEST(ChannelTls, RefusesBadClientCertificatesAndWrongHostNamesButServesGoodClients) {
  TlsServer s;
  const auto port = s.server->port();
  // In TLS 1.3 the client finishes its handshake first; the server's alert
  // refusing the client certificate arrives when the client reads its reply.
  expect_tls_refused(port, client_tls(""), "no client certificate", Errc::connection_closed,
                     {"alert certificate required"});
  expect_tls_refused(port, client_tls("rogue"), "client certificate from another CA", Errc::connection_closed,
                     {"alert unknown ca"});
  expect_tls_refused(port, client_tls("expired"), "expired client certificate", Errc::connection_closed,
                     {"alert certificate expired"});
  // The client itself refuses the server during the handshake.
  auto wrong = client_tls();
  wrong.server_name = "wrong.example";
  expect_tls_refused(port, wrong, "wrong host name", Errc::tls_failure,
                     {"TLS handshake with 127.0.0.1 failed: hostname mismatch"});
  // The server sends its CA with its certificate, so the chain ends in a root
  // the client does not trust (OpenSSL 1.1 spells it without the hyphen).
  auto other_ca = client_tls();
  other_ca.ca_file = pki("other-ca.pem");
  expect_tls_refused(port, other_ca, "server not signed by the trusted CA", Errc::tls_failure,
                     {"TLS handshake with 127.0.0.1 failed: self-signed certificate in certificate chain",
                      "TLS handshake with 127.0.0.1 failed: self signed certificate in certificate chain",
                      "TLS handshake with 127.0.0.1 failed: unable to get local issuer certificate"});
  Client good(client_options(port, client_tls()));
  EXPECT_NE(good.request(forward(1, 8)).as<Backward>(), nullptr);
}

TEST(ChannelTls, HostNameByDnsName) {
  TlsServer s;
  auto by_name = client_options(s.server->port(), client_tls());
  by_name.host = "localhost";
  Client c(by_name);
  EXPECT_NE(c.request(forward(1, 8)).as<Backward>(), nullptr);
}

// A client capped at TLS 1.2, made with asio::ssl directly: TlsOptions can
// only raise the floor, never cap the version. Returns the handshake error,
// and on success the Ping/Pong exchange's failure if any.
std::error_code tls12_only_exchange(std::uint16_t port, int& version) {
  asio::io_context io;
  asio::ssl::context ctx(asio::ssl::context::tls_client);
  SSL_CTX_set_max_proto_version(ctx.native_handle(), TLS1_2_VERSION);
  ctx.load_verify_file(pki("ca.pem"));
  ctx.use_certificate_chain_file(pki("client.pem"));
  ctx.use_private_key_file(pki("client.key"), asio::ssl::context::pem);
  ctx.set_verify_mode(asio::ssl::verify_peer);
  asio::ssl::stream<asio::ip::tcp::socket> tls(io, ctx);
  tls.next_layer().connect({asio::ip::make_address("127.0.0.1"), port});
  std::error_code ec;
  // Blocking calls: the server's handshake and idle timeouts bound them.
  tls.handshake(asio::ssl::stream_base::client, ec);
  if (ec) return ec;
  version = SSL_version(tls.native_handle());
  Message ping;
  ping.body = Ping{42};
  asio::write(tls, asio::buffer(frame_bytes(ping, 5)), ec);
  FrameHeaderBytes hb;
  if (!ec) asio::read(tls, asio::buffer(hb), ec);
  if (ec) return ec;
  FrameHeader h;
  EXPECT_EQ(decode_header(hb.data(), {}, h), FrameStatus::ok);
  EXPECT_EQ(h.type, static_cast<std::uint16_t>(MessageType::pong));
  EXPECT_EQ(h.request_id, 5u);
  return {};
}

TEST(ChannelTls, Tls12OnlyClientIsRefusedUnlessTheServerAllowsIt) {
  {
    TlsServer s;  // default: TLS 1.3 only
    int version = 0;
    auto ec = tls12_only_exchange(s.server->port(), version);
    ASSERT_TRUE(ec) << "a TLS 1.2-only client was served by a 1.3-only server";
    EXPECT_NE(ec.message().find("protocol version"), std::string::npos) << ec.message();
  }
  {
    // The same client against a server that allows 1.2: served, so the
    // refusal above was about the version and nothing else.
    ServerOptions so;
    so.tls = server_tls();
    so.tls.allow_tls12 = true;
    so.handshake_timeout = Millis(2000);
    so.idle_timeout = Millis(5000);  // bounds the raw client's blocking read
    Server server(so, echo);
    server.start();
    int version = 0;
    auto ec = tls12_only_exchange(server.port(), version);
    EXPECT_FALSE(ec) << ec.message();
    EXPECT_EQ(version, TLS1_2_VERSION);
  }
  // A Seam client that allows 1.2 still negotiates 1.3 with the default server.
  TlsServer s;
  auto o = client_options(s.server->port(), client_tls());
  o.tls.allow_tls12 = true;
  Client c(o);
  EXPECT_NE(c.request(forward(1, 8)).as<Backward>(), nullptr);
}

std::string run(const std::string& cmd) {
  std::string out;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  char buf[4096];
  while (p && fgets(buf, sizeof buf, p)) out += buf;
  if (p) pclose(p);
  return out;
}

TEST(ChannelTls, OpensslSClientNegotiatesTls13AndIsRefusedWithoutACertificate) {
  TlsServer s;
  const std::string base = "timeout 10 openssl s_client -connect 127.0.0.1:" + std::to_string(s.server->port()) +
                           " -CAfile " + pki("ca.pem") + " -verify_return_error -verify_hostname localhost ";
  auto ok = run("echo | " + base + "-cert " + pki("client.pem") + " -key " + pki("client.key"));
  EXPECT_NE(ok.find("TLSv1.3"), std::string::npos) << ok;
  EXPECT_NE(ok.find("Verify return code: 0 (ok)"), std::string::npos) << ok;
  // s_client -tls1_2 against a 1.3-only server: no shared protocol.
  auto v12 = run("echo | " + base + "-tls1_2 -cert " + pki("client.pem") + " -key " + pki("client.key"));
  EXPECT_NE(v12.find("alert protocol version"), std::string::npos) << v12;
  // No client certificate: in TLS 1.3 the server's refusal arrives as an alert
  // when the client first reads; keep stdin open briefly so s_client reads it.
  auto nocert = run("sleep 1 | " + base);
  EXPECT_NE(nocert.find("certificate required"), std::string::npos) << nocert;
}

// ---- plaintext is for loopback only

TEST(ChannelPlaintext, RefusedOffLoopback) {
  ServerOptions so;
  so.tls = plaintext();
  so.bind_address = "0.0.0.0";
  Server s(so, echo);
  try {
    s.start();
    FAIL() << "plaintext on 0.0.0.0 must be refused";
  } catch (const TransportError& e) {
    EXPECT_EQ(e.code(), make_error_code(Errc::insecure_refused));
  }
  auto o = client_options(7, plaintext());
  o.host = "0.0.0.0";  // refused before any connect is attempted
  Client c(o);
  try {
    c.request(forward(1, 1));
    FAIL() << "plaintext client off loopback must be refused";
  } catch (const TransportError& e) {
    EXPECT_NE(std::string(e.what()).find("not a loopback address"), std::string::npos) << e.what();
    EXPECT_EQ(e.peer_code(), 0u);  // a local refusal, not the peer's
    EXPECT_TRUE(e.peer_text().empty());
  }
}

// ---- the client's session: nonce, Hello on reconnects, Welcome, peer error codes

Message welcome_for(const Hello& h) {
  Welcome w;
  w.server_id = "test";
  w.session_id = std::to_string(h.session_nonce);
  w.next_step = h.resume_step + 1;
  w.resumed = h.resume_step > 0;
  w.checkpoint_every = h.checkpoint_every;
  Message r;
  r.body = w;
  return r;
}

TEST(ChannelSession, ConnectKeepsTheCallersNonceAndPicksOneOnlyForZero) {
  ServerOptions so;
  so.tls = plaintext();
  std::mutex mu;
  std::vector<std::uint64_t> nonces;
  Server server(so, [&](const PeerInfo& p, Message&& m) {
    if (auto* h = m.as<Hello>()) {
      std::lock_guard<std::mutex> lock(mu);
      nonces.push_back(h->session_nonce);
    }
    return echo(p, std::move(m));
  });
  server.start();
  Hello h;
  h.client_id = "edge-a";
  h.session_nonce = 0x1234;
  Client a(client_options(server.port(), plaintext()));
  a.connect(h);
  h.session_nonce = 0;
  Client b(client_options(server.port(), plaintext())), c(client_options(server.port(), plaintext()));
  b.connect(h);
  c.connect(h);
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_EQ(nonces.size(), 3u);
  EXPECT_EQ(nonces[0], 0x1234u);
  EXPECT_NE(nonces[1], 0u);
  EXPECT_NE(nonces[2], 0u);
  EXPECT_NE(nonces[1], nonces[2]);  // chosen per Client
}

TEST(ChannelSession, ReconnectResendsTheUpdatedHelloAndLastWelcomeFollows) {
  ServerOptions so;
  so.tls = server_tls();
  std::mutex mu;
  std::vector<Hello> hellos;
  std::atomic<bool> refuse_hellos{false};
  std::atomic<int> forwards{0};
  auto handler = [&](const PeerInfo& p, Message&& m) -> Message {
    if (auto* h = m.as<Hello>()) {
      {
        std::lock_guard<std::mutex> lock(mu);
        hellos.push_back(*h);
      }
      if (refuse_hellos) {
        Message r;
        r.body = ErrorInfo{1042, "job field seed differs"};
        return r;
      }
      return welcome_for(*h);
    }
    if (m.as<Forward>()) ++forwards;
    return echo(p, std::move(m));
  };
  auto server = std::make_unique<Server>(so, handler);
  server->start();
  so.port = server->port();
  auto restart = [&] {  // a new server on the same port; the client's connection breaks
    server.reset();
    server = std::make_unique<Server>(so, handler);
    server->start();
  };
  auto hellos_seen = [&] {
    std::lock_guard<std::mutex> lock(mu);
    return hellos;
  };

  Client c(client_options(so.port, client_tls()));
  Hello h;
  h.client_id = "edge-a";
  h.session_nonce = 77;
  h.checkpoint_every = 10;
  const Welcome w = c.connect(h);
  EXPECT_EQ(w.next_step, 1u);
  EXPECT_FALSE(w.resumed);
  EXPECT_EQ(w.checkpoint_every, 10u);
  EXPECT_EQ(c.last_welcome().session_id, "77");
  EXPECT_EQ(c.last_welcome().next_step, 1u);
  EXPECT_NE(c.request(forward(1, 8)).as<Backward>(), nullptr);

  // A checkpoint at step 10: later reconnects say so. A nonce of 0 keeps 77.
  h.resume_step = 10;
  h.session_nonce = 0;
  c.update_hello(h);
  EXPECT_EQ(hellos_seen().size(), 1u);
  EXPECT_EQ(c.last_welcome().next_step, 1u);  // nothing was sent

  restart();
  EXPECT_NE(c.request(forward(11, 8)).as<Backward>(), nullptr);
  EXPECT_EQ(c.reconnects(), 1u);
  auto seen = hellos_seen();
  ASSERT_EQ(seen.size(), 2u);  // one per connection: update_hello sent none
  EXPECT_EQ(seen[1].resume_step, 10u);
  EXPECT_EQ(seen[1].session_nonce, 77u);
  EXPECT_EQ(seen[1].checkpoint_every, 10u);
  EXPECT_EQ(c.last_welcome().next_step, 11u);
  EXPECT_TRUE(c.last_welcome().resumed);
  EXPECT_EQ(forwards.load(), 2);

  // A server that refuses the Hello of a reconnect: the request is not sent,
  // and the refusal comes back with its code.
  refuse_hellos = true;
  restart();
  try {
    c.request(forward(12, 8));
    FAIL() << "a refused Hello must fail the request";
  } catch (const TransportError& e) {
    EXPECT_EQ(e.code(), make_error_code(Errc::peer_error)) << e.what();
    EXPECT_EQ(e.peer_code(), 1042u);
    EXPECT_EQ(e.peer_text(), "job field seed differs");
    EXPECT_NE(std::string(e.what()).find("server error 1042: job field seed differs"), std::string::npos) << e.what();
  }
  EXPECT_EQ(forwards.load(), 2);
  EXPECT_EQ(c.reconnects(), 2u);
}

TEST(ChannelSession, ConnectRefusalCarriesTheApplicationCode) {
  ServerOptions so;
  so.tls = plaintext();
  Server server(so, [](const PeerInfo& p, Message&& m) -> Message {
    if (auto* h = m.as<Hello>(); h && h->job_fingerprint != "fp-1") {
      Message r;
      r.body = ErrorInfo{1042, "job fingerprint differs: field split"};
      return r;
    }
    return echo(p, std::move(m));
  });
  server.start();
  Client c(client_options(server.port(), plaintext()));
  Hello h;
  h.job_fingerprint = "fp-2";
  try {
    c.connect(h);
    FAIL() << "expected the Hello to be refused";
  } catch (const TransportError& e) {
    EXPECT_EQ(e.code(), make_error_code(Errc::peer_error));
    EXPECT_EQ(e.peer_code(), 1042u);
    EXPECT_EQ(e.peer_text(), "job fingerprint differs: field split");
  }
  h.job_fingerprint = "fp-1";
  EXPECT_EQ(c.connect(h).server_id, "test");
  EXPECT_EQ(c.last_welcome().server_id, "test");
}

// ---- retries, timeouts, limits, shutdown

TEST(ChannelResilience, RetriedRequestIsAnsweredFromTheSavedReplyNotAppliedTwice) {
  ServerOptions so;
  so.tls = server_tls();
  std::atomic<int> applied{0};
  Server server(so, [&](const PeerInfo& p, Message&& m) {
    if (auto* f = m.as<Forward>()) {
      ++applied;
      if (f->step_id == 2) std::this_thread::sleep_for(std::chrono::milliseconds(400));
    }
    return echo(p, std::move(m));
  });
  server.start();
  auto o = client_options(server.port(), client_tls());
  o.request_timeout = Millis(150);   // step 2 outlasts it once
  o.backoff_initial = Millis(1500);  // wide margin: the retry must come after the reply is saved
  Client c(o);
  Hello h;
  h.client_id = "edge-a";
  c.connect(h);
  EXPECT_NE(c.request(forward(1, 32)).as<Backward>(), nullptr);
  auto r = c.request(forward(2, 32));
  ASSERT_NE(r.as<Backward>(), nullptr);
  EXPECT_EQ(r.as<Backward>()->step_id, 2u);
  EXPECT_EQ(applied.load(), 2);  // steps 1 and 2, each once
  EXPECT_EQ(server.replays(), 1u);
  EXPECT_GE(c.reconnects(), 1u);
}

TEST(ChannelResilience, IdleTimeoutClosesAndTheClientReconnects) {
  ServerOptions so;
  so.tls = server_tls();
  so.idle_timeout = Millis(150);
  Server server(so, echo);
  server.start();
  Client c(client_options(server.port(), client_tls()));
  c.connect(Hello{});
  EXPECT_NE(c.request(forward(1, 8)).as<Backward>(), nullptr);
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  EXPECT_NE(c.request(forward(2, 8)).as<Backward>(), nullptr);
  EXPECT_GE(c.reconnects(), 1u);
}

TEST(ChannelResilience, ConnectionLimitAnswersBusy) {
  ServerOptions so;
  so.tls = plaintext();
  so.max_connections = 2;
  Server server(so, echo);
  server.start();
  Client a(client_options(server.port(), plaintext())), b(client_options(server.port(), plaintext()));
  a.request(forward(1, 8));
  b.request(forward(1, 8));
  auto o = client_options(server.port(), plaintext());
  o.max_attempts = 2;
  Client c(o);
  try {
    c.request(forward(1, 8));
    FAIL() << "third connection must be refused";
  } catch (const TransportError& e) {
    EXPECT_EQ(e.code(), make_error_code(Errc::server_busy)) << e.what();
  }
  a.close();
  // Once the server has seen the close, a slot is free; retries with backoff cover the wait.
  auto patient = client_options(server.port(), plaintext());
  patient.max_attempts = 8;
  patient.backoff_initial = Millis(50);
  Client d(patient);
  EXPECT_NE(d.request(forward(2, 8)).as<Backward>(), nullptr);
}

TEST(ChannelResilience, ReplayCacheIsBoundedByBytesLeastRecentlySavedFirst) {
  ServerOptions so;
  so.tls = plaintext();
  so.max_replay_bytes = 2500;  // room for two 1000-byte replies
  std::atomic<int> applied{0};
  Server server(so, [&](const PeerInfo& p, Message&& m) {
    if (m.as<Forward>()) ++applied;
    return echo(p, std::move(m));
  });
  server.start();
  // One raw connection per session (a plaintext identity names its port):
  // Hello as request 1, then a step as request 2 whose reply carries `bytes`.
  std::map<std::string, std::unique_ptr<RawPeer>> peers;
  std::map<std::string, std::size_t> sizes;
  auto open = [&](const std::string& id, std::size_t bytes) {
    sizes[id] = bytes;
    auto p = std::make_unique<RawPeer>(server.port());
    Message hm;
    Hello h;
    h.client_id = id;
    h.session_nonce = 1;
    hm.body = h;
    EXPECT_NE(p->exchange(hm, 1).as<Welcome>(), nullptr) << id;
    EXPECT_NE(p->exchange(forward(1, bytes), 2).as<Backward>(), nullptr) << id;
    peers[id] = std::move(p);
  };
  // A retry of request 2: answered from the saved reply, or applied again.
  auto retry_applies = [&](const std::string& id) {
    const int before = applied.load();
    EXPECT_NE(peers[id]->exchange(forward(1, sizes[id]), 2).as<Backward>(), nullptr) << id;
    return applied.load() > before;
  };
  open("a", 1000);
  open("b", 1000);
  open("c", 1000);  // 3000 bytes > 2500: a, saved first, goes
  EXPECT_EQ(applied.load(), 3);
  EXPECT_FALSE(retry_applies("c"));
  EXPECT_FALSE(retry_applies("b"));
  EXPECT_EQ(server.replays(), 2u);
  EXPECT_TRUE(retry_applies("a"));  // evicted: applied again, and saved again, so b goes
  EXPECT_FALSE(retry_applies("c"));
  EXPECT_FALSE(retry_applies("a"));
  EXPECT_TRUE(retry_applies("b"));  // saved again: now c goes
  // A reply larger than the whole bound is not kept, and evicts nothing.
  open("big", 3000);
  EXPECT_TRUE(retry_applies("big"));
  EXPECT_FALSE(retry_applies("a"));
  EXPECT_FALSE(retry_applies("b"));
}

TEST(ChannelResilience, StopDrainsAnInFlightReply) {
  ServerOptions so;
  so.tls = plaintext();
  std::atomic<bool> in_handler{false};
  auto server = std::make_unique<Server>(so, [&](const PeerInfo& p, Message&& m) {
    in_handler = true;
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    return echo(p, std::move(m));
  });
  server->start();
  auto o = client_options(server->port(), plaintext());
  o.max_attempts = 1;
  auto fut = std::async(std::launch::async, [o] {
    Client c(o);
    return c.request(forward(5, 128)).as<Backward>() != nullptr;
  });
  ASSERT_TRUE(wait_until([&] { return in_handler.load(); })) << "the request never reached the handler";
  server->stop();
  EXPECT_TRUE(fut.get());
  EXPECT_EQ(server->active_sessions(), 0);
}

// ---- slow links: timeouts measure progress (docs/wire-protocol.md, "Slow links")

using detail::ProgressWatch;
using Verdict = ProgressWatch::Verdict;
using std::chrono::milliseconds;
using std::chrono::seconds;

TEST(SlowLinkWatch, StalledOnlyAfterAFullStallTimeoutWithoutProgress) {
  const auto t0 = Clock::time_point{} + std::chrono::hours(1);
  ProgressWatch w;
  EXPECT_EQ(w.check(t0), Verdict::ok);  // nothing watched
  w.start(t0, milliseconds(20000), detail::kNever);
  // A slow frame: a little progress every 19.9 s keeps it alive for ten minutes.
  auto t = t0;
  for (int i = 0; i < 30; ++i) {
    t += milliseconds(19900);
    EXPECT_EQ(w.check(t), Verdict::ok) << i;
    w.progress(t);
  }
  EXPECT_EQ(w.deadline(), t + milliseconds(20000));
  EXPECT_EQ(w.check(t + milliseconds(19999)), Verdict::ok);
  EXPECT_EQ(w.check(t + milliseconds(20000)), Verdict::stalled);
  EXPECT_NE(w.describe(Verdict::stalled, "").find("stall_timeout"), std::string::npos);
  w.stop();
  EXPECT_EQ(w.check(t + seconds(3600)), Verdict::ok);
  EXPECT_EQ(w.deadline(), detail::kNever);
}

TEST(SlowLinkWatch, SlowLorisIsCutByTheRateFloorOrTheCapWhateverItsProgress) {
  const auto t0 = Clock::time_point{} + std::chrono::hours(1);
  const milliseconds stall(20000);
  const std::uint64_t frame = 1'000'000;  // declared by the header
  // Rate floor 128 kbit/s: 20 s of grace + 8e6 bits / 128e3 = 82.5 s in all.
  const auto floor = detail::frame_deadline(t0, frame, milliseconds(0), stall, 128e3);
  EXPECT_EQ(floor, t0 + milliseconds(82500));
  // A hard cap, when set, comes first if it is earlier.
  EXPECT_EQ(detail::frame_deadline(t0, frame, milliseconds(30000), stall, 128e3), t0 + milliseconds(30000));
  EXPECT_EQ(detail::frame_deadline(t0, frame, milliseconds(0), stall, 0), detail::kNever);
  EXPECT_EQ(detail::frame_deadline(t0, ~std::uint64_t{0}, milliseconds(0), stall, 1e-9) > t0,
            true);  // no overflow
  for (auto hard : {floor, t0 + milliseconds(30000)}) {
    ProgressWatch w;
    w.start(t0, stall, hard);
    // One byte every stall - 100 ms: never stalled, so only the hard deadline can cut it.
    auto t = t0;
    Verdict v = Verdict::ok;
    while (v == Verdict::ok) {
      t += stall - milliseconds(100);
      v = w.check(t);
      if (v == Verdict::ok) w.progress(t);
    }
    EXPECT_EQ(v, Verdict::overdue);
    EXPECT_GE(t, hard);
    EXPECT_LT(t, hard + stall);
  }
}

// Answers every Forward with a small Backward (no sections back).
Message small_reply(const PeerInfo& p, Message&& m) {
  if (auto* f = m.as<Forward>()) {
    Message r;
    r.body = Backward{f->step_id, static_cast<double>(m.sections.at(0).bytes.size()), {}};
    return r;
  }
  return echo(p, std::move(m));
}

// A 50 MB Forward up a 2 Mbit/s link, on a simulated clock that server and
// client share: 200 s of link time pass in the milliseconds loopback takes.
// One attempt only, so a retry would fail the request.
struct SlowUpload {
  static constexpr std::size_t kBytes = 50'000'000;
  ManualClock clock;
  std::unique_ptr<Server> server;
  std::unique_ptr<Client> client;

  // frame_cap, request_cap: the opt-in whole-frame (server) and whole-request
  // (client) deadlines; 0 = none, the defaults.
  SlowUpload(Millis frame_cap, Millis request_cap) {
    ServerOptions so;
    so.tls = plaintext();
    so.clock = &clock;
    so.io_timeout = frame_cap;
    server = std::make_unique<Server>(so, small_reply);
    server->start();
    auto o = client_options(server->port(), plaintext());
    o.clock = &clock;
    o.link.rate_bits_per_s = 2e6;
    o.request_timeout = request_cap;
    o.max_attempts = 1;
    client = std::make_unique<Client>(o);
  }
  Message send() { return client->request(forward(1, kBytes)); }
};

// The in-process shaper case: the frame takes 200 s of link time,
// far beyond any whole-frame deadline, yet bytes move every 65 ms, so it
// completes on the first attempt.
TEST(SlowLink, FiftyMegabytesOverTwoMbitCompleteWithoutARetry) {
  SlowUpload up(Millis(0), Millis(0));
  const auto t0 = up.clock.now();
  Message r = up.send();
  const double link_s = std::chrono::duration<double>(up.clock.now() - t0).count();
  ASSERT_NE(r.as<Backward>(), nullptr);
  EXPECT_EQ(r.as<Backward>()->loss, static_cast<double>(SlowUpload::kBytes));  // every byte arrived
  EXPECT_EQ(up.client->reconnects(), 0u);
  EXPECT_GT(link_s, 199.0);  // 4e8 bits at 2e6 bit/s, less the first burst
  EXPECT_LT(link_s, 201.0);
  EXPECT_NEAR(up.client->bandwidth().bits_per_second(), 2e6, 2e6 * 0.01);
}

// The same transfer against the old kind of limit, a deadline on the whole
// request or frame, is cut: this is what the stall timeout replaced.
TEST(SlowLink, AWholeRequestOrWholeFrameDeadlineWouldCutTheSameTransfer) {
  {
    SlowUpload up(Millis(0), Millis(60000));  // the old 60 s request deadline, now an opt-in cap
    try {
      up.send();
      ADD_FAILURE() << "a 60 s cap must cut a 200 s upload";
    } catch (const TransportError& e) {
      EXPECT_EQ(e.code(), make_error_code(Errc::timeout)) << e.what();
      EXPECT_NE(std::string(e.what()).find("request_timeout of 60000 ms"), std::string::npos) << e.what();
    }
  }
  {
    SlowUpload up(Millis(30000), Millis(0));  // the old 30 s deadline per frame, now an opt-in cap
    const auto t0 = up.clock.now();
    EXPECT_THROW(up.send(), TransportError);
    // The server cut it at 30 s of link time, long before the 200 s it needed.
    EXPECT_LT(up.clock.now() - t0, seconds(100));
  }
}

// A header may declare a frame up to max_payload; the memory the server
// commits follows the bytes that really arrive, so a slow or stalled peer
// holds little.
TEST(SlowLink, AHeaderDeclaringAHugeFrameCommitsOnlyWhatArrives) {
  ServerOptions so;
  so.tls = plaintext();
  so.stall_timeout = Millis(500);
  so.min_rate_bits_per_s = 0;
  Server server(so, echo);
  server.start();
  auto bytes = frame_bytes(forward(1, 16));
  FrameHeader h;
  ASSERT_EQ(decode_header(bytes.data(), {}, h), FrameStatus::ok);
  detail::store_le64(bytes.data() + 16, std::uint64_t{200} << 20);  // 200 MiB declared, under the 256 MiB limit
  const std::size_t rss0 = rss_bytes();
  RawPeer peer(server.port());
  peer.send(bytes.data(), kFrameHeaderSize + h.metadata_len + 8);
  // The frame is pending until the server cuts the stalled peer.
  std::size_t peak = rss0;
  const auto t0 = std::chrono::steady_clock::now();
  bool closed = false;
  while (!closed && std::chrono::steady_clock::now() - t0 < seconds(10)) {
    peak = std::max(peak, rss_bytes());
    std::this_thread::sleep_for(milliseconds(5));
    closed = peer.closed_by_peer();
  }
  EXPECT_TRUE(closed);
  EXPECT_LT(peak, rss0 + (std::size_t{32} << 20)) << "the server committed the declared 200 MiB";
}

// A raw peer sends the header and metadata of a Forward whose payload it then
// trickles; returns the bytes of that frame.
std::vector<std::uint8_t> trickled_frame(std::size_t payload) {
  return frame_bytes(forward(1, payload));
}

TEST(SlowLink, SlowLorisSenderIsCutByTheRateFloorThoughNeverStalled) {
  ServerOptions so;
  so.tls = plaintext();
  so.stall_timeout = Millis(400);
  so.min_rate_bits_per_s = 2000;  // ~170 body bytes: 400 ms grace + ~680 ms
  Server server(so, echo);
  server.start();
  auto bytes = trickled_frame(100);
  FrameHeader h;
  ASSERT_EQ(decode_header(bytes.data(), {}, h), FrameStatus::ok);
  const double body = static_cast<double>(h.metadata_len + h.payload_len);
  const auto cut_at = milliseconds(400) + milliseconds(static_cast<std::int64_t>(8e3 * body / 2000));
  RawPeer peer(server.port());
  const std::size_t head = kFrameHeaderSize;
  peer.send(bytes.data(), head);
  const auto t0 = std::chrono::steady_clock::now();
  std::size_t sent = head;
  bool closed = false;
  // One byte every 100 ms: 300 ms inside the stall timeout, but 80 bit/s.
  while (!closed && sent < bytes.size() && std::chrono::steady_clock::now() - t0 < seconds(10)) {
    std::this_thread::sleep_for(milliseconds(100));
    try {
      peer.send(bytes.data() + sent, 1);
      ++sent;
    } catch (const std::system_error&) {
      closed = true;
    }
    closed = closed || peer.closed_by_peer();
  }
  const auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_TRUE(closed) << "a peer trickling bytes was never cut";
  EXPECT_LT(sent, bytes.size());
  EXPECT_GE(took, milliseconds(800)) << "cut before the rate floor's deadline: the stall timeout fired?";
  EXPECT_LT(took, cut_at + milliseconds(1500));
}

TEST(SlowLink, PeerThatStopsSendingIsCutWithinTheStallTimeout) {
  ServerOptions so;
  so.tls = plaintext();
  so.stall_timeout = Millis(300);
  so.min_rate_bits_per_s = 0;  // only the stall timeout
  Server server(so, echo);
  server.start();
  auto bytes = trickled_frame(4096);
  RawPeer peer(server.port());
  peer.send(bytes.data(), bytes.size() / 2);
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::uint8_t> got;
  const auto end = peer.read(got);  // returns when the server closes (or after 10 s)
  const auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_TRUE(end == asio::error::eof || end == asio::error::connection_reset) << end.message();
  EXPECT_TRUE(got.empty());  // cut, not answered
  EXPECT_GE(took, milliseconds(250));
  EXPECT_LT(took, milliseconds(300 + 1500));
}

// A cloud step that computes longer than the client's stall timeout: the
// server's Working notices keep the connection, so there is no reconnect and
// the step runs once.
TEST(SlowLink, ASlowCloudStepDoesNotCauseAReconnect) {
  ServerOptions so;
  so.tls = server_tls();
  so.keepalive_interval = Millis(50);
  std::atomic<int> applied{0};
  Server server(so, [&](const PeerInfo& p, Message&& m) {
    if (m.as<Forward>()) {
      ++applied;
      std::this_thread::sleep_for(milliseconds(1000));
    }
    return echo(p, std::move(m));
  });
  server.start();
  auto o = client_options(server.port(), client_tls());
  o.stall_timeout = Millis(400);  // well under the step's 1000 ms
  o.request_timeout = Millis(0);
  Client c(o);
  c.connect(Hello{});
  auto r = c.request(forward(1, 64));
  ASSERT_NE(r.as<Backward>(), nullptr);
  EXPECT_EQ(c.reconnects(), 0u);
  EXPECT_EQ(applied.load(), 1);
  EXPECT_GE(c.working_notices(), 3u);  // about 20; a loaded machine may send fewer
}

TEST(SlowLink, WithoutKeepAlivesTheSameStepLooksLikeAStall) {
  ServerOptions so;
  so.tls = plaintext();
  so.keepalive_interval = Millis(0);
  Server server(so, [&](const PeerInfo& p, Message&& m) {
    if (m.as<Forward>()) std::this_thread::sleep_for(milliseconds(500));
    return echo(p, std::move(m));
  });
  server.start();
  auto o = client_options(server.port(), plaintext());
  o.stall_timeout = Millis(200);
  o.max_attempts = 1;
  Client c(o);
  try {
    c.request(forward(1, 64));
    ADD_FAILURE() << "a silent 500 ms step must trip a 200 ms stall timeout";
  } catch (const TransportError& e) {
    EXPECT_EQ(e.code(), make_error_code(Errc::timeout)) << e.what();
    EXPECT_NE(std::string(e.what()).find("stalled"), std::string::npos) << e.what();
  }
  EXPECT_EQ(c.working_notices(), 0u);
}

// A peer of protocol 2.0 does not know the Working type, so it never gets
// one: its first frame back is the reply. (From protocol 3 on every peer
// that passes the major check knows it.)
TEST(SlowLink, WorkingNoticesGoOnlyToPeersThatKnowTheType) {
  ServerOptions so;
  so.tls = plaintext();
  so.keepalive_interval = Millis(20);
  Server server(so, [&](const PeerInfo& p, Message&& m) {
    std::this_thread::sleep_for(milliseconds(200));
    return echo(p, std::move(m));
  });
  server.start();
  EXPECT_FALSE(knows_working(2, 0));
  EXPECT_TRUE(knows_working(2, 1));
  EXPECT_TRUE(knows_working(3, 0));
  for (std::uint16_t minor : {0, 1}) {
    auto bytes = frame_bytes(forward(3, 16), 9);
    detail::store_le16(bytes.data() + 6, minor);
    RawPeer peer(server.port());
    peer.send(bytes);
    Message first;
    ASSERT_TRUE(peer.read_frame(first));
    EXPECT_EQ(first.request_id, 9u);
    if (!knows_working(kProtocolMajor, minor)) {
      EXPECT_NE(first.as<Backward>(), nullptr) << to_string(first.type());
      continue;
    }
    ASSERT_NE(first.as<Working>(), nullptr) << to_string(first.type());
    Message next = first;
    while (next.as<Working>()) ASSERT_TRUE(peer.read_frame(next));
    EXPECT_NE(next.as<Backward>(), nullptr);
  }
}

}  // namespace
}  // namespace seam::transport
