#pragma once
// The TLS channel: an async server (one session per connection) and a
// synchronous request/reply client. Asio and OpenSSL stay inside the library.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "seam/transport/clock.hpp"
#include "seam/transport/errors.hpp"
#include "seam/transport/message.hpp"
#include "seam/transport/shaper.hpp"

namespace seam::transport {

using Millis = std::chrono::milliseconds;

struct TlsOptions {
  std::string ca_file;      // verifies the peer: the server's CA (client) or the client CA (server)
  std::string cert_file;    // own certificate (PEM, may hold a chain)
  std::string key_file;     // own private key (PEM)
  std::string server_name;  // client: host name to verify (default: the host connected to)
  bool require_client_cert = true;  // server: mutual TLS
  bool allow_tls12 = false;         // TLS 1.3 only unless set
  // Benchmarks on loopback only: no TLS at all. Refused on any other address.
  bool insecure_plaintext = false;
};

struct PeerInfo {
  std::string identity;  // client certificate subject, or "plaintext:<address>"
  std::string address;
  std::string session_key;  // identity|client_id|nonce from the last Hello, empty before it
};

struct ServerOptions {
  std::string bind_address = "127.0.0.1";
  std::uint16_t port = 0;  // 0 = pick a free port (see Server::port())
  TlsOptions tls;
  FrameLimits limits;
  int max_connections = 64;
  int worker_threads = 2;  // run the handler off the I/O thread
  Millis handshake_timeout{10000};
  Millis idle_timeout{300000};  // from the end of a reply to the whole header of the next request
  // Timeouts measure progress (docs/wire-protocol.md, "Slow links"): while a
  // frame is read or written, the connection is cut when no byte has moved
  // for stall_timeout, however long the frame takes as a whole.
  Millis stall_timeout{20000};
  // A started frame must also average this rate, after a grace of
  // stall_timeout: a frame of B bytes is cut stall_timeout + 8B/rate after it
  // began. Stops a peer that trickles one byte per stall_timeout. 0 = off.
  double min_rate_bits_per_s = 128e3;
  Millis io_timeout{0};  // optional hard cap on reading or writing one frame; 0 = none
  // While a handler runs, a Working notice goes to the client this often, so
  // that a long cloud step does not look like a stall (peers of protocol 2.1
  // and later only). Real time. 0 = none.
  Millis keepalive_interval{5000};
  Millis drain_timeout{30000};  // stop(): how long in-flight replies may finish
  std::size_t max_send_queue_bytes = std::size_t{512} << 20;
  // Replies kept for retried requests (one per session): at most this many
  // bytes of their sections, least recently saved sessions evicted first. A
  // retry whose reply was evicted (or was larger than this) reaches the handler again.
  std::size_t max_replay_bytes = std::size_t{64} << 20;
  LinkOptions link;  // optional emulated link on replies, paced in bursts of link.burst_bytes
  // The clock of the timeouts and the shaper; null = steady_clock(). Must outlive the server.
  const Clock* clock = nullptr;
  // Called on the I/O thread when the server refuses or cuts a connection:
  // a failed TLS handshake (no or a bad client certificate, plaintext), a
  // frame the decode gate refused, a stall, a full server. For logs and
  // metrics; it must not block. The peer's identity is empty before the handshake.
  std::function<void(const PeerInfo& peer, std::error_code ec, const std::string& why)> on_refusal;
};

// Returns the reply. Throwing std::exception sends an Error message with its
// text and keeps the connection.
using Handler = std::function<Message(const PeerInfo&, Message&&)>;

class Server {
 public:
  Server(ServerOptions options, Handler handler);
  ~Server();  // calls stop()
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  void start();  // throws TransportError (bad certificate files, bind failure, plaintext off loopback)
  std::uint16_t port() const;
  // Stops accepting, lets in-flight replies finish (up to drain_timeout), closes the rest.
  void stop();
  int active_sessions() const;
  std::uint64_t replays() const;  // retried requests answered from the saved reply

 private:
  friend struct Session;
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

struct ClientOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;
  TlsOptions tls;
  FrameLimits limits;
  Millis connect_timeout{10000};  // TCP connect + TLS handshake
  // A request (its write, the server's Working notices, the reply) is cut and
  // retried when no byte has moved either way for this long.
  Millis stall_timeout{20000};
  Millis request_timeout{0};  // optional hard cap on one attempt of a request; 0 = none
  int max_attempts = 5;       // per request, reconnects included
  Millis backoff_initial{50};
  Millis backoff_max{5000};
  LinkOptions link;  // optional emulated link on requests, paced in bursts of link.burst_bytes
  int max_in_flight = 1;  // post(): requests that may await their replies at once
  // The clock of the timeouts, the backoff and the shaper; null = steady_clock(). Must outlive the client.
  const Clock* clock = nullptr;
};

// Synchronous request/reply. Not thread-safe: one app thread per Client.
class Client {
 public:
  explicit Client(ClientOptions options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Sends Hello (kept for reconnects) and returns the Welcome. A session_nonce
  // of 0 is replaced by one chosen at random for this Client; any other value
  // is kept, so a restarted app can resume its session under its own nonce.
  Welcome connect(Hello hello);
  // Replaces the Hello re-sent on automatic reconnects (e.g. a newer
  // resume_step after a checkpoint); sends nothing now. A session_nonce of 0
  // keeps the nonce in use.
  void update_hello(const Hello& hello);
  // The Welcome of the latest connect() or automatic reconnect.
  Welcome last_welcome() const;
  // Sends a request and waits for its reply. On a broken connection it
  // reconnects with exponential backoff, re-sends Hello, and retries with the
  // same request id, so the server answers a retried request from its saved
  // reply instead of applying it twice. An Error reply (to the request or to
  // the Hello of a reconnect) throws TransportError (peer_error) carrying the
  // server's code and text (peer_code(), peer_text()).
  Message request(Message m);

  // Several frames in flight on one connection (pipelined stages). post()
  // writes a request and returns its id without waiting for the reply;
  // collect() returns the reply to the oldest request posted and not yet
  // collected. The server answers a connection's requests one at a time, in
  // order, and reads the next only once it has answered, so replies come back
  // in posting order and a busy handler holds the sender back through TCP
  // (backpressure). At most max_in_flight requests are outstanding: post() on
  // a full window throws std::logic_error, as does request() while any are.
  // No automatic retry here (the server may have handled some of them): a
  // broken or stalled connection throws TransportError naming the peer and
  // the number of posted requests lost; the next post() reconnects and
  // re-sends the Hello. An Error reply throws like request()'s, and the
  // requests behind it stay outstanding.
  std::uint64_t post(Message m);
  Message collect();
  std::size_t in_flight() const;
  // Replaces the emulated link from the next frame on (a benchmark or test
  // whose link rate changes during a run).
  void set_link(LinkOptions link);

  void close();  // sends Goodbye when connected
  // Bytes per second of the frames sent. With an emulated link, each frame is
  // timed from when the link is free for it (after the frames before it) until
  // its last byte is serialised at the link's rate, or until the socket took
  // it if that is later; without one, from the write's start until the socket
  // took the frame.
  const BandwidthEstimator& bandwidth() const;
  // Bytes per second of posted frames as their replies come back: each timed
  // from its write (or the previous reply, if later: it queued behind the
  // frames before it) to its own reply. On a real link this is the sender's
  // view of the link once the frames queue; it also counts the peer's time to
  // answer, so a peer that is itself held back lowers it.
  const BandwidthEstimator& acked_bandwidth() const;
  std::uint64_t reconnects() const;       // automatic reconnects so far
  std::uint64_t working_notices() const;  // Working notices received so far

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace seam::transport
