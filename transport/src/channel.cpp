// TLS channel: async server with one session per connection, sync client.
// All session state is touched only on the server's single I/O thread (an
// implicit strand); handlers run on a worker pool and post their reply back.
#include "seam/transport/channel.hpp"

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <asio.hpp>
#include <asio/ssl.hpp>
#include <atomic>
#include <deque>
#include <iterator>
#include <list>
#include <map>
#include <optional>
#include <random>
#include <thread>

#include "frame_io.hpp"
#include "progress_watch.hpp"
#include "tls_stream.hpp"

namespace seam::transport {

using detail::header_errc;
using detail::ProgressWatch;
using detail::TimePoint;

namespace {

using tcp = asio::ip::tcp;
using detail::TlsStream;

TransportError terr(Errc e, const std::string& what) { return TransportError(make_error_code(e), what); }

std::unique_ptr<asio::ssl::context> make_tls_context(const TlsOptions& o, bool server) {
  if (o.insecure_plaintext) return nullptr;
  auto ctx = std::make_unique<asio::ssl::context>(server ? asio::ssl::context::tls_server
                                                         : asio::ssl::context::tls_client);
  SSL_CTX_set_min_proto_version(ctx->native_handle(), o.allow_tls12 ? TLS1_2_VERSION : TLS1_3_VERSION);
  // AES-128-GCM first: as strong as needed here and ~14% faster than AES-256-GCM on this CPU.
  SSL_CTX_set_ciphersuites(ctx->native_handle(),
                           "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256");
  auto load = [&](const std::string& what, const std::string& file, auto&& fn) {
    try {
      fn();
    } catch (const std::system_error& e) {
      throw terr(Errc::tls_failure, "cannot load " + what + " '" + file + "': " + e.code().message());
    }
  };
  if (server && (o.cert_file.empty() || o.key_file.empty()))
    throw terr(Errc::tls_failure, "server needs cert_file and key_file (or insecure_plaintext on loopback)");
  if (!o.cert_file.empty()) load("certificate", o.cert_file, [&] { ctx->use_certificate_chain_file(o.cert_file); });
  if (!o.key_file.empty())
    load("private key", o.key_file, [&] { ctx->use_private_key_file(o.key_file, asio::ssl::context::pem); });
  if (!o.ca_file.empty()) load("CA file", o.ca_file, [&] { ctx->load_verify_file(o.ca_file); });
  if (server) {
    if (o.require_client_cert) {
      if (o.ca_file.empty()) throw terr(Errc::tls_failure, "mutual TLS needs ca_file (the client CA)");
      ctx->set_verify_mode(asio::ssl::verify_peer | asio::ssl::verify_fail_if_no_peer_cert);
    } else {
      ctx->set_verify_mode(asio::ssl::verify_none);
    }
  } else {
    if (o.ca_file.empty()) throw terr(Errc::tls_failure, "client needs ca_file to verify the server");
    ctx->set_verify_mode(asio::ssl::verify_peer);
  }
  return ctx;
}

std::string peer_subject(SSL* ssl) {
  X509* cert = SSL_get1_peer_certificate(ssl);
  if (!cert) return "anonymous";
  BIO* bio = BIO_new(BIO_s_mem());
  X509_NAME_print_ex(bio, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string s(data, static_cast<std::size_t>(n));
  BIO_free(bio);
  X509_free(cert);
  return s;
}

// Either a TLS stream or a plain socket. `progress` runs whenever bytes move
// either way (per system call, not per operation): the stall timeouts watch it.
struct Stream {
  std::unique_ptr<TlsStream> tls;
  std::unique_ptr<tcp::socket> plain;
  std::function<void()> progress;

  void moved() {
    if (progress) progress();
  }
  // Call after creating `tls` or `plain`.
  void attach() {
    if (tls) tls->set_progress([this] { moved(); });
  }
  // transfer_all, reporting each step of a plain socket's operation.
  auto counted() {
    return [this, seen = std::size_t{0}](const std::error_code& ec, std::size_t n) mutable -> std::size_t {
      if (n > seen) {
        seen = n;
        moved();
      }
      return ec ? 0 : 65536;
    };
  }
  tcp::socket& socket() { return tls ? tls->next_layer() : *plain; }
  template <class Buffers, class Handler>
  void async_read(const Buffers& b, Handler&& h) {
    if (tls)
      return tls->async_read({asio::buffer_sequence_begin(b), asio::buffer_sequence_end(b)},
                             std::forward<Handler>(h));
    asio::async_read(*plain, b, counted(),
                     [this, h = std::forward<Handler>(h)](std::error_code ec, std::size_t n) mutable {
                       if (n > 0) moved();  // the last step, which the condition may not see
                       h(ec, n);
                     });
  }
  template <class Buffers, class Handler>
  void async_write(const Buffers& b, Handler&& h) {
    if (tls)
      return tls->async_write({asio::buffer_sequence_begin(b), asio::buffer_sequence_end(b)},
                              std::forward<Handler>(h));
    asio::async_write(*plain, b, counted(),
                      [this, h = std::forward<Handler>(h)](std::error_code ec, std::size_t n) mutable {
                        if (n > 0) moved();
                        h(ec, n);
                      });
  }
  void close() {
    std::error_code ignore;
    socket().shutdown(tcp::socket::shutdown_both, ignore);
    socket().close(ignore);
  }
};

std::vector<asio::const_buffer> frame_buffers(const EncodedFrame& f) {
  std::vector<asio::const_buffer> b;
  b.reserve(2 + f.sections.size());
  b.emplace_back(asio::buffer(f.header));
  b.emplace_back(asio::buffer(f.metadata));
  for (auto* s : f.sections) b.emplace_back(asio::buffer(s->bytes));
  return b;
}

// Bytes [off, off + n) of a frame's buffers: one burst of a paced write.
std::vector<asio::const_buffer> slice(const std::vector<asio::const_buffer>& all, std::uint64_t off,
                                      std::uint64_t n) {
  std::vector<asio::const_buffer> out;
  for (const auto& b : all) {
    if (n == 0) break;
    if (off >= b.size()) {
      off -= b.size();
      continue;
    }
    const std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(b.size() - off, n));
    out.push_back(asio::buffer(static_cast<const std::uint8_t*>(b.data()) + off, take));
    n -= take;
    off = 0;
  }
  return out;
}

// The size of the next paced burst: the whole rest when the link is unshaped.
std::uint64_t burst(const LinkShaper& shaper, const LinkOptions& link, std::uint64_t rest) {
  return shaper.enabled() ? std::min(rest, std::max<std::uint64_t>(1, link.burst_bytes)) : rest;
}

std::string ms_text(Millis t) {
  return std::to_string(t.count()) + " ms";
}

Message error_message(Errc e, const std::string& text) {
  Message m;
  m.body = ErrorInfo{static_cast<std::uint32_t>(e), text};
  return m;
}

}  // namespace

// ---------------------------------------------------------------- server

struct Session;

struct Server::Impl : std::enable_shared_from_this<Server::Impl> {
  Impl(ServerOptions o, Handler h) : opts(std::move(o)), handler(std::move(h)), workers(std::max(1, opts.worker_threads)),
                                     acceptor(io), shaper(opts.link) {}

  ServerOptions opts;
  Handler handler;
  asio::io_context io;
  asio::thread_pool workers;
  std::unique_ptr<asio::ssl::context> ssl;
  tcp::acceptor acceptor;
  // Keeps io.run() alive while a handler runs on a worker and nothing else is
  // pending (e.g. after stop() closed the acceptor); released once drained.
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  std::thread io_thread;
  std::atomic<int> sessions{0};
  std::atomic<bool> stopping{false};
  std::atomic<std::uint64_t> replays{0};
  std::list<std::weak_ptr<Session>> live;  // io thread only
  LinkShaper shaper;

  const Clock& clock() const { return opts.clock ? *opts.clock : steady_clock(); }

  // Replies for retried requests: the last one per session key, bounded by
  // count and by section bytes, least recently saved first out.
  struct Saved {
    std::uint64_t request_id;
    std::shared_ptr<const Message> reply;
    std::size_t bytes;
    std::list<std::string>::iterator age;
  };
  std::map<std::string, Saved> saved;  // io thread only, like the two below
  std::list<std::string> saved_order;  // least recently saved first
  std::size_t saved_bytes = 0;
  static constexpr std::size_t kMaxSaved = 4096;

  void forget(std::map<std::string, Saved>::iterator it) {
    saved_bytes -= it->second.bytes;
    saved_order.erase(it->second.age);
    saved.erase(it);
  }

  void save_reply(const std::string& key, std::uint64_t id, std::shared_ptr<const Message> reply) {
    if (key.empty()) return;
    if (auto it = saved.find(key); it != saved.end()) forget(it);  // superseded
    std::size_t bytes = 0;
    for (const auto& s : reply->sections) bytes += s.bytes.size();
    if (bytes > opts.max_replay_bytes) return;
    while (!saved_order.empty() && (saved.size() >= kMaxSaved || saved_bytes + bytes > opts.max_replay_bytes))
      forget(saved.find(saved_order.front()));
    saved_order.push_back(key);
    saved.emplace(key, Saved{id, std::move(reply), bytes, std::prev(saved_order.end())});
    saved_bytes += bytes;
  }

  void accept();
};

struct Session : std::enable_shared_from_this<Session> {
  Session(std::shared_ptr<Server::Impl> s, tcp::socket sock)
      : srv(std::move(s)), watch_timer(srv->io), pace_timer(srv->io), keepalive_timer(srv->io) {
    if (srv->ssl) stream.tls = std::make_unique<TlsStream>(std::move(sock), *srv->ssl);
    else stream.plain = std::make_unique<tcp::socket>(std::move(sock));
    stream.attach();
    std::error_code ec;
    // Replies are often small (a loss and a gradient header): never wait for Nagle.
    stream.socket().set_option(tcp::no_delay(true), ec);
    auto ep = stream.socket().remote_endpoint(ec);
    peer.address = ec ? "?" : ep.address().to_string() + ":" + std::to_string(ep.port());
    ++srv->sessions;
  }
  ~Session() { --srv->sessions; }

  // One frame on its way out: the message it references, how far it has got.
  struct Outgoing {
    std::shared_ptr<const Message> msg;
    EncodedFrame frame;
    std::vector<asio::const_buffer> buffers;
    std::uint64_t sent = 0;
    TimePoint start{};  // when pacing began; every burst is scheduled from it
    std::function<void()> then;
  };

  std::shared_ptr<Server::Impl> srv;
  Stream stream;
  asio::steady_timer watch_timer, pace_timer, keepalive_timer;
  ProgressWatch watch;
  PeerInfo peer;
  std::shared_ptr<Outgoing> queued;  // a reply waiting behind a Working notice
  std::error_code sticky;  // first error; every later operation fails with it
  bool busy = false;       // handling a request or writing its reply
  bool handling = false;   // the handler is running on a worker
  bool writing = false;    // a frame is being written
  bool closing = false;
  std::uint16_t peer_major = 0, peer_minor = 0;  // protocol of the request being handled
  std::uint64_t handled = 0;  // handler runs so far: tells a stale keep-alive tick from a live one

  const Clock& clock() const { return srv->clock(); }

  // ---- the watch: one deadline at a time, checked by one timer

  void watch_for(TimePoint now, Millis stall, TimePoint hard) {
    watch.start(now, stall, hard);
    schedule_watch();
  }
  void watch_frame(std::uint64_t bytes) {
    const auto& o = srv->opts;
    const auto now = clock().now();
    watch_for(now, o.stall_timeout,
              detail::frame_deadline(now, bytes, o.io_timeout, o.stall_timeout, o.min_rate_bits_per_s));
  }
  void unwatch() {
    watch.stop();
    watch_timer.cancel();
  }
  // The timer is only a wake-up: the verdict comes from the watch, so a
  // wake-up that progress made early just sleeps again.
  void schedule_watch() {
    const auto d = watch.deadline();
    if (d == detail::kNever) return;
    const auto now = clock().now();
    watch_timer.expires_after(d > now ? d - now : Clock::duration::zero());
    watch_timer.async_wait([self = shared_from_this()](std::error_code ec) {
      if (ec) return;
      if (self->watch.check(self->clock().now()) != ProgressWatch::Verdict::ok) {
        self->report(make_error_code(Errc::timeout), "no progress within the time allowed (stall, idle or handshake timeout)");
        return self->fail(make_error_code(Errc::timeout));
      }
      self->schedule_watch();
    });
  }
  void on_progress() {
    if (!watch.active()) return;
    const auto now = clock().now();
    watch.progress(now);
    // A simulated clock can pass a hard deadline between two wake-ups.
    if (watch.check(now) == ProgressWatch::Verdict::overdue) {
      report(make_error_code(Errc::timeout), "frame overdue (below the minimum rate or past io_timeout)");
      fail(make_error_code(Errc::timeout));
    }
  }

  void report(std::error_code ec, const std::string& why) {
    if (srv->opts.on_refusal) srv->opts.on_refusal(peer, ec, why);
  }

  void fail(std::error_code ec) {
    if (!sticky) sticky = ec;
    if (closing) return;
    closing = true;
    watch.stop();
    watch_timer.cancel();
    pace_timer.cancel();
    keepalive_timer.cancel();
    stream.close();
  }

  void start(bool over_capacity) {
    stream.progress = [w = weak_from_this()] {
      if (auto self = w.lock()) self->on_progress();
    };
    if (!stream.tls) {
      peer.identity = "plaintext:" + peer.address;
      return ready(over_capacity);
    }
    const auto now = clock().now();
    watch_for(now, Millis(0), detail::after(now, srv->opts.handshake_timeout));
    stream.tls->async_handshake(true, [self = shared_from_this(), over_capacity](std::error_code ec) {
      if (ec) {
        self->report(make_error_code(Errc::tls_failure), "TLS handshake failed: " + ec.message());
        return self->fail(make_error_code(Errc::tls_failure));
      }
      self->unwatch();
      self->peer.identity = peer_subject(self->stream.tls->native_handle());
      self->ready(over_capacity);
    });
  }

  void ready(bool over_capacity) {
    if (over_capacity)
      return send_and_close(error_message(Errc::server_busy, "server busy: " + std::to_string(srv->opts.max_connections) +
                                                                 " connections already open"));
    read_header();
  }

  void read_header() {
    if (srv->stopping) return fail(make_error_code(Errc::shutting_down));
    // Waiting for a request is not a stall: the idle timeout bounds it, and the whole header.
    const auto now = clock().now();
    watch_for(now, Millis(0), detail::after(now, srv->opts.idle_timeout));
    auto self = shared_from_this();
    detail::async_read_frame(
        [self](auto buffers, auto handler) { self->stream.async_read(buffers, std::move(handler)); },
        srv->opts.limits,
        [self](const FrameHeader& h) {
          self->peer_major = h.major;
          self->peer_minor = h.minor;
          self->watch_frame(std::uint64_t{h.metadata_len} + h.payload_len);
        },
        [self](std::error_code ec, Message m, const std::string& why) {
          if (ec == make_error_code(Errc::connection_closed)) return self->fail(ec);
          self->unwatch();
          if (ec) return self->send_and_close(error_message(static_cast<Errc>(ec.value()), why));
          self->on_message(std::move(m));
        });
  }

  void on_message(Message m) {
    const std::uint64_t id = m.request_id;
    if (auto* h = m.as<Hello>()) {
      if (h->protocol_major != kProtocolMajor)
        return send_and_close(error_message(Errc::version_mismatch, "protocol major " + std::to_string(h->protocol_major)));
      peer.session_key = peer.identity + "|" + h->client_id + "|" + std::to_string(h->session_nonce);
    }
    if (m.as<Goodbye>()) return fail(make_error_code(Errc::connection_closed));
    if (auto* p = m.as<Ping>()) {
      Message pong;
      pong.body = Pong{p->nonce};
      return reply(id, std::make_shared<const Message>(std::move(pong)), false);
    }
    if (!peer.session_key.empty() && !m.as<Hello>()) {
      auto it = srv->saved.find(peer.session_key);
      if (it != srv->saved.end() && it->second.request_id == id) {
        ++srv->replays;
        return reply(id, it->second.reply, false);
      }
    }
    busy = true;
    handling = true;
    const std::uint64_t run = ++handled;
    keep_alive(id, run, clock().now());
    // Only step replies are saved for replay: a Hello on a new connection must
    // not displace the reply a retried step is waiting for.
    const bool save = !m.as<Hello>();
    auto msg = std::make_shared<Message>(std::move(m));
    asio::post(srv->workers, [self = shared_from_this(), msg, id, save] {
      Message r;
      try {
        r = self->srv->handler(self->peer, std::move(*msg));
      } catch (const std::exception& e) {
        r = error_message(static_cast<Errc>(1000), e.what());
      }
      auto rp = std::make_shared<const Message>(std::move(r));
      asio::post(self->srv->io, [self, rp, id, save] {
        self->handling = false;
        self->keepalive_timer.cancel();
        if (save && !rp->as<ErrorInfo>()) self->srv->save_reply(self->peer.session_key, id, rp);
        self->reply(id, rp, false);
      });
    });
  }

  // While handler run `run` lasts, a Working notice every keepalive_interval
  // (real time, not the injected clock: it is this side's own heartbeat).
  void keep_alive(std::uint64_t id, std::uint64_t run, TimePoint began) {
    const Millis every = srv->opts.keepalive_interval;
    if (every.count() <= 0 || !knows_working(peer_major, peer_minor)) return;
    keepalive_timer.expires_after(every);
    keepalive_timer.async_wait([self = shared_from_this(), id, run, began](std::error_code ec) {
      if (ec || self->sticky || !self->handling || self->handled != run) return;
      Message w;
      w.body = Working{static_cast<std::uint64_t>(
          std::chrono::duration_cast<Millis>(self->clock().now() - began).count())};
      self->send(std::make_shared<const Message>(std::move(w)), id, [self, id, run, began] {
        if (self->handling && self->handled == run) self->keep_alive(id, run, began);
      });
    });
  }

  void reply(std::uint64_t id, std::shared_ptr<const Message> r, bool then_close) {
    if (sticky) return;
    busy = true;
    send(std::move(r), id, [self = shared_from_this(), then_close] {
      self->busy = false;
      if (then_close || self->srv->stopping) return self->fail(make_error_code(Errc::shutting_down));
      self->read_header();
    });
  }

  // One frame out, one at a time (a reply waits for a Working notice in
  // flight), under the frame watch; `then` runs once it is all written.
  void send(std::shared_ptr<const Message> msg, std::uint64_t id, std::function<void()> then) {
    auto out = std::make_shared<Outgoing>();
    out->msg = std::move(msg);
    try {
      out->frame = encode_frame(*out->msg, id);
    } catch (const TransportError& e) {
      out->msg = std::make_shared<const Message>(error_message(Errc::section_mismatch, e.what()));
      out->frame = encode_frame(*out->msg, id);
    }
    out->buffers = frame_buffers(out->frame);
    out->then = std::move(then);
    if (writing) {
      queued = std::move(out);
      return;
    }
    start_write(std::move(out));
  }

  void start_write(std::shared_ptr<Outgoing> out) {
    writing = true;
    out->start = clock().now();
    watch_frame(out->frame.total_bytes());
    pace(std::move(out));
  }

  // A shaped link sends in bursts at its rate, so the peer sees steady
  // progress rather than a long silence and then the whole frame.
  void pace(std::shared_ptr<Outgoing> out) {
    const std::uint64_t n = burst(srv->shaper, srv->opts.link, out->frame.total_bytes() - out->sent);
    const auto wait =
        srv->shaper.enabled() ? clock().until(srv->shaper.schedule(n, out->start)) : Clock::duration::zero();
    if (wait <= Clock::duration::zero()) return write_burst(std::move(out), n);
    pace_timer.expires_after(wait);
    pace_timer.async_wait([self = shared_from_this(), out, n](std::error_code ec) {
      if (!ec) self->write_burst(out, n);
    });
  }

  void write_burst(std::shared_ptr<Outgoing> out, std::uint64_t n) {
    if (sticky) return;
    stream.async_write(slice(out->buffers, out->sent, n),
                       [self = shared_from_this(), out, n](std::error_code ec, std::size_t) {
                         if (ec) {
                           self->writing = false;
                           self->busy = false;
                           return self->fail(make_error_code(Errc::connection_closed));
                         }
                         out->sent += n;
                         if (out->sent < out->frame.total_bytes()) return self->pace(out);
                         self->writing = false;
                         self->unwatch();
                         out->then();
                         if (self->queued && !self->writing && !self->sticky)
                           self->start_write(std::move(self->queued));
                       });
  }

  void send_and_close(Message m) {
    if (const auto* e = m.as<ErrorInfo>()) report(std::error_code(static_cast<int>(e->code), transport_category()), e->text);
    reply(0, std::make_shared<const Message>(std::move(m)), true);
  }
};

void Server::Impl::accept() {
  acceptor.async_accept([self = shared_from_this()](std::error_code ec, tcp::socket sock) {
    if (ec || self->stopping) return;
    const bool over = self->sessions.load() >= self->opts.max_connections;
    auto s = std::make_shared<Session>(self, std::move(sock));
    self->live.remove_if([](const std::weak_ptr<Session>& w) { return w.expired(); });
    self->live.push_back(s);
    s->start(over);
    self->accept();
  });
}

Server::Server(ServerOptions options, Handler handler)
    : impl_(std::make_shared<Impl>(std::move(options), std::move(handler))) {}

Server::~Server() { stop(); }

void Server::start() {
  auto& o = impl_->opts;
  std::error_code ec;
  auto addr = asio::ip::make_address(o.bind_address, ec);
  if (ec) throw terr(Errc::connection_closed, "bad bind address '" + o.bind_address + "'");
  if (o.tls.insecure_plaintext && !addr.is_loopback())
    throw terr(Errc::insecure_refused, "insecure_plaintext refused: " + o.bind_address + " is not a loopback address");
  impl_->ssl = make_tls_context(o.tls, true);
  tcp::endpoint ep(addr, o.port);
  impl_->acceptor.open(ep.protocol());
  impl_->acceptor.set_option(tcp::acceptor::reuse_address(true));
  impl_->acceptor.bind(ep, ec);
  if (ec) throw terr(Errc::connection_closed, "cannot bind " + o.bind_address + ":" + std::to_string(o.port) + ": " + ec.message());
  impl_->acceptor.listen();
  impl_->accept();
  impl_->work.emplace(impl_->io.get_executor());
  impl_->io_thread = std::thread([impl = impl_] { impl->io.run(); });
}

std::uint16_t Server::port() const {
  std::error_code ec;
  return impl_->acceptor.local_endpoint(ec).port();
}

void Server::stop() {
  if (!impl_ || !impl_->io_thread.joinable()) return;
  auto impl = impl_;
  asio::post(impl->io, [impl] {
    impl->stopping = true;
    std::error_code ignore;
    impl->acceptor.close(ignore);
    for (auto& w : impl->live)
      if (auto s = w.lock(); s && !s->busy) s->fail(make_error_code(Errc::shutting_down));
  });
  // Let in-flight replies drain.
  auto deadline = std::chrono::steady_clock::now() + impl->opts.drain_timeout;
  while (impl->sessions.load() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  // Then close whatever is left, finish running handlers, and let the loop run
  // dry: pending handlers own sessions (and through them this Impl), so they
  // must complete rather than be abandoned by io.stop().
  asio::post(impl->io, [impl] {
    for (auto& w : impl->live)
      if (auto s = w.lock()) s->fail(make_error_code(Errc::shutting_down));
  });
  impl->workers.join();
  impl->work.reset();
  auto io_done = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!impl->io.stopped() && std::chrono::steady_clock::now() < io_done)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  impl->io.stop();  // only matters if something never completed
  impl->io_thread.join();
}

int Server::active_sessions() const { return impl_->sessions.load(); }
std::uint64_t Server::replays() const { return impl_->replays.load(); }

// ---------------------------------------------------------------- client

struct Client::Impl {
  explicit Impl(ClientOptions o) : opts(std::move(o)), shaper(std::make_unique<LinkShaper>(opts.link)) {
    ssl = make_tls_context(opts.tls, false);
    stream.progress = [this] { watch.progress(clock().now()); };
    std::random_device rd;
    do nonce = (std::uint64_t{rd()} << 32) ^ rd();
    while (nonce == 0);  // 0 means "choose one"
  }

  ClientOptions opts;
  asio::io_context io;
  std::unique_ptr<asio::ssl::context> ssl;
  Stream stream;
  bool connected = false;
  std::optional<Hello> hello;
  Welcome welcome;
  std::uint64_t next_id = 0;
  std::uint64_t nonce;
  std::uint64_t reconnects = 0;
  std::uint64_t working = 0;
  BandwidthEstimator bw;
  std::unique_ptr<LinkShaper> shaper;  // replaced by set_link
  // When the emulated line has serialised every byte written so far, at the
  // link's rate (no bucket credit): the end of a frame's time on the link.
  TimePoint line_free{};
  struct Posted {
    std::uint64_t id;
    TimePoint at;  // when its write began
    std::uint64_t bytes;
  };
  std::deque<Posted> outstanding;  // posted and not yet collected, oldest first
  BandwidthEstimator acked;        // bytes per second of acknowledged posts
  TimePoint last_ack{};
  std::uint64_t last_frame_bytes = 0;  // of the latest write_frame
  ProgressWatch watch;
  std::string overdue_what;  // the hard deadline of the current watch, for messages

  const Clock& clock() const { return opts.clock ? *opts.clock : steady_clock(); }

  void watch_for(Millis stall, Millis cap, const char* cap_name) {
    const auto now = clock().now();
    watch.start(now, stall, detail::after(now, cap));
    overdue_what = std::string(cap_name) + " of " + ms_text(cap) + " reached";
  }

  // Runs async work started by `start` until it completes or the watch
  // expires; then the socket is closed so the operation ends, `why` names the
  // limit, and Errc::timeout returns. The loop wakes for every handler, so
  // progress is seen as it happens, and a simulated clock's jumps are too.
  template <class Start>
  std::error_code run_watched(Start&& start, std::string& why) {
    std::optional<std::error_code> result;
    start(result);
    io.restart();
    while (!result) {
      const auto now = clock().now();
      const auto verdict = watch.check(now);
      if (verdict != ProgressWatch::Verdict::ok) {
        why = watch.describe(verdict, overdue_what.c_str());
        stream.close();
        io.restart();
        io.run();
        return make_error_code(Errc::timeout);
      }
      const auto d = watch.deadline();
      const Clock::duration wait = d == detail::kNever ? std::chrono::hours(1) : d - now;
      if (io.run_one_for(std::min<Clock::duration>(wait, std::chrono::hours(1))) == 0 && io.stopped() &&
          !result) {
        why = "connection operation ended without a result";
        return make_error_code(Errc::connection_closed);
      }
    }
    return *result;
  }

  void drop() {
    if (stream.tls || stream.plain) stream.close();
    stream.tls.reset();
    stream.plain.reset();
    connected = false;
  }

  std::error_code open(std::string& why) {
    drop();
    tcp::resolver resolver(io);
    std::error_code ec;
    auto results = resolver.resolve(opts.host, std::to_string(opts.port), ec);
    if (ec) {
      why = "cannot resolve " + opts.host + ": " + ec.message();
      return make_error_code(Errc::connection_closed);
    }
    if (opts.tls.insecure_plaintext) {
      for (const auto& r : results)
        if (!r.endpoint().address().is_loopback()) {
          why = "insecure_plaintext refused: " + opts.host + " is not a loopback address";
          return make_error_code(Errc::insecure_refused);
        }
    }
    if (ssl) stream.tls = std::make_unique<TlsStream>(io, *ssl);
    else stream.plain = std::make_unique<tcp::socket>(io);
    stream.attach();
    watch_for(Millis(0), opts.connect_timeout, "connect_timeout");
    std::string timeout_why;
    ec = run_watched(
        [&](auto& res) {
          asio::async_connect(stream.socket(), results,
                              [&](std::error_code e, const tcp::endpoint&) { res = e; });
        },
        timeout_why);
    if (ec) {
      why = "cannot connect to " + opts.host + ":" + std::to_string(opts.port) + ": " + ec.message();
      return make_error_code(ec == make_error_code(Errc::timeout) ? Errc::timeout : Errc::connection_closed);
    }
    stream.socket().set_option(tcp::no_delay(true));
    if (stream.tls) {
      const std::string& name = opts.tls.server_name.empty() ? opts.host : opts.tls.server_name;
      SSL* s = stream.tls->native_handle();
      SSL_set_tlsext_host_name(s, name.c_str());
      SSL_set_hostflags(s, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      // OpenSSL checks the name (DNS or IP SAN) during verification.
      asio::error_code ipec;
      auto ip = asio::ip::make_address(name, ipec);
      if (!ipec) X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s), ip.to_string().c_str());
      else SSL_set1_host(s, name.c_str());
      ec = run_watched(
          [&](auto& res) { stream.tls->async_handshake(false, [&](std::error_code e) { res = e; }); },
          timeout_why);
      if (ec) {
        long v = SSL_get_verify_result(s);
        why = "TLS handshake with " + opts.host + " failed: " +
              (v != X509_V_OK ? std::string(X509_verify_cert_error_string(v)) : ec.message());
        return make_error_code(Errc::tls_failure);
      }
    }
    watch.stop();
    connected = true;
    return {};
  }

  // Writes one frame under the current watch, in bursts at the link's rate
  // when shaped (every burst scheduled from the frame's start).
  std::error_code write_frame(const Message& m, std::uint64_t id, std::string& why) {
    EncodedFrame f = encode_frame(m, id);
    const auto buffers = frame_buffers(f);
    const std::uint64_t total = f.total_bytes();
    last_frame_bytes = total;
    const auto t0 = clock().now();
    for (std::uint64_t off = 0; off < total;) {
      const std::uint64_t n = burst(*shaper, opts.link, total - off);
      if (shaper->enabled()) std::this_thread::sleep_for(clock().until(shaper->schedule(n, t0)));
      auto ec = run_watched(
          [&](auto& res) {
            stream.async_write(slice(buffers, off, n), [&](std::error_code e, std::size_t) { res = e; });
          },
          why);
      if (ec) return ec;
      off += n;
    }
    // The pacing above lets the last burst go as soon as the bucket has room
    // for it, so the write returns up to one burst's link time early (a frame
    // under one burst: at loopback speed), and a frame written while earlier
    // ones still drain starts before the link can carry it. The frame holds
    // the emulated link from when the link is free for it until its last byte
    // is serialised at the link's rate, or until the socket took it, if later.
    auto start = t0, done = clock().now();
    if (opts.link.rate_bits_per_s > 0) {
      const auto link_time = std::chrono::duration_cast<Clock::duration>(
          std::chrono::duration<double>(8.0 * static_cast<double>(total) / opts.link.rate_bits_per_s));
      start = std::max(t0, line_free);
      line_free = start + link_time;
      done = std::max(done, line_free);
    }
    bw.record(total, std::chrono::duration<double>(done - start).count());
    return {};
  }

  std::error_code read_frame(Message& out, std::string& why) {
    std::error_code gate;
    std::string gate_why;  // kept apart: a time-out's reason must not be overwritten by the aborted read's
    auto ec = run_watched(
        [&](auto& res) {
          detail::async_read_frame([this](auto b, auto h) { stream.async_read(b, std::move(h)); },
                                   opts.limits, [](const FrameHeader&) {},
                                   [&](std::error_code e, Message m, const std::string& w) {
                                     gate = e;
                                     gate_why = w;
                                     out = std::move(m);
                                     res = std::error_code{};
                                   });
        },
        why);
    if (ec) return ec;
    if (gate) why = gate_why;
    return gate;
  }

  // One exchange on the current connection.
  std::error_code exchange(const Message& m, std::uint64_t id, Message& reply, std::string& why) {
    watch_for(opts.stall_timeout, opts.request_timeout, "request_timeout");
    auto ec = write_frame(m, id, why);
    // Working notices for this request mean the server is computing: its
    // bytes reset the stall timeout (not the cap), and the reply follows.
    while (!ec) {
      ec = read_frame(reply, why);
      if (ec || !reply.as<Working>() || reply.request_id != id) break;
      ++working;
    }
    watch.stop();
    if (!ec && reply.request_id != id && !reply.as<ErrorInfo>()) {
      why = "reply id " + std::to_string(reply.request_id) + " does not match request " + std::to_string(id);
      ec = make_error_code(Errc::malformed_metadata);
    }
    return ec;
  }

  // An Error reply. server_busy returns its code, to be retried on a new
  // connection; anything else throws with the server's code and text.
  std::error_code refused(const ErrorInfo& e, std::string& why) {
    if (e.code == static_cast<std::uint32_t>(Errc::server_busy)) {
      why = e.text;
      return make_error_code(Errc::server_busy);
    }
    throw TransportError(make_error_code(Errc::peer_error), "server error " + std::to_string(e.code) + ": " + e.text,
                         e.code, e.text);
  }

  static const Welcome& expect_welcome(const Message& r) {
    auto* w = r.as<Welcome>();
    if (!w)
      throw TransportError(make_error_code(Errc::malformed_metadata),
                           std::string("expected welcome, got ") + to_string(r.type()));
    return *w;
  }

  // Opens a connection and, unless `is_hello`, resumes the session on it by
  // re-sending the kept Hello.
  std::error_code open_session(bool is_hello, std::string& why) {
    auto ec = open(why);
    if (ec || !hello || is_hello) return ec;
    Message hm;
    hm.body = *hello;
    Message wr;
    ec = exchange(hm, ++next_id, wr, why);
    if (auto* e = wr.as<ErrorInfo>(); !ec && e) ec = refused(*e, why);
    if (ec) {
      drop();
      return ec;
    }
    welcome = expect_welcome(wr);
    return {};
  }

  std::string peer_name() const { return opts.host + ":" + std::to_string(opts.port); }

  // A failure with posted requests outstanding: no retry (the server may have
  // applied some of them), the connection is dropped and the caller told how
  // many were lost.
  [[noreturn]] void fail_posted(std::error_code ec, const char* what, const std::string& why) {
    const auto lost = outstanding.size();
    drop();
    outstanding.clear();
    throw TransportError(ec, std::string(what) + " " + peer_name() + " failed: " + (why.empty() ? ec.message() : why) +
                                 "; " + std::to_string(lost) + " posted request(s) lost");
  }

  Message request_with_retry(const Message& m, std::uint64_t id, bool is_hello) {
    if (!outstanding.empty())
      throw std::logic_error("request() with " + std::to_string(outstanding.size()) +
                             " posted request(s) outstanding: collect() them first");
    Millis backoff = opts.backoff_initial;
    std::string why;
    std::error_code ec;
    for (int attempt = 1; attempt <= std::max(1, opts.max_attempts); ++attempt) {
      if (attempt > 1) {
        std::this_thread::sleep_for(clock().until(clock().now() + backoff));
        backoff = std::min(opts.backoff_max, backoff * 2);
        ++reconnects;
      }
      if (!connected) {
        ec = open_session(is_hello, why);
        if (ec == make_error_code(Errc::insecure_refused)) break;
        if (ec) continue;
      }
      Message reply;
      ec = exchange(m, id, reply, why);
      if (auto* e = reply.as<ErrorInfo>(); !ec && e) ec = refused(*e, why);
      if (!ec) return reply;
      drop();
      // A refused certificate will not change on retry: give up after one reconnect.
      if (ec == make_error_code(Errc::tls_failure) && attempt >= 2) break;
    }
    throw TransportError(ec ? ec : make_error_code(Errc::retries_exhausted),
                         "request failed after retries: " + (why.empty() ? ec.message() : why));
  }
};

Client::Client(ClientOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Client::~Client() {
  try {
    close();
  } catch (...) {
  }
}

Welcome Client::connect(Hello hello) {
  if (hello.session_nonce == 0) hello.session_nonce = impl_->nonce;
  impl_->hello = hello;
  Message m;
  m.body = std::move(hello);
  impl_->welcome = Impl::expect_welcome(impl_->request_with_retry(m, ++impl_->next_id, true));
  return impl_->welcome;
}

void Client::update_hello(const Hello& hello) {
  const std::uint64_t in_use = impl_->hello ? impl_->hello->session_nonce : impl_->nonce;
  impl_->hello = hello;
  if (impl_->hello->session_nonce == 0) impl_->hello->session_nonce = in_use;
}

Welcome Client::last_welcome() const { return impl_->welcome; }

Message Client::request(Message m) { return impl_->request_with_retry(m, ++impl_->next_id, false); }

void Client::close() {
  impl_->outstanding.clear();
  if (!impl_->connected) return;
  Message g;
  g.body = Goodbye{"client closed"};
  std::string ignored;
  impl_->watch_for(impl_->opts.stall_timeout, Millis(0), "");
  impl_->write_frame(g, ++impl_->next_id, ignored);
  impl_->watch.stop();
  impl_->drop();
}

std::uint64_t Client::post(Message m) {
  auto& c = *impl_;
  const auto window = static_cast<std::size_t>(std::max(1, c.opts.max_in_flight));
  if (c.outstanding.size() >= window)
    throw std::logic_error("post(): " + std::to_string(c.outstanding.size()) +
                           " request(s) already in flight, the max_in_flight window; collect() one first");
  std::string why;
  std::error_code ec;
  if (!c.connected) ec = c.open_session(false, why);
  const std::uint64_t id = ++c.next_id;
  const auto began = c.clock().now();
  if (!ec) {
    c.watch_for(c.opts.stall_timeout, c.opts.request_timeout, "request_timeout");
    ec = c.write_frame(m, id, why);
    c.watch.stop();
  }
  if (ec) c.fail_posted(ec, "post to", why);
  c.outstanding.push_back({id, began, c.last_frame_bytes});
  return id;
}

Message Client::collect() {
  auto& c = *impl_;
  if (c.outstanding.empty()) throw std::logic_error("collect(): no posted request is outstanding");
  const std::uint64_t id = c.outstanding.front().id;
  std::string why;
  Message reply;
  c.watch_for(c.opts.stall_timeout, c.opts.request_timeout, "request_timeout");
  std::error_code ec;
  while (!(ec = c.read_frame(reply, why)) && reply.as<Working>()) ++c.working;  // a posted request is being handled
  c.watch.stop();
  auto* e = reply.as<ErrorInfo>();
  if (!ec && reply.request_id != id && !(e && reply.request_id == 0)) {
    why = "reply id " + std::to_string(reply.request_id) + " where " + std::to_string(id) + " was expected";
    ec = make_error_code(Errc::malformed_metadata);
  }
  if (!ec && e && reply.request_id == 0) {  // the server refused the connection and closes it
    why = "server error " + std::to_string(e->code) + ": " + e->text;
    ec = make_error_code(Errc::peer_error);
  }
  if (ec) c.fail_posted(ec, "collect from", why);
  // A frame's delivery time: from its write, or from the previous
  // acknowledgement if that came later (it queued behind earlier frames),
  // until its own acknowledgement.
  const auto now = c.clock().now();
  const auto& done = c.outstanding.front();
  c.acked.record(done.bytes, std::chrono::duration<double>(now - std::max(done.at, c.last_ack)).count());
  c.last_ack = now;
  c.outstanding.pop_front();
  if (e)
    throw TransportError(make_error_code(Errc::peer_error), "server error " + std::to_string(e->code) + ": " + e->text,
                         e->code, e->text);
  return reply;
}

std::size_t Client::in_flight() const { return impl_->outstanding.size(); }

void Client::set_link(LinkOptions link) {
  impl_->opts.link = link;
  impl_->shaper = std::make_unique<LinkShaper>(link);
}

const BandwidthEstimator& Client::bandwidth() const { return impl_->bw; }
const BandwidthEstimator& Client::acked_bandwidth() const { return impl_->acked; }
std::uint64_t Client::reconnects() const { return impl_->reconnects; }
std::uint64_t Client::working_notices() const {
  return impl_->working;
}

}  // namespace seam::transport
