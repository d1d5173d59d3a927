// Issue 13, transport part: the bandwidth estimate measures the emulated link
// (in-process shaper, simulated clock), and several frames in flight on one
// connection (post/collect): order, backpressure, errors, a dead peer.
#include <array>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <random>
#include <stdexcept>

#include "../transport/transport_test_util.hpp"
#include "seam/transport/message.hpp"

namespace seam::transport {
namespace {

using namespace test;

// Forward -> Backward carrying the step id and the payload size.
Message step_reply(const PeerInfo& p, Message&& m) {
  if (auto* f = m.as<Forward>()) {
    Message r;
    r.body = Backward{f->step_id, static_cast<double>(m.sections.at(0).bytes.size()), {}};
    return r;
  }
  return echo(p, std::move(m));
}

struct Shaped {
  ManualClock clock;
  std::unique_ptr<Server> server;
  std::unique_ptr<Client> client;
  explicit Shaped(double rate_bits_per_s) {
    ServerOptions so;
    so.tls = plaintext();
    so.clock = &clock;
    server = std::make_unique<Server>(so, step_reply);
    server->start();
    auto o = client_options(server->port(), plaintext());
    o.clock = &clock;
    o.link.rate_bits_per_s = rate_bits_per_s;
    o.max_attempts = 1;
    o.request_timeout = Millis(0);  // 1 MB at 1 Mbit/s takes 8 s of link time
    client = std::make_unique<Client>(o);
  }
};

// The wire size of forward(step, bytes): what the estimator divides.
double frame_bits(std::size_t payload) { return 8.0 * static_cast<double>(encode_frame(forward(1, payload), 1).total_bytes()); }

// Frames smaller than, equal to and larger than one 16 KiB burst: each is
// timed until its last byte has crossed the emulated 1 Mbit/s link. Before the
// fix a frame inside one burst took no time on the (simulated) clock and left
// no sample at all, and a larger one was measured one burst short.
TEST(BandwidthEstimate, MeasuresTheEmulatedLinkForFramesOfEverySize) {
  for (std::size_t payload : {600u, 4000u, 16000u, 100000u, 1000000u}) {
    Shaped s(1e6);
    const auto t0 = s.clock.now();
    s.client->request(forward(1, payload));
    ASSERT_EQ(s.client->bandwidth().samples(), 1u) << payload;
    EXPECT_NEAR(s.client->bandwidth().bits_per_second(), 1e6, 1e6 * 1e-3) << payload << " payload bytes";
    // The independent check: link time of the frame's bits at 1 Mbit/s.
    const double took = std::chrono::duration<double>(s.clock.now() - t0).count();
    EXPECT_LE(took, frame_bits(payload) / 1e6 + 1e-9);
  }
}

// The rate drops from 100 to 10 Mbit/s and recovers: the smoothed estimate
// follows within a few frames each way.
TEST(BandwidthEstimate, FollowsARateChange) {
  Shaped s(100e6);
  auto send = [&](int n) {
    for (int i = 0; i < n; ++i) s.client->request(forward(static_cast<std::uint64_t>(i), 20000));
  };
  send(5);
  EXPECT_NEAR(s.client->bandwidth().bits_per_second(), 100e6, 100e6 * 1e-3);
  LinkOptions slow;
  slow.rate_bits_per_s = 10e6;
  s.client->set_link(slow);
  send(40);  // alpha 0.25: 0.75^40 of the old rate is left
  EXPECT_NEAR(s.client->bandwidth().bits_per_second(), 10e6, 10e6 * 1e-3);
  LinkOptions fast;
  fast.rate_bits_per_s = 100e6;
  s.client->set_link(fast);
  send(40);
  EXPECT_NEAR(s.client->bandwidth().bits_per_second(), 100e6, 100e6 * 1e-2);
}

// acked_bandwidth on a simulated clock: the receiver takes 10 ms per frame
// (it moves the clock), so each frame is timed from its write to its
// acknowledgement, 10 ms: every sample is bytes / 10 ms. (Frames queued
// behind others are timed from the previous acknowledgement; on a simulated
// clock the time a reply is read cannot show that, so it is not tested here.)
TEST(BandwidthEstimate, AcknowledgedRateTimesAFrameFromItsWriteToItsAcknowledgement) {
  ManualClock clock;
  ServerOptions so;
  so.tls = plaintext();
  so.clock = &clock;
  Server server(so, [&](const PeerInfo& p, Message&& m) {
    if (m.as<Forward>()) clock.advance(std::chrono::milliseconds(10));
    return step_reply(p, std::move(m));
  });
  server.start();
  auto o = client_options(server.port(), plaintext());
  o.clock = &clock;
  o.max_in_flight = 4;
  o.request_timeout = Millis(0);
  Client c(o);
  for (std::uint64_t i = 0; i < 4; ++i) {
    c.post(forward(i, 5000));
    c.collect();
  }
  ASSERT_EQ(c.acked_bandwidth().samples(), 4u);
  EXPECT_NEAR(c.acked_bandwidth().bits_per_second(), frame_bits(5000) / 0.010, 1.0);
}

// A handler whose first call waits until released, counting its calls.
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  std::atomic<int> calls{0};
  Message handle(const PeerInfo& p, Message&& m) {
    if (m.as<Forward>() && calls++ == 0) {
      std::unique_lock<std::mutex> lock(mu);
      if (!cv.wait_for(lock, std::chrono::seconds(20), [&] { return open; }))
        throw std::runtime_error("gate never opened");
    }
    return step_reply(p, std::move(m));
  }
  void release() {
    std::lock_guard<std::mutex> lock(mu);
    open = true;
    cv.notify_all();
  }
};

ClientOptions windowed(std::uint16_t port, int window) {
  auto o = client_options(port, client_tls());
  o.max_in_flight = window;
  return o;
}

// Replies come back in posting order however long each request takes.
TEST(InFlight, RepliesKeepPostingOrderUnderUnevenDelays) {
  std::mt19937 rng(13);
  std::vector<int> delay_us(60);
  for (auto& d : delay_us) d = static_cast<int>(rng() % 3000);
  ServerOptions so;
  so.tls = server_tls();
  so.worker_threads = 4;
  Server server(so, [&](const PeerInfo& p, Message&& m) {
    if (auto* f = m.as<Forward>()) std::this_thread::sleep_for(std::chrono::microseconds(delay_us.at(f->step_id)));
    return step_reply(p, std::move(m));
  });
  server.start();
  Client c(windowed(server.port(), 5));
  c.connect(Hello{});
  std::vector<std::uint64_t> steps, ids, reply_ids;
  for (std::uint64_t i = 0; i < delay_us.size(); ++i) {
    if (c.in_flight() == 5) {
      Message r = c.collect();
      reply_ids.push_back(r.request_id);
      steps.push_back(r.as<Backward>()->step_id);
    }
    ids.push_back(c.post(forward(i, 100 + i)));
  }
  while (c.in_flight() > 0) {
    Message r = c.collect();
    reply_ids.push_back(r.request_id);
    steps.push_back(r.as<Backward>()->step_id);
  }
  ASSERT_EQ(steps.size(), delay_us.size());
  for (std::uint64_t i = 0; i < steps.size(); ++i) EXPECT_EQ(steps[i], i);
  EXPECT_EQ(reply_ids, ids);
}

// A server that is not answering holds the sender back: it reads the next
// request only after answering the one before, so the window fills and no
// more than max_in_flight requests are ever outstanding.
TEST(InFlight, AFullWindowRefusesAnotherPostUntilARepliesArrive) {
  Gate gate;
  ServerOptions so;
  so.tls = server_tls();
  Server server(so, [&](const PeerInfo& p, Message&& m) { return gate.handle(p, std::move(m)); });
  server.start();
  Client c(windowed(server.port(), 3));
  c.connect(Hello{});
  for (std::uint64_t i = 0; i < 3; ++i) c.post(forward(i, 1000));
  ASSERT_TRUE(wait_until([&] { return gate.calls.load() == 1; }));
  EXPECT_EQ(c.in_flight(), 3u);
  try {
    c.post(forward(3, 1000));
    ADD_FAILURE() << "a fourth post must be refused";
  } catch (const std::logic_error& e) {
    EXPECT_NE(std::string(e.what()).find("3 request(s) already in flight, the max_in_flight window"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(c.request(forward(9, 10)), std::logic_error);
  EXPECT_EQ(gate.calls.load(), 1);  // the server has read only the first request
  gate.release();
  for (std::uint64_t i = 0; i < 3; ++i) EXPECT_EQ(c.collect().as<Backward>()->step_id, i);
  EXPECT_EQ(gate.calls.load(), 3);
  c.post(forward(3, 1000));  // the window has room again
  EXPECT_EQ(c.collect().as<Backward>()->step_id, 3u);
}

// Backpressure through TCP: with the handler stuck, megabyte frames fill the
// socket buffers and a post blocks; its stall timeout then reports the peer.
TEST(InFlight, ABlockedReceiverStopsTheSenderInsteadOfBufferingWithoutLimit) {
  Gate gate;
  ServerOptions so;
  so.tls = plaintext();
  Server server(so, [&](const PeerInfo& p, Message&& m) { return gate.handle(p, std::move(m)); });
  server.start();
  auto o = client_options(server.port(), plaintext());
  o.max_in_flight = 64;
  o.stall_timeout = Millis(300);
  o.request_timeout = Millis(0);
  Client c(o);
  c.connect(Hello{});
  int posted = 0;
  try {
    for (; posted < 64; ++posted) c.post(forward(static_cast<std::uint64_t>(posted), 1 << 20));
    ADD_FAILURE() << "64 MiB went out to a receiver that reads nothing";
  } catch (const TransportError& e) {
    EXPECT_EQ(e.code(), make_error_code(Errc::timeout)) << e.what();
    const std::string what = e.what();
    EXPECT_NE(what.find("post to 127.0.0.1:" + std::to_string(server.port()) + " failed"), std::string::npos) << what;
    EXPECT_NE(what.find("posted request(s) lost"), std::string::npos) << what;
  }
  EXPECT_LT(posted, 40);  // socket buffers hold a few MiB, not the whole stream
  EXPECT_EQ(c.in_flight(), 0u);
  gate.release();
}

// An Error reply belongs to its request; those behind it still arrive.
TEST(InFlight, AnErrorReplyIsThrownForItsRequestAndTheRestFollow) {
  ServerOptions so;
  so.tls = server_tls();
  Server server(so, [](const PeerInfo& p, Message&& m) {
    if (auto* f = m.as<Forward>(); f && f->step_id == 1) throw std::runtime_error("stage 'b' refused batch 1");
    return step_reply(p, std::move(m));
  });
  server.start();
  Client c(windowed(server.port(), 3));
  c.connect(Hello{});
  for (std::uint64_t i = 0; i < 3; ++i) c.post(forward(i, 10));
  EXPECT_EQ(c.collect().as<Backward>()->step_id, 0u);
  try {
    c.collect();
    ADD_FAILURE() << "request 1 was refused";
  } catch (const TransportError& e) {
    EXPECT_EQ(e.peer_text(), "stage 'b' refused batch 1");
  }
  EXPECT_EQ(c.collect().as<Backward>()->step_id, 2u);
}

// A peer that goes away with requests in flight: collect names it and says
// how many were lost; the next post reconnects (here to a real server that
// took over the port).
TEST(InFlight, ADeadPeerIsNamedAndTheNextPostReconnects) {
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  acceptor.set_option(asio::ip::tcp::acceptor::reuse_address(true));
  const auto port = acceptor.local_endpoint().port();
  auto o = client_options(port, plaintext());
  o.max_in_flight = 2;
  Client c(o);
  c.post(forward(0, 10));  // the kernel queues the connection and the bytes
  c.post(forward(1, 10));
  {
    auto peer = acceptor.accept();
    std::array<std::uint8_t, 8> some;
    asio::read(peer, asio::buffer(some));
  }  // the peer dies with unread requests: the connection is reset
  acceptor.close();
  try {
    c.collect();
    ADD_FAILURE() << "the peer died";
  } catch (const TransportError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("collect from 127.0.0.1:" + std::to_string(port) + " failed"), std::string::npos) << what;
    EXPECT_NE(what.find("2 posted request(s) lost"), std::string::npos) << what;
  }
  EXPECT_EQ(c.in_flight(), 0u);
  ServerOptions so;
  so.tls = plaintext();
  so.port = port;
  Server again(so, step_reply);
  again.start();
  c.post(forward(7, 10));
  EXPECT_EQ(c.collect().as<Backward>()->step_id, 7u);
}

}  // namespace
}  // namespace seam::transport
