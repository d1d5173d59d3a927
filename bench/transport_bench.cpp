// Transport benchmark: 1 MiB message throughput over TLS and plaintext on
// loopback (interleaved rounds, one run), small-message round-trip latency,
// and the in-process shaper's accuracy at 10 Mbit/s.
//   seam_transport_bench                 all in-process figures
//   seam_transport_bench serve PORT      plaintext echo server on 127.0.0.1 (for shaped-link.sh)
//   seam_transport_bench send PORT MB    sends MB MiB in 64 KiB messages, prints Mbit/s
//   seam_transport_bench frame PORT MB   sends one MB MiB frame with the default timeouts (slow links)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <csignal>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <openssl/evp.h>
#include <time.h>

#include "seam/transport/channel.hpp"

using namespace seam::transport;
using clock_type = std::chrono::steady_clock;

namespace {

Message reply_small(const PeerInfo&, Message&& m) {
  Message r;
  if (m.as<Hello>()) {
    r.body = Welcome{};
    return r;
  }
  Backward b;
  if (auto* f = m.as<Forward>()) b.step_id = f->step_id;
  r.body = b;
  return r;
}

Message payload(std::uint64_t step, std::size_t bytes) {
  Message m;
  m.body = Forward{step, {}, 1, 0, {0}, {}};
  Section s;
  s.info.name = "x";
  s.info.shape = {static_cast<std::int64_t>(bytes)};
  s.bytes.assign(bytes, 0x5A);
  m.sections.push_back(std::move(s));
  return m;
}

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

double cpu_seconds() {  // this process, all threads
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return double(t.tv_sec) + double(t.tv_nsec) * 1e-9;
}

// AES-128-GCM (the suite the channel prefers) encrypting 1 MiB in 16 KiB
// records, as TLS does: milliseconds of one core per MiB, best of 20.
double aes_gcm_ms_per_mib() {
  std::vector<unsigned char> in(1 << 20, 0x5A), out(in.size() + 16), key(16, 1), iv(12, 2), tag(16);
  double best = 1e9;
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  for (int rep = 0; rep < 20; ++rep) {
    auto t0 = clock_type::now();
    for (std::size_t off = 0; off < in.size(); off += 16384) {
      int n = 0;
      EVP_EncryptInit_ex(ctx, EVP_aes_128_gcm(), nullptr, key.data(), iv.data());
      EVP_EncryptUpdate(ctx, out.data() + off, &n, in.data() + off, 16384);
      EVP_EncryptFinal_ex(ctx, out.data() + off + n, &n);
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, tag.data());
    }
    best = std::min(best, std::chrono::duration<double, std::milli>(clock_type::now() - t0).count());
  }
  EVP_CIPHER_CTX_free(ctx);
  return best;
}

std::string pki;

// who: "server" or "client" (the file names gen-certs.sh writes).
TlsOptions tls_options(bool tls, const std::string& who) {
  TlsOptions t;
  if (!tls) {
    t.insecure_plaintext = true;
    return t;
  }
  t.cert_file = pki + "/" + who + ".pem";
  t.key_file = pki + "/" + who + ".key";
  t.ca_file = pki + "/ca.pem";
  return t;
}
TlsOptions server_tls(bool tls) { return tls_options(tls, "server"); }
TlsOptions client_tls(bool tls) { return tls_options(tls, "client"); }

int serve(std::uint16_t port) {
  ServerOptions so;
  so.port = port;
  so.tls = server_tls(false);
  Server s(so, reply_small);
  s.start();
  std::printf("serving on 127.0.0.1:%u\n", s.port());
  std::fflush(stdout);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  int sig;
  sigwait(&set, &sig);
  return 0;
}

int send(std::uint16_t port, int mib) {
  ClientOptions co;
  co.port = port;
  co.tls = client_tls(false);
  Client c(co);
  c.request(payload(0, 1024));  // connect outside the timed part
  const std::size_t msg = 64 * 1024;
  const int n = mib * 16;
  auto t0 = clock_type::now();
  for (int i = 1; i <= n; ++i) c.request(payload(i, msg));
  double s = seconds_since(t0);
  std::printf("sent %d x 64 KiB in %.3f s: %.2f Mbit/s (payload bits)\n", n, s, n * msg * 8 / s / 1e6);
  return 0;
}

// One frame of `mib` MiB with the client's default timeouts: over a 1 Mbit/s
// link it takes minutes, well past the old whole-request deadline (60 s).
// Fails (exit 1) on an error or on any reconnect.
int send_frame(std::uint16_t port, int mib) {
  ClientOptions co;
  co.port = port;
  co.tls = client_tls(false);
  Client c(co);
  c.request(payload(0, 16));
  const std::size_t bytes = static_cast<std::size_t>(mib) << 20;
  auto t0 = clock_type::now();
  try {
    c.request(payload(1, bytes));
  } catch (const TransportError& e) {
    std::printf("one %d MiB frame FAILED after %.1f s: %s\n", mib, seconds_since(t0), e.what());
    return 1;
  }
  double s = seconds_since(t0);
  std::printf("one %d MiB frame in %.1f s: %.3f Mbit/s of payload, %llu reconnects (stall_timeout %lld ms, no request cap)\n",
              mib, s, bytes * 8.0 / s / 1e6, static_cast<unsigned long long>(c.reconnects()),
              static_cast<long long>(co.stall_timeout.count()));
  return c.reconnects() == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 3 && std::string(argv[1]) == "serve") return serve(static_cast<std::uint16_t>(std::atoi(argv[2])));
  if (argc >= 4 && std::string(argv[1]) == "send")
    return send(static_cast<std::uint16_t>(std::atoi(argv[2])), std::atoi(argv[3]));
  if (argc >= 4 && std::string(argv[1]) == "frame")
    return send_frame(static_cast<std::uint16_t>(std::atoi(argv[2])), std::atoi(argv[3]));

  pki = (std::filesystem::temp_directory_path() / ("seam_bench_pki_" + std::to_string(::getpid()))).string();
  std::string cmd = std::string("bash ") + SEAM_SOURCE_DIR + "/scripts/gen-certs.sh " + pki + " >/dev/null";
  if (std::system(cmd.c_str()) != 0) return 1;

  std::printf("seam transport benchmark (loopback)\n");
  // Throughput: client sends 1 MiB, server answers with a small message.
  // Rounds alternate TLS and plaintext so both see the same machine load.
  const std::size_t mib = 1 << 20;
  const int per_round = 64, rounds = 5;
  double secs[2] = {0, 0}, cpu[2] = {0, 0};
  std::vector<std::unique_ptr<Server>> servers;
  std::vector<std::unique_ptr<Client>> clients;
  for (int tls = 0; tls < 2; ++tls) {
    ServerOptions so;
    so.tls = server_tls(tls);
    servers.push_back(std::make_unique<Server>(so, reply_small));
    servers.back()->start();
    ClientOptions co;
    co.port = servers.back()->port();
    co.tls = client_tls(tls);
    clients.push_back(std::make_unique<Client>(co));
    clients.back()->request(payload(0, 16));
  }
  auto big = payload(1, mib);
  for (int r = 0; r < rounds; ++r) {
    for (int tls = 0; tls < 2; ++tls) {
      auto t0 = clock_type::now();
      const double c0 = cpu_seconds();
      for (int i = 0; i < per_round; ++i) clients[tls]->request(big);
      secs[tls] += seconds_since(t0);
      cpu[tls] += cpu_seconds() - c0;
    }
  }
  double mbps[2];
  for (int tls = 0; tls < 2; ++tls) mbps[tls] = rounds * per_round * double(mib) / secs[tls] / (1 << 20);
  std::printf("1 MiB messages, %d each: plaintext %.0f MiB/s, TLS 1.3 %.0f MiB/s, TLS/plaintext = %.1f%%\n",
              rounds * per_round, mbps[0], mbps[1], 100 * mbps[1] / mbps[0]);
  // Where the time goes: CPU (both sides, all threads) per MiB, and what the
  // cipher alone costs. With N cores a mode cannot beat cpu/N per MiB.
  const double msgs = rounds * per_round, cores = std::max(1u, std::thread::hardware_concurrency());
  const double cpu_ms[2] = {1e3 * cpu[0] / msgs, 1e3 * cpu[1] / msgs},
               wall_ms[2] = {1e3 * secs[0] / msgs, 1e3 * secs[1] / msgs};
  const double aes = aes_gcm_ms_per_mib();
  std::printf("per MiB: plaintext %.2f ms wall, %.2f ms CPU; TLS %.2f ms wall, %.2f ms CPU; "
              "AES-128-GCM alone %.2f ms/MiB each way (x2 = %.2f)\n",
              wall_ms[0], cpu_ms[0], wall_ms[1], cpu_ms[1], aes, 2 * aes);
  std::printf("bound on %.0f cores: TLS >= %.2f ms/MiB, i.e. <= %.0f%% of this plaintext run, even with every core busy\n",
              cores, cpu_ms[1] / cores, 100 * wall_ms[0] / (cpu_ms[1] / cores));

  // Round-trip latency of small messages (64-byte section) through the handler.
  for (int tls = 0; tls < 2; ++tls) {
    std::vector<double> us;
    auto small = payload(2, 64);
    for (int i = 0; i < 2000; ++i) {
      auto t0 = clock_type::now();
      clients[tls]->request(small);
      us.push_back(seconds_since(t0) * 1e6);
    }
    std::sort(us.begin(), us.end());
    std::printf("small-message RTT %-9s p50 %.0f us, p99 %.0f us (2000 requests)\n", tls ? "TLS:" : "plaintext:",
                us[us.size() / 2], us[us.size() * 99 / 100]);
  }
  clients.clear();
  servers.clear();

  // Shaper accuracy: 10 Mbit/s set on the client's link, 64 KiB messages.
  {
    ServerOptions so;
    so.tls = server_tls(false);
    Server s(so, reply_small);
    s.start();
    ClientOptions co;
    co.port = s.port();
    co.tls = client_tls(false);
    co.link.rate_bits_per_s = 10e6;
    Client c(co);
    c.request(payload(0, 16));
    auto m = payload(3, 64 * 1024);
    std::uint64_t frame_bytes = encode_frame(m, 1).total_bytes();
    const int n = 40;
    auto t0 = clock_type::now();
    for (int i = 0; i < n; ++i) c.request(m);
    double sec = seconds_since(t0);
    double rate = n * frame_bytes * 8 / sec;
    std::printf("shaper at 10 Mbit/s: measured %.3f Mbit/s over %.2f s (%+.1f%% of set rate)\n", rate / 1e6, sec,
                100 * (rate / 10e6 - 1));
  }
  std::filesystem::remove_all(pki);
  return 0;
}
