#pragma once
// Shared by the session tests and their server program: a PKI made at test
// time, prepared test jobs, deterministic batches and a TLS server of sessions.
#include <ATen/CPUGeneratorImpl.h>
#include <fcntl.h>
#include <spawn.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "seam/session/job.hpp"
#include "seam/session/session.hpp"
#include "seam/transport/channel.hpp"

extern char** environ;

namespace seam::session::test {

// Starts args[0] with args, its stdout a pipe; reads its first line into
// `line` (the program announces itself there), then closes the pipe.
// Starts a program and reads the first `n` lines of its stdout (then closes
// the pipe: the program must not die of a closed stdout). With `stderr_path`
// its stderr goes to that file.
inline pid_t spawn_reading_lines(std::vector<std::string> args, int n, std::vector<std::string>& lines,
                                 const std::string& stderr_path = "") {
  int out[2];
  if (::pipe(out) != 0) throw std::runtime_error("pipe failed");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_addclose(&fa, out[0]);
  if (!stderr_path.empty())
    posix_spawn_file_actions_addopen(&fa, 2, stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<char*> argv;
  for (auto& x : args) argv.push_back(x.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, args[0].c_str(), &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(out[1]);
  lines.assign(1, "");
  char ch;
  while (rc == 0 && ::read(out[0], &ch, 1) == 1) {
    if (ch != '\n') {
      lines.back() += ch;
    } else if (static_cast<int>(lines.size()) == n) {
      break;
    } else {
      lines.emplace_back();
    }
  }
  ::close(out[0]);
  if (rc != 0) throw std::runtime_error("cannot start " + args[0]);
  return pid;
}

inline pid_t spawn_reading_first_line(std::vector<std::string> args, std::string& line) {
  std::vector<std::string> lines;
  const pid_t pid = spawn_reading_lines(std::move(args), 1, lines);
  line = lines.front();
  return pid;
}

inline std::string temp_dir(const std::string& name) {
  auto d = std::filesystem::temp_directory_path() / ("seam_session_" + std::to_string(::getpid()) + "_" + name);
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d.string();
}

inline const std::string& pki_dir() {
  static const std::string dir = [] {
    auto d = temp_dir("pki");
    std::string cmd = std::string("bash ") + SEAM_SOURCE_DIR + "/scripts/gen-certs.sh " + d + " >/dev/null";
    if (std::system(cmd.c_str()) != 0) throw std::runtime_error("gen-certs.sh failed");
    return d;
  }();
  return dir;
}

inline transport::ServerOptions server_options(const std::string& pki, std::uint16_t port = 0) {
  transport::ServerOptions o;
  o.port = port;
  o.tls.cert_file = pki + "/server.pem";
  o.tls.key_file = pki + "/server.key";
  o.tls.ca_file = pki + "/ca.pem";
  return o;
}

inline transport::ClientOptions client_options(const std::string& pki, std::uint16_t port) {
  transport::ClientOptions o;
  o.port = port;
  o.tls.ca_file = pki + "/ca.pem";
  o.tls.cert_file = pki + "/client.pem";
  o.tls.key_file = pki + "/client.key";
  o.connect_timeout = transport::Millis(5000);
  o.request_timeout = transport::Millis(20000);
  o.max_attempts = 6;
  o.backoff_initial = transport::Millis(20);
  o.backoff_max = transport::Millis(500);
  return o;
}

// A small ViT job: `chain` = SFT bottleneck (r=4) with delta (AC-SGD) up and
// 8-bit quant down; otherwise codec none both ways, no SFT.
inline JobSpec test_job(bool chain) {
  JobSpec j;
  auto& c = j.model;
  c.kind = "vit";
  c.width = 32;
  c.depth = 2;
  c.heads = 4;
  c.mlp_ratio = 2;
  c.split = chain ? 2 : 1;
  c.sft_rank = chain ? 4 : 0;
  c.seed = 7;
  j.half.task = "classify";
  j.half.up_codec = chain ? "delta:bits=4" : "none";
  j.half.down_codec = chain ? "quant:bits=8" : "none";
  j.half.seed = 11;
  j.half.optim.lr = 2e-3;
  return j;
}

constexpr std::int64_t kBatch = 16;
constexpr std::int64_t kPool = 48;  // sample ids repeat, so delta sees known samples

// Batch k: a function of k alone, so a replay after a rollback sees the same data.
inline training::TaskBatch batch_of(std::uint64_t k) {
  auto g = at::make_generator<at::CPUGeneratorImpl>(1000 + k);
  training::TaskBatch b;
  b.x = at::randn({kBatch, 1, 28, 28}, g);
  b.labels = at::randint(0, 10, {kBatch}, g, at::kLong);
  for (std::int64_t i = 0; i < kBatch; ++i) b.ids.push_back((static_cast<std::int64_t>(k) * kBatch + i) % kPool);
  return b;
}

// A TLS server whose handler is a CloudSessions registry.
struct CloudServer {
  CloudServer(const PreparedJob& job, const std::string& root, std::uint16_t port = 0)
      : sessions(job, root), server(server_options(pki_dir(), port), [this](const transport::PeerInfo& p, transport::Message&& m) {
          return sessions.handle(p, std::move(m));
        }) {
    server.start();
  }
  CloudSessions sessions;
  transport::Server server;
};

}  // namespace seam::session::test
