// seam-cloud under load: training steps per second with 1, 4 and 16 edge
// clients at once, for a per-client and a shared job; the server's resident
// memory idle and with every session open; and the per-step overhead of the
// service (real seam-cloud process, mutual TLS on loopback) against the same
// step with both halves in this process (InProcessLink).
// Usage: seam_service_bench [steps_per_client=20]
// The clients run in this process, one thread each, LibTorch on one thread.
#include <ATen/CPUGeneratorImpl.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "seam/cloud_server/service.hpp"
#include "bench_util.hpp"
#include "seam/session/links.hpp"

extern char** environ;

namespace sc = seam::cloud;
namespace ss = seam::session;
namespace st = seam::transport;
namespace t = seam::training;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

using seam::bench::batch_of;
using seam::bench::median;

long rss_kib(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  return -1;
}

st::ClientOptions client(const std::string& pki, std::uint16_t port) {
  st::ClientOptions o;
  o.port = port;
  o.tls.ca_file = pki + "/ca.pem";
  o.tls.cert_file = pki + "/client.pem";
  o.tls.key_file = pki + "/client.key";
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  const int steps = argc > 1 ? std::atoi(argv[1]) : 20;
  at::set_num_threads(1);
  const std::string root = (fs::temp_directory_path() / ("seam_service_bench_" + std::to_string(::getpid()))).string();
  const std::string pki = root + "/pki";
  fs::create_directories(root + "/jobs");
  if (std::system(("bash " SEAM_SOURCE_DIR "/scripts/gen-certs.sh " + pki + " >/dev/null").c_str()) != 0) return 1;
  const std::string common =
      "model = vit\nclasses = 10\nwidth = 64\ndepth = 4\nheads = 4\nsplit = 2\nseed = 3\nup-codec = quant:bits=8\n"
      "down-codec = quant:bits=8\nallow = CN=edge-1\n";
  std::ofstream(root + "/jobs/own.job") << common << "policy = per-client\n";
  std::ofstream(root + "/jobs/shared.job") << common << "policy = shared\n";
  for (const char* j : {"own", "shared"}) sc::prepare(sc::read_job_file(root + "/jobs/" + j + ".job"), root + "/state");

  // seam-cloud as its own process, so its memory is its own.
  std::vector<std::string> args = {SEAM_CLOUD_BIN, "serve", "--cert", pki + "/server.pem", "--key", pki + "/server.key",
                                   "--client-ca", pki + "/ca.pem", "--jobs-dir", root + "/jobs", "--state-dir",
                                   root + "/state", "--port", "0", "--max-connections", "64", "--log-level", "warn"};
  int out[2];
  if (::pipe(out) != 0) return 1;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  std::vector<char*> argv_c;
  for (auto& a : args) argv_c.push_back(a.data());
  argv_c.push_back(nullptr);
  pid_t pid = 0;
  if (posix_spawn(&pid, args[0].c_str(), &fa, nullptr, argv_c.data(), environ) != 0) return 1;
  ::close(out[1]);
  std::string line;
  char ch;
  while (::read(out[0], &ch, 1) == 1 && ch != '\n') line += ch;
  const auto port = static_cast<std::uint16_t>(std::atoi(line.c_str() + line.rfind(':') + 1));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  std::printf("seam-cloud pid %d on port %u; RSS idle: %.1f MiB\n", pid, port, rss_kib(pid) / 1024.0);
  std::printf("model: vit width 64, depth 4, split 2, batch 32, quant:bits=8 both ways; %d steps per client\n\n", steps);
  std::printf("%-10s %8s %10s %12s %14s %16s\n", "policy", "clients", "steps/s", "ms/step(med)", "server RSS MiB",
              "server CPU s");

  auto cpu_s = [&] {
    std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
    std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    auto p = s.rfind(')');
    std::istringstream is(s.substr(p + 2));
    std::string x;
    long ut = 0, stt = 0;
    for (int i = 0; i < 11; ++i) is >> x;
    is >> ut >> stt;
    return double(ut + stt) / double(::sysconf(_SC_CLK_TCK));
  };
  for (const char* job : {"own", "shared"}) {
    const auto prepared = ss::load_job(sc::prepared_dir(root + "/state", job));
    for (int n : {1, 4, 16}) {
      std::vector<std::vector<double>> ms(n);
      std::vector<std::thread> th;
      const double cpu0 = cpu_s();
      const auto t0 = Clock::now();
      long peak = 0;
      for (int i = 0; i < n; ++i)
        th.emplace_back([&, i] {
          ss::SessionOptions o;
          o.job_name = job;
          ss::EdgeSession edge(prepared, o);
          ss::TlsLink link(client(pki, port));
          edge.connect(link, "b" + std::to_string(n) + "-" + std::to_string(i));
          for (int k = 0; k < steps; ++k) {
            auto b = batch_of(static_cast<std::uint64_t>(i * 1000 + k));
            auto s0 = Clock::now();
            edge.train_step(link, b);
            ms[i].push_back(std::chrono::duration<double, std::milli>(Clock::now() - s0).count());
          }
          if (i == 0) peak = rss_kib(pid);
        });
      for (auto& x : th) x.join();
      const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
      std::vector<double> all;
      for (auto& v : ms) all.insert(all.end(), v.begin(), v.end());
      std::printf("%-10s %8d %10.1f %12.2f %14.1f %16.2f\n", job == std::string("own") ? "per-client" : "shared", n,
                  n * steps / secs, median(all), std::max(peak, rss_kib(pid)) / 1024.0, cpu_s() - cpu0);
      std::fflush(stdout);
    }
  }
  std::printf("\nserver RSS with all %d sessions open: %.1f MiB\n", 2 * (1 + 4 + 16), rss_kib(pid) / 1024.0);

  // The same step in this process: both halves, InProcessLink (the same frames, no socket).
  {
    const auto prepared = ss::load_job(sc::prepared_dir(root + "/state", "own"));
    ss::CloudSession cloud(prepared, {});
    ss::EdgeSession edge(prepared, {});
    ss::InProcessLink link(cloud);
    edge.connect(link, "local");
    std::vector<double> local, remote;
    ss::SessionOptions o;
    o.job_name = "own";
    ss::EdgeSession redge(prepared, o);
    ss::TlsLink tls(client(pki, port));
    redge.connect(tls, "overhead");
    for (int k = 0; k < 3 * steps; ++k) {  // alternate, so both see the same machine
      auto b = batch_of(static_cast<std::uint64_t>(k));
      auto s0 = Clock::now();
      edge.train_step(link, b);
      local.push_back(std::chrono::duration<double, std::milli>(Clock::now() - s0).count());
      s0 = Clock::now();
      redge.train_step(tls, b);
      remote.push_back(std::chrono::duration<double, std::milli>(Clock::now() - s0).count());
    }
    std::printf("per-step median: in-process %.2f ms, through seam-cloud %.2f ms: service overhead %.2f ms (%.2fx)\n",
                median(local), median(remote), median(remote) - median(local), median(remote) / median(local));
  }
  ::kill(pid, SIGTERM);
  ::waitpid(pid, nullptr, 0);
  fs::remove_all(root);
  return 0;
}
