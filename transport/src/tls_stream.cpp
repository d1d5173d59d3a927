#include "tls_stream.hpp"

#include <openssl/err.h>

#include <asio/error.hpp>
#include <asio/post.hpp>
#include <asio/ssl/error.hpp>
#include <asio/write.hpp>
#include <climits>

namespace seam::transport::detail {

namespace {
constexpr std::size_t kRing = 128 * 1024;       // each direction of the BIO pair
constexpr std::size_t kWriteBatch = 64 * 1024;  // plaintext encrypted per socket write
}  // namespace

template <class Buffer>
struct TlsStream::Op {
  Op(std::vector<Buffer> b, Handler h) : buffers(std::move(b)), done(std::move(h)) {
    for (const auto& x : buffers) size += x.size();
  }
  // The part of the current buffer not yet done (skipping finished ones).
  Buffer rest() {
    while (offset == buffers[index].size()) {
      ++index;
      offset = 0;
    }
    return buffers[index] + offset;
  }
  void advance(std::size_t n) {
    offset += n;
    total += n;
  }
  bool finished() const { return total == size; }

  std::vector<Buffer> buffers;
  std::size_t index = 0, offset = 0, total = 0, size = 0;
  Handler done;
};

TlsStream::TlsStream(asio::ip::tcp::socket socket, asio::ssl::context& ctx) : socket_(std::move(socket)) {
  ssl_ = SSL_new(ctx.native_handle());
  BIO* inner = nullptr;
  if (!ssl_ || BIO_new_bio_pair(&inner, kRing, &net_, kRing) != 1) {
    if (ssl_) SSL_free(ssl_);
    throw std::system_error(std::error_code(static_cast<int>(ERR_get_error()), asio::error::get_ssl_category()),
                            "TLS session setup");
  }
  SSL_set_bio(ssl_, inner, inner);
  SSL_set_mode(ssl_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
}

TlsStream::TlsStream(asio::io_context& io, asio::ssl::context& ctx) : TlsStream(asio::ip::tcp::socket(io), ctx) {}

TlsStream::~TlsStream() {
  SSL_free(ssl_);  // frees the inner BIO
  BIO_free(net_);
}

std::error_code TlsStream::ssl_error(int ret) {
  const int e = SSL_get_error(ssl_, ret);
  if (e == SSL_ERROR_ZERO_RETURN) return asio::error::eof;  // close_notify
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code != 0) return std::error_code(static_cast<int>(code), asio::error::get_ssl_category());
  if (e == SSL_ERROR_SYSCALL) return asio::error::eof;  // the pair ran dry: truncated stream
  return asio::ssl::error::unspecified_system_error;
}

void TlsStream::complete(Handler h, std::error_code ec, std::size_t n) {
  asio::post(socket_.get_executor(), [h = std::move(h), ec, n] { h(ec, n); });
}

// Sends whatever ciphertext OpenSSL has put in the pair, straight from its
// ring, one system call at a time so that a slow link reports each step.
void TlsStream::flush(std::function<void(std::error_code)> then) {
  char* data = nullptr;
  const int n = BIO_nread0(net_, &data);
  if (n <= 0) return then({});
  socket_.async_write_some(asio::buffer(data, static_cast<std::size_t>(n)),
                           [this, then = std::move(then)](std::error_code ec, std::size_t sent) mutable {
                             if (sent > 0 && progress_) progress_();
                             if (ec) return then(ec);
                             char* ignored = nullptr;
                             BIO_nread(net_, &ignored, static_cast<int>(sent));
                             flush(std::move(then));
                           });
}

// Reads whatever ciphertext has arrived (at least one byte) straight into the ring.
void TlsStream::fill(std::function<void(std::error_code)> then) {
  char* space = nullptr;
  const int n = BIO_nwrite0(net_, &space);
  if (n <= 0) return then(asio::ssl::error::unspecified_system_error);  // cannot happen: records < ring
  socket_.async_read_some(asio::buffer(space, static_cast<std::size_t>(n)),
                          [this, then = std::move(then)](std::error_code ec, std::size_t got) mutable {
                            if (got > 0 && progress_) progress_();
                            if (ec) return then(ec);
                            char* ignored = nullptr;
                            BIO_nwrite(net_, &ignored, static_cast<int>(got));
                            then({});
                          });
}

void TlsStream::async_handshake(bool server, std::function<void(std::error_code)> done) {
  if (server) SSL_set_accept_state(ssl_);
  else SSL_set_connect_state(ssl_);
  handshake_step(std::move(done));
}

void TlsStream::handshake_step(std::function<void(std::error_code)> done) {
  ERR_clear_error();
  const int r = SSL_do_handshake(ssl_);
  if (r == 1) {
    return flush([this, done = std::move(done)](std::error_code ec) mutable {
      asio::post(socket_.get_executor(), [done = std::move(done), ec] { done(ec); });
    });
  }
  if (SSL_get_error(ssl_, r) == SSL_ERROR_WANT_READ) {
    return flush([this, done = std::move(done)](std::error_code ec) mutable {
      if (ec) return done(ec);
      fill([this, done = std::move(done)](std::error_code ec2) mutable {
        if (ec2) return done(ec2);
        handshake_step(std::move(done));
      });
    });
  }
  const std::error_code err = ssl_error(r);
  // Send the alert OpenSSL queued (e.g. "unknown CA") before reporting.
  flush([this, done = std::move(done), err](std::error_code) mutable {
    asio::post(socket_.get_executor(), [done = std::move(done), err] { done(err); });
  });
}

void TlsStream::async_read(std::vector<asio::mutable_buffer> buffers, Handler done) {
  read_step(std::make_shared<ReadOp>(std::move(buffers), std::move(done)));
}

void TlsStream::read_step(std::shared_ptr<ReadOp> op) {
  while (!op->finished()) {
    const asio::mutable_buffer b = op->rest();
    ERR_clear_error();
    const int n = SSL_read(ssl_, b.data(), static_cast<int>(std::min<std::size_t>(b.size(), INT_MAX)));
    if (n > 0) {
      op->advance(static_cast<std::size_t>(n));
      continue;
    }
    if (SSL_get_error(ssl_, n) != SSL_ERROR_WANT_READ) return complete(std::move(op->done), ssl_error(n), op->total);
    // Anything the read made OpenSSL send (e.g. a key update) goes out first.
    return flush([this, op](std::error_code ec) {
      if (ec) return complete(std::move(op->done), ec, op->total);
      fill([this, op](std::error_code ec2) {
        if (ec2) return complete(std::move(op->done), ec2, op->total);
        read_step(op);
      });
    });
  }
  complete(std::move(op->done), {}, op->total);
}

void TlsStream::async_write(std::vector<asio::const_buffer> buffers, Handler done) {
  write_step(std::make_shared<WriteOp>(std::move(buffers), std::move(done)));
}

// Encrypts up to kWriteBatch bytes (or until the ring is full), sends them, and
// goes on: the peer decrypts one batch while this side encrypts the next.
void TlsStream::write_step(std::shared_ptr<WriteOp> op) {
  std::size_t budget = kWriteBatch;
  while (budget > 0 && !op->finished()) {
    const asio::const_buffer b = op->rest();
    const std::size_t len = std::min({b.size(), budget, std::size_t{INT_MAX}});
    ERR_clear_error();
    const int n = SSL_write(ssl_, b.data(), static_cast<int>(len));
    if (n <= 0) {
      if (SSL_get_error(ssl_, n) == SSL_ERROR_WANT_WRITE) break;  // ring full: send, then go on
      return complete(std::move(op->done), ssl_error(n), op->total);
    }
    op->advance(static_cast<std::size_t>(n));
    budget -= static_cast<std::size_t>(n);
  }
  flush([this, op](std::error_code ec) {
    if (ec) return complete(std::move(op->done), ec, op->total);
    if (!op->finished()) return write_step(op);
    complete(std::move(op->done), {}, op->total);
  });
}

}  // namespace seam::transport::detail
