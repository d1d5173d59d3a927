#pragma once
// TLS over a TCP socket with large batches: OpenSSL writes records into a
// 128 KiB BIO pair and the socket sends them many records at a time (and
// reads as much as has arrived), instead of one 16 KiB record per system
// call and per handler as asio::ssl::stream does. The ciphertext is sent
// straight out of, and read straight into, the pair's ring buffer.
//
// One read and one write may be in flight at a time, but not two of either;
// Seam's sessions alternate them. Handlers run through the socket's executor,
// never inside the call that starts the operation. Internal; not installed.
#include <openssl/ssl.h>

#include <asio/buffer.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/ssl/context.hpp>
#include <functional>
#include <system_error>
#include <vector>

namespace seam::transport::detail {

class TlsStream {
 public:
  using Handler = std::function<void(std::error_code, std::size_t)>;

  TlsStream(asio::ip::tcp::socket socket, asio::ssl::context& ctx);
  TlsStream(asio::io_context& io, asio::ssl::context& ctx);
  ~TlsStream();
  TlsStream(const TlsStream&) = delete;
  TlsStream& operator=(const TlsStream&) = delete;

  asio::ip::tcp::socket& next_layer() { return socket_; }
  // Called (on the socket's executor) whenever ciphertext moves either way:
  // the channel's stall timeout measures this, not whole operations.
  void set_progress(std::function<void()> f) { progress_ = std::move(f); }
  SSL* native_handle() { return ssl_; }

  void async_handshake(bool server, std::function<void(std::error_code)> done);
  // Fills every buffer, or fails (eof: the peer closed).
  void async_read(std::vector<asio::mutable_buffer> buffers, Handler done);
  // Sends every buffer, or fails.
  void async_write(std::vector<asio::const_buffer> buffers, Handler done);

 private:
  template <class Buffer>
  struct Op;  // one read or write: its buffers and how far it has got
  using ReadOp = Op<asio::mutable_buffer>;
  using WriteOp = Op<asio::const_buffer>;
  void handshake_step(std::function<void(std::error_code)> done);
  void read_step(std::shared_ptr<ReadOp> op);
  void write_step(std::shared_ptr<WriteOp> op);
  void flush(std::function<void(std::error_code)> then);
  void fill(std::function<void(std::error_code)> then);
  std::error_code ssl_error(int ret);
  void complete(Handler h, std::error_code ec, std::size_t n);

  asio::ip::tcp::socket socket_;
  SSL* ssl_ = nullptr;
  BIO* net_ = nullptr;  // our end of the pair; OpenSSL holds the other
  std::function<void()> progress_;
};

}  // namespace seam::transport::detail
