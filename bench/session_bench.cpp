// Per-step overhead of TlsLink (real TLS 1.3 on loopback, mutual
// certificates, one server worker) against InProcessLink (the same frames,
// encoded and decoded in memory), on the same prepared job and data.
// Rounds alternate the two links; the figures are medians over all steps.
// Usage: seam_session_bench [steps_per_round=20] [rounds=3]
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "seam/session/job.hpp"
#include "bench_util.hpp"
#include "seam/session/links.hpp"
#include "seam/training/threads.hpp"

namespace ss = seam::session;
namespace t = seam::training;
namespace st = seam::transport;

namespace {

using seam::bench::batch_of;
using seam::bench::median;

// Times `steps` steps of a fresh edge session over `link`.
std::vector<double> run(const ss::PreparedJob& job, ss::SessionLink& link, int steps, std::uint64_t& bytes) {
  ss::EdgeSession edge(job, {});
  edge.connect(link, "bench");
  std::vector<double> ms;
  for (int i = 0; i < steps; ++i) {
    auto b = batch_of(edge.step());
    auto t0 = std::chrono::steady_clock::now();
    auto m = edge.train_step(link, b);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    if (m) bytes = m->bytes_up + m->bytes_down;
  }
  return ms;
}

}  // namespace

int main(int argc, char** argv) {
  const int steps = argc > 1 ? std::atoi(argv[1]) : 20;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 3;
  seam::training::configure_threads(0);
  const auto tmp = std::filesystem::temp_directory_path() / ("seam_session_bench_" + std::to_string(::getpid()));
  std::filesystem::create_directories(tmp);
  const std::string pki = (tmp / "pki").string();
  if (std::system(("bash " SEAM_SOURCE_DIR "/scripts/gen-certs.sh " + pki + " >/dev/null").c_str()) != 0) return 1;

  std::printf("%-34s %10s %10s %10s %9s %11s\n", "job (ViT w64 d4, batch 32, split 2)", "in-proc ms", "TLS ms",
              "overhead", "overhead", "bytes/step");
  for (const char* codec : {"none", "quant:bits=8"}) {
    ss::JobSpec j;
    j.model.kind = "vit";
    j.model.split = 2;
    j.half.up_codec = codec;
    j.half.down_codec = codec;
    const std::string dir = (tmp / (std::string("job-") + (codec[0] == 'n' ? "none" : "quant"))).string();
    ss::prepare_job(j, dir);
    const auto job = ss::load_job(dir);

    ss::CloudSessions sessions(job, "");
    st::ServerOptions so;
    so.tls.cert_file = pki + "/server.pem";
    so.tls.key_file = pki + "/server.key";
    so.tls.ca_file = pki + "/ca.pem";
    st::Server server(so, [&](const st::PeerInfo& p, st::Message&& m) { return sessions.handle(p, std::move(m)); });
    server.start();
    st::ClientOptions co;
    co.port = server.port();
    co.tls.ca_file = pki + "/ca.pem";
    co.tls.cert_file = pki + "/client.pem";
    co.tls.key_file = pki + "/client.key";

    std::vector<double> local, tls;
    std::uint64_t bytes = 0;
    for (int r = 0; r < rounds; ++r) {
      ss::CloudSession cloud(job, {});
      ss::InProcessLink in(cloud);
      auto a = run(job, in, steps, bytes);
      ss::TlsLink link(co);
      auto b = run(job, link, steps, bytes);
      local.insert(local.end(), a.begin() + 1, a.end());  // the first step warms caches
      tls.insert(tls.end(), b.begin() + 1, b.end());
    }
    const double l = median(local), n = median(tls);
    std::printf("%-34s %10.2f %10.2f %8.2fms %8.1f%% %11llu\n", codec, l, n, n - l, 100.0 * (n - l) / l,
                static_cast<unsigned long long>(bytes));
  }
  std::filesystem::remove_all(tmp);
  return 0;
}
