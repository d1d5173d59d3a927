#pragma once
// Shared helpers for the transport tests: a PKI made at test time, servers,
// and a raw TCP peer for sending hand-made bytes.
#include <gtest/gtest.h>

#include <asio.hpp>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "seam/transport/channel.hpp"

namespace seam::transport::test {

inline const std::string& pki_dir() {
  static const std::string dir = [] {
    auto d = std::filesystem::temp_directory_path() / ("seam_pki_" + std::to_string(::getpid()));
    std::string cmd = std::string("bash ") + SEAM_SOURCE_DIR + "/scripts/gen-certs.sh " + d.string() + " >/dev/null";
    if (std::system(cmd.c_str()) != 0) throw std::runtime_error("gen-certs.sh failed");
    return d.string();
  }();
  return dir;
}

inline std::string pki(const std::string& f) { return pki_dir() + "/" + f; }

inline TlsOptions server_tls() {
  TlsOptions t;
  t.cert_file = pki("server.pem");
  t.key_file = pki("server.key");
  t.ca_file = pki("ca.pem");
  return t;
}

inline TlsOptions client_tls(const std::string& who = "client") {
  TlsOptions t;
  t.ca_file = pki("ca.pem");
  if (!who.empty()) {
    t.cert_file = pki(who + ".pem");
    t.key_file = pki(who + ".key");
  }
  return t;
}

inline TlsOptions plaintext() {
  TlsOptions t;
  t.insecure_plaintext = true;
  return t;
}

// Echo: Forward -> Backward with the same step and sections; loss = payload bytes.
inline Message echo(const PeerInfo&, Message&& m) {
  Message r;
  if (auto* f = m.as<Forward>()) {
    Backward b;
    b.step_id = f->step_id;
    for (auto& s : m.sections) b.loss += static_cast<double>(s.bytes.size());
    r.body = b;
    r.sections = std::move(m.sections);
    return r;
  }
  if (m.as<Hello>()) {
    Welcome w;
    w.server_id = "test";
    w.session_id = "s";
    r.body = w;
    return r;
  }
  throw std::runtime_error(std::string("unexpected ") + to_string(m.type()));
}

inline Message forward(std::uint64_t step, std::size_t bytes, std::uint8_t fill = 7) {
  Message m;
  Forward f;
  f.step_id = step;
  f.sample_ids = {1, 2, 3};
  f.batch = 3;
  f.labels = {0, 1, 2};
  m.body = f;
  Section s;
  s.info.name = "activations";
  s.info.dtype = WireDType::u8;
  s.info.shape = {static_cast<std::int64_t>(bytes)};
  s.bytes.assign(bytes, fill);
  m.sections.push_back(std::move(s));
  return m;
}

inline ClientOptions client_options(std::uint16_t port, TlsOptions tls) {
  ClientOptions o;
  o.port = port;
  o.tls = std::move(tls);
  o.connect_timeout = Millis(3000);
  o.request_timeout = Millis(5000);
  o.max_attempts = 3;
  o.backoff_initial = Millis(20);
  return o;
}

// A simulated clock for the channel (ServerOptions/ClientOptions::clock):
// time stands still until a pacing delay moves it (until() jumps to the
// target and returns at once) or the test calls advance(). Minutes of a
// slow link then pass in the milliseconds the bytes really take.
class ManualClock final : public Clock {
 public:
  time_point now() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return now_;
  }
  duration until(time_point t) const override {
    std::lock_guard<std::mutex> lock(mu_);
    now_ = std::max(now_, t);
    return duration::zero();
  }
  void advance(duration d) {
    std::lock_guard<std::mutex> lock(mu_);
    now_ += d;
  }

 private:
  mutable std::mutex mu_;
  mutable time_point now_{std::chrono::hours(1000)};  // any epoch
};

// Polls `done` until it holds or `limit` passes; returns whether it held. Every
// wait in these tests is bounded, so a missed event fails instead of hanging.
template <class Pred>
bool wait_until(Pred done, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

inline std::size_t rss_bytes() {
  std::ifstream f("/proc/self/statm");
  std::size_t pages = 0, resident = 0;
  f >> pages >> resident;
  return resident * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
}

}  // namespace seam::transport::test
