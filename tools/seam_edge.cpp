// seam-edge: runs the edge side of a fine-tuning job against a seam-cloud
// server. Joins the job, trains its front half on a dataset over mutual TLS,
// shows progress (a live bar on a terminal, plain lines otherwise), writes a
// per-step JSONL metrics log, and ends with a summary. Ctrl-C saves the edge
// checkpoint (and the cloud's, at the same step); the same command resumes.
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <boost/program_options.hpp>
#include <c10/util/Exception.h>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>

#include "command_line.hpp"
#include "seam/edge_client/client.hpp"
#include "seam/edge_client/tensor_task.hpp"
#include "seam/session/job.hpp"
#include "seam/training/job.hpp"
#include "seam/training/threads.hpp"

namespace po = boost::program_options;
namespace t = seam::training;
namespace se = seam::edge;
using clock_type = std::chrono::steady_clock;

namespace {

const char* kUsage =
    "usage: seam-edge --server HOST:PORT --ca PEM --cert PEM --key PEM --job NAME --state-dir DIR\n"
    "                 [--task fashion-mnist] [--epochs N | --steps N] [--batch 64] [--threads N] [options]\n"
    "\n"
    "Joins job NAME at a seam-cloud server and trains its front half on the task's training split,\n"
    "sending compressed activations up and receiving compressed gradients. The job's front half is read\n"
    "from --job-dir (default STATE_DIR/job). Progress: a live bar on a terminal, plain lines otherwise.\n"
    "Ctrl-C (or SIGTERM) finishes the step in flight, saves the checkpoint with the cloud and exits 130;\n"
    "running the same command again resumes. Options may also come from --config FILE.\n";

volatile sig_atomic_t g_stop = 0;
extern "C" void on_signal(int) { g_stop = 1; }

std::string mb(double bytes) {
  char b[32];
  std::snprintf(b, sizeof b, "%.2f MB", bytes / 1e6);
  return b;
}

std::string duration(double s) {
  if (!std::isfinite(s) || s < 0) return "--";
  char b[32];
  const long v = std::lround(s);
  if (v >= 3600) std::snprintf(b, sizeof b, "%ldh%02ldm", v / 3600, (v / 60) % 60);
  else if (v >= 60) std::snprintf(b, sizeof b, "%ldm%02lds", v / 60, v % 60);
  else std::snprintf(b, sizeof b, "%lds", v);
  return b;
}

// Live bar on a terminal (rewritten in place with \r), plain lines otherwise.
class Progress {
 public:
  Progress(bool bar, std::int64_t every, std::int64_t total, std::int64_t per_epoch)
      : bar_(bar), every_(every), total_(total), per_epoch_(per_epoch), t0_(clock_type::now()) {}
  void start_at(std::uint64_t step) { first_ = step; }
  void update(const t::StepMetrics& m, const se::ClientStats& s) {
    const std::int64_t done = static_cast<std::int64_t>(m.step) + 1;
    const double el = std::chrono::duration<double>(clock_type::now() - t0_).count();
    const double rate = (done - static_cast<std::int64_t>(first_)) / std::max(el, 1e-9);
    const double eta = rate > 0 ? (total_ - done) / rate : -1;
    const double fp32 = s.traffic.fp32_up + s.traffic.fp32_down;
    const double sent = double(s.traffic.up.tensor + s.traffic.down.tensor);
    const double ratio = sent > 0 ? fp32 / sent : 0;
    const std::int64_t epoch = (done - 1) / per_epoch_ + 1, epochs = (total_ + per_epoch_ - 1) / per_epoch_;
    char line[256];
    std::snprintf(line, sizeof line, "epoch %lld/%lld step %lld/%lld loss %.4f acc %.3f up %s down %s x%.1f ETA %s",
                  static_cast<long long>(epoch), static_cast<long long>(epochs), static_cast<long long>(done),
                  static_cast<long long>(total_), m.loss, m.accuracy, mb(double(s.traffic.up.total())).c_str(),
                  mb(double(s.traffic.down.total())).c_str(), ratio, duration(eta).c_str());
    if (bar_) {
      constexpr int kWidth = 24;
      const int filled = static_cast<int>(kWidth * double(done) / double(std::max<std::int64_t>(total_, 1)));
      std::string b(static_cast<std::size_t>(filled), '#');
      b.resize(kWidth, '.');
      std::printf("\r\033[K[%s] %s", b.c_str(), line);
      if (done == total_) std::printf("\n");
      std::fflush(stdout);
    } else if (every_ > 0 && (done % every_ == 0 || done == total_)) {
      std::printf("%s\n", line);
      std::fflush(stdout);
    }
  }
  void interrupt() {
    if (bar_) std::printf("\n");
  }

 private:
  bool bar_;
  std::int64_t every_, total_, per_epoch_;
  std::uint64_t first_ = 0;
  clock_type::time_point t0_;
};

double peak_rss_mib() {
  rusage r{};
  getrusage(RUSAGE_SELF, &r);
  return r.ru_maxrss / 1024.0;  // KiB on Linux
}

}  // namespace

int main(int argc, char** argv) {
  se::EdgeOptions eo;
  std::string task_spec, metrics_log, progress_mode, order, config, data_part;
  std::int64_t epochs = 1, steps = 0, batch = 64, log_every = 50, max_len = 128, eval_limit = 0;
  std::uint64_t data_seed = 0;
  int threads = 0;
  po::options_description opts("Options");
  opts.add_options()("help,h", "show this help")("config", po::value(&config), "key = value file with these options");
  se::describe_options(opts, eo);
  opts.add_options()("task", po::value(&task_spec)->default_value("fashion-mnist"),
                     "fashion-mnist | fashion-mnist:LO-HI | fortunes-topic | fortunes-language | jsonl:PATH | tensors:PATH\n"
                     "(tensors: a torch.save'd dict with x [N, ...] and int64 y [N])")(
      "order", po::value(&order)->default_value("shuffled"),
      "shuffled (a seeded permutation per epoch) | sequential (batch k = rows k*B..k*B+B-1)")(
      "max-len", po::value(&max_len)->default_value(128), "text tasks: bytes per example (the job's max-len)")(
      "epochs", po::value(&epochs)->default_value(1), "passes over the training split")(
      "steps", po::value(&steps)->default_value(0), "train this many steps instead of --epochs (0 = use --epochs)")(
      "batch", po::value(&batch)->default_value(64), "batch size")(
      "eval-limit", po::value(&eval_limit)->default_value(0),
      "final test accuracy over the first N test examples (0 = all, -1 = skip)")(
      "data-seed", po::value(&data_seed)->default_value(0), "seed of the data order (a resumed run replays the same order)")(
      "data-part", po::value(&data_part)->default_value("1/1"),
      "train on part I of N of the training split (I/N: the rows r with r mod N = I-1), so that N clients of one "
      "job each see their own data")(
      "threads", po::value(&threads)->default_value(0), "LibTorch threads (0 = all cores)")(
      "metrics-log", po::value(&metrics_log), "append one JSON line per step to this file")(
      "progress", po::value(&progress_mode)->default_value("auto"), "auto | bar | lines | none")(
      "log-every", po::value(&log_every)->default_value(50), "plain progress lines: every N steps");
  try {
    po::variables_map vm;
    po::store(po::parse_command_line(argc, argv, opts), vm);
    if (vm.count("config")) seam::tools::store_config_file(vm["config"].as<std::string>(), opts, vm);
    po::notify(vm);
    if (vm.count("help")) {
      std::cout << kUsage << "\n" << opts;
      return 0;
    }
    auto need = [](bool ok, const std::string& m) {
      if (!ok) throw seam::tools::UsageError(m);
    };
    for (const auto& e : se::validate(eo)) throw seam::tools::UsageError(e);
    need(epochs >= 1, "--epochs must be >= 1");
    need(steps >= 0, "--steps must be >= 0 (0 = use --epochs)");
    need(batch >= 1, "--batch must be >= 1");
    need(log_every >= 0, "--log-every must be >= 0");
    need(eval_limit >= -1, "--eval-limit must be >= -1 (0 = all, -1 = skip)");
    need(threads >= 0, "--threads must be >= 0 (0 = all cores)");
    need(progress_mode == "auto" || progress_mode == "bar" || progress_mode == "lines" || progress_mode == "none",
         "--progress must be auto, bar, lines or none (got '" + progress_mode + "')");
    need(order == "shuffled" || order == "sequential", "--order must be shuffled or sequential (got '" + order + "')");

    std::int64_t part = 1, parts = 1;
    {
      const auto slash = data_part.find('/');
      try {
        std::size_t used = 0;
        if (slash == std::string::npos) throw std::invalid_argument("no slash");
        part = std::stoll(data_part.substr(0, slash), &used);
        if (used != slash) throw std::invalid_argument("trailing");
        parts = std::stoll(data_part.substr(slash + 1), &used);
        if (used != data_part.size() - slash - 1) throw std::invalid_argument("trailing");
      } catch (const std::exception&) {
        throw seam::tools::UsageError("--data-part needs I/N, e.g. 1/2 (got '" + data_part + "')");
      }
      need(parts >= 1 && part >= 1 && part <= parts, "--data-part I/N needs 1 <= I <= N (got '" + data_part + "')");
      need(parts <= (std::int64_t{1} << 40), "--data-part I/N: N is too large (got '" + data_part + "')");
    }
    // The program, not the library, owns signals and the thread count.
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    ::signal(SIGPIPE, SIG_IGN);
    const int used_threads = t::configure_threads(threads);

    auto task = task_spec.rfind("tensors:", 0) == 0 ? se::make_tensor_task(task_spec.substr(8))
                                                    : t::make_task(task_spec, max_len);
    // The rows of this client's part; the data order runs over them.
    std::vector<std::int64_t> rows;
    for (std::int64_t r = part - 1; r < static_cast<std::int64_t>(task->size(t::Split::train)); r += parts) rows.push_back(r);
    const auto n_train = static_cast<std::int64_t>(rows.size());
    if (n_train == 0) throw seam::tools::UsageError("--data-part " + data_part + " holds no training rows");
    if (parts > 1)
      std::printf("seam-edge: data part %s: %lld of %zu training rows\n", data_part.c_str(), static_cast<long long>(n_train),
                  task->size(t::Split::train));
    if (batch > n_train)
      throw seam::tools::UsageError("--batch " + std::to_string(batch) + " is larger than the training split (" +
                                    std::to_string(n_train) + " examples" + (parts > 1 ? " in part " + data_part : "") +
                                    ")");
    const std::int64_t per_epoch = n_train / batch;
    const std::int64_t total = steps > 0 ? steps : epochs * per_epoch;

    se::Client client(eo);
    const auto wall0 = clock_type::now();
    const std::uint64_t start = client.join();
    std::printf("seam-edge: joined job '%s' at %s%s (%s, split %lld, up %s, down %s); %d threads; %s at step %llu of %lld (%lld steps per epoch)\n",
                eo.job.c_str(), eo.server.c_str(), client.downloaded() ? ", front half downloaded" : "", client.job().spec.model.kind.c_str(),
                static_cast<long long>(client.job().spec.model.split), client.job().spec.half.up_codec.c_str(),
                client.job().spec.half.down_codec.c_str(), used_threads, start > 0 ? "resuming" : "starting",
                static_cast<unsigned long long>(start), static_cast<long long>(total),
                static_cast<long long>(per_epoch));
    std::fflush(stdout);

    std::ofstream log;
    if (!metrics_log.empty()) {
      log.open(metrics_log, std::ios::app);
      if (!log) throw std::runtime_error("cannot open --metrics-log '" + metrics_log + "'");
    }
    const bool bar = progress_mode == "bar" || (progress_mode == "auto" && ::isatty(STDOUT_FILENO));
    Progress progress(bar, progress_mode == "none" ? 0 : log_every, total, per_epoch);
    progress.start_at(start);
    client.set_progress([&](const t::StepMetrics& m) {
      if (log.is_open()) log << se::metrics_json(m) << "\n" << std::flush;
      if (progress_mode != "none") progress.update(m, client.stats());
    });

    t::Sampler sampler(static_cast<std::size_t>(n_train), data_seed);
    std::int64_t sampler_at = -1;
    bool interrupted = false;
    while (static_cast<std::int64_t>(client.step()) < total) {
      if (g_stop) {
        interrupted = true;
        break;
      }
      const auto k = static_cast<std::int64_t>(client.step());
      std::vector<std::int64_t> ix;
      if (order == "sequential") {
        for (std::int64_t i = 0; i < batch; ++i) ix.push_back((k % per_epoch) * batch + i);
      } else {
        if (k != sampler_at) sampler.seek(k, batch);
        ix = sampler.next(batch);
      }
      for (auto& i : ix) i = rows[static_cast<std::size_t>(i)];  // sample ids stay the rows of the whole split
      auto b = task->batch(t::Split::train, ix);
      b.ids = ix;
      sampler_at = k + 1;
      if (!client.train_step(b)) sampler_at = -1;  // rolled back: replay from the session's step
    }
    const double wall = std::chrono::duration<double>(clock_type::now() - wall0).count();
    // Checkpoints need a folder and a session agreed with checkpoints.
    const bool can_save = !eo.state_dir.empty() && eo.checkpoint_every > 0;
    if (can_save && client.step() > 0) client.save();
    const auto s = client.stats();
    if (interrupted) {
      progress.interrupt();
      if (can_save)
        std::printf("seam-edge: interrupted at step %llu; checkpoint saved with the cloud; run the same command to resume\n",
                    static_cast<unsigned long long>(s.step));
      else
        std::printf("seam-edge: interrupted at step %llu; nothing saved (saving needs --state-dir and --checkpoint-every > 0)\n",
                    static_cast<unsigned long long>(s.step));
    }
    const double n = double(std::max<std::uint64_t>(s.steps_this_run, 1));
    std::printf("seam-edge: %s %llu steps (%llu this run) in %.1f s\n", interrupted ? "stopped after" : "done:",
                static_cast<unsigned long long>(s.step), static_cast<unsigned long long>(s.steps_this_run), wall);
    // Through the cloud's inference path: the edge alone cannot evaluate.
    const std::size_t n_test = task->size(t::Split::test);
    if (interrupted || eval_limit < 0 || n_test == 0) {
      std::printf("final test accuracy: not measured (%s)\n",
                  interrupted ? "interrupted" : eval_limit < 0 ? "--eval-limit -1" : "the task has no test split");
    } else {
      const auto e0 = clock_type::now();
      const double acc = client.evaluate(*task, t::Split::test, 256, static_cast<std::size_t>(eval_limit));
      const std::size_t used = eval_limit > 0 ? std::min(n_test, static_cast<std::size_t>(eval_limit)) : n_test;
      std::printf("final test accuracy %.4f (%zu test examples, through the cloud, %.1f s)\n", acc, used,
                  std::chrono::duration<double>(clock_type::now() - e0).count());
    }
    std::printf("bytes up %s (fp32 %s, x%.1f), down %s (fp32 %s, x%.1f), all frames up %s down %s\n",
                mb(double(s.traffic.up.total())).c_str(), mb(double(s.traffic.naive_up)).c_str(),
                s.traffic.up.total() ? double(s.traffic.naive_up) / double(s.traffic.up.total()) : 0.0,
                mb(double(s.traffic.down.total())).c_str(), mb(double(s.traffic.naive_down)).c_str(),
                s.traffic.down.total() ? double(s.traffic.naive_down) / double(s.traffic.down.total()) : 0.0,
                mb(double(s.bytes_up)).c_str(), mb(double(s.bytes_down)).c_str());
    std::printf("time per step (mean ms): edge %.1f  codec %.1f  link %.1f  cloud %.1f; reconnects %llu\n",
                s.edge_ms / n, (s.encode_ms + s.decode_ms) / n, s.link_ms / n, s.cloud_ms / n,
                static_cast<unsigned long long>(s.reconnects));
    std::printf("edge weights sha256 %s\n", seam::session::weights_sha256(client.session().half()).c_str());
    std::printf("peak RSS %.1f MiB\n", peak_rss_mib());
    client.close();
    return interrupted ? 130 : 0;
  } catch (const po::error& e) {
    std::cerr << "seam-edge: " << e.what() << "\n\n" << kUsage;
    return 2;
  } catch (const seam::tools::UsageError& e) {
    std::cerr << "seam-edge: " << e.what() << " (see seam-edge --help)\n";
    return 2;
  } catch (const c10::Error& e) {
    std::cerr << "seam-edge: error: " << e.what_without_backtrace() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "seam-edge: error: " << e.what() << "\n";
    return 1;
  }
}
