// seam-train: pre-trains a model, or fine-tunes one split between an edge and a
// cloud half in one process (the in-process link carries real frames).
#include <boost/program_options.hpp>

#include "command_line.hpp"
#include <c10/util/Exception.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>

#include "seam/session/run.hpp"
#include "seam/training/checkpoint.hpp"
#include "seam/training/job.hpp"
#include "seam/training/option_table.hpp"
#include "seam/compression/platform.hpp"
#include "seam/training/threads.hpp"

namespace po = boost::program_options;
namespace t = seam::training;

namespace {

const char* kUsage =
    "Usage:\n"
    "  seam-train pretrain --model bert --task fortunes-language --steps 1500 --out bert.pt [options]\n"
    "  seam-train finetune --model bert --task fortunes-language --split 2 --pretrained bert.pt \\\n"
    "                      --up-codec delta:bits=4 --down-codec quant:bits=8 [options]\n"
    "\n"
    "pretrain trains the whole model (bert: masked-LM over bytes, gpt: next byte, vit/cnn:\n"
    "classification) and writes a checkpoint. finetune splits the model at --split, runs the\n"
    "edge half and the cloud half through real encoded frames, and reports per-step loss,\n"
    "bytes up/down, compression ratios (codec/whole frame), time split, and test accuracy; at the end,\n"
    "the bytes per step by part (tensor, mask, labels, ids, metadata, header) each way.\n"
    "Options may also come from --config FILE (key = value lines, same names as the flags).\n";

void progress_line(const t::StepMetrics& m, double acc, std::int64_t every, bool split) {
  if (acc >= 0) std::printf("step %6llu  eval accuracy %.4f\n", static_cast<unsigned long long>(m.step + 1), acc);
  if (every <= 0 || (m.step + 1) % static_cast<std::uint64_t>(every) != 0) return;
  if (!split) {
    std::printf("step %6llu  loss %.4f\n", static_cast<unsigned long long>(m.step + 1), m.loss);
  } else {
    // Ratios: the codec's own (tensor), then the whole frame's against fp32 + int64 extras.
    std::printf("step %6llu  loss %.4f  acc %.3f  up %.1f KiB (x%.1f/x%.1f)  down %.1f KiB (x%.1f/x%.1f)  "
                "ms edge %.1f enc %.1f link %.1f cloud %.1f dec %.1f\n",
                static_cast<unsigned long long>(m.step + 1), m.loss, m.accuracy, m.bytes_up / 1024.0, m.ratio_up,
                m.frame_ratio_up, m.bytes_down / 1024.0, m.ratio_down, m.frame_ratio_down, m.edge_ms, m.encode_ms,
                m.link_ms, m.cloud_ms, m.decode_ms);
  }
  std::fflush(stdout);
}

// The time split of a whole run, so that every run ends with it (short runs print no progress line).
struct TimeSplit {
  double edge = 0, encode = 0, link = 0, cloud = 0, decode = 0;
  std::uint64_t steps = 0;
  void add(const t::StepMetrics& m) {
    edge += m.edge_ms, encode += m.encode_ms, link += m.link_ms, cloud += m.cloud_ms, decode += m.decode_ms;
    ++steps;
  }
  std::string describe() const {
    if (!steps) return {};
    const double n = static_cast<double>(steps);
    char b[200];
    std::snprintf(b, sizeof b, "time per step (mean ms): edge %.1f  encode %.1f  link %.1f  cloud %.1f  decode %.1f\n",
                  edge / n, encode / n, link / n, cloud / n, decode / n);
    return b;
  }
};

// --out is checked before any work: a run must not fail after training ends.
void check_out_path(const std::string& out) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path p(out);
  if (fs::is_directory(p, ec)) throw std::invalid_argument("--out '" + out + "' is a directory; give a file name");
  const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  if (!fs::exists(dir, ec)) {
    fs::create_directories(dir, ec);
    if (ec)
      throw std::invalid_argument("--out '" + out + "': cannot create folder '" + dir.string() + "': " + ec.message());
    std::printf("seam-train: created folder '%s' for --out\n", dir.string().c_str());
  } else if (!fs::is_directory(dir, ec)) {
    throw std::invalid_argument("--out '" + out + "': '" + dir.string() + "' is not a folder");
  }
  if (::access(dir.c_str(), W_OK) != 0)
    throw std::invalid_argument("--out '" + out + "': folder '" + dir.string() + "' is not writable");
}

// Flags whose values the libraries would take silently (negative counts wrap or run nothing).
void check_ranges(const t::RunOptions& ro, int threads, std::size_t max_per_class) {
  auto need = [](bool ok, const std::string& m) {
    if (!ok) throw seam::tools::UsageError(m);
  };
  // Unsigned flags given a negative number wrap around to huge values.
  constexpr std::size_t kHuge = std::size_t{1} << 62;
  need(ro.steps >= 1, "--steps must be >= 1 (got " + std::to_string(ro.steps) + ")");
  need(ro.batch >= 1, "--batch must be >= 1 (got " + std::to_string(ro.batch) + ")");
  need(ro.eval_every >= 0, "--eval-every must be >= 0 (0 = only at the end)");
  need(ro.log_every >= 0, "--log-every must be >= 0 (0 = no progress lines)");
  need(ro.eval_limit < kHuge, "--eval-limit must be >= 0 (0 = the whole test set)");
  need(max_per_class < kHuge, "--max-per-class must be >= 0 (0 = all)");
  need(threads >= 0, "--threads must be >= 0 (0 = all cores)");
}

}  // namespace

int main(int argc, char** argv) {
  t::ModelConfig mc;
  t::OptimConfig oc;
  t::RunOptions ro;
  t::HalfSettings hs;
  std::string task, out, pretrained, config;
  int threads = 0;
  std::size_t max_per_class = 0;
  po::options_description opts("Options");
  opts.add_options()("help,h", "show this help")("config", po::value(&config), "key = value file with these options")(
      "task", po::value(&task)->default_value("fashion-mnist"),
      "fashion-mnist | fashion-mnist:LO-HI | fortunes-topic | fortunes-language | jsonl:PATH");
  t::add_model_options(opts, mc);  // the same names, defaults and help as seam-cloud's job files
  t::add_codec_options(opts, hs);
  t::add_optimizer_options(opts, oc);
  opts.add_options()(
      "steps", po::value(&ro.steps)->default_value(1000), "optimizer steps")(
      "batch", po::value(&ro.batch)->default_value(64), "batch size")(
      "eval-every", po::value(&ro.eval_every)->default_value(0), "evaluate every N steps (0 = at the end)")(
      "eval-limit", po::value(&ro.eval_limit)->default_value(0),
      "periodic evaluations use the first N test examples (0 = all); the final one always uses all")(
      "log-every", po::value(&ro.log_every)->default_value(50), "print a progress line every N steps")(
      "threads", po::value(&threads)->default_value(0), "LibTorch threads (0 = all cores)")(
      "max-per-class", po::value(&max_per_class)->default_value(0), "cap text examples per class (0 = all)")(
      "pretrained", po::value(&pretrained), "finetune: checkpoint written by pretrain")(
      "out", po::value(&out), "pretrain: checkpoint to write");
  try {
    po::variables_map vm = seam::tools::parse_command_line(argc, argv, opts);
    if (vm.count("config")) seam::tools::store_config_file(vm["config"].as<std::string>(), opts, vm);
    po::notify(vm);
    if (vm.count("help") || !vm.count("command")) {
      std::cout << kUsage << "\n" << opts;
      return vm.count("help") ? 0 : 2;
    }
    const auto cmd = vm["command"].as<std::string>();
    if (cmd != "pretrain" && cmd != "finetune") throw seam::tools::UsageError("unknown command '" + cmd + "' (pretrain or finetune)");
    check_ranges(ro, threads, max_per_class);
    // An unsigned flag given a negative number wraps around; no real seed is that large.
    if (mc.seed > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
      throw seam::tools::UsageError("--seed must be 0..9223372036854775807 (a negative number wraps around to " +
                                    std::to_string(mc.seed) + ")");
    if (cmd == "pretrain" && out.empty()) throw seam::tools::UsageError("pretrain needs --out CHECKPOINT");
    if (cmd == "finetune" && mc.kind == "gpt")
      throw seam::tools::UsageError("finetune classifies: use --model vit, cnn or bert");
    if (cmd == "finetune" && !out.empty())
      throw seam::tools::UsageError("--out is for pretrain; finetune writes no checkpoint");
    if (cmd == "pretrain" && !pretrained.empty())
      throw seam::tools::UsageError("--pretrained is for finetune; pretrain starts from a fresh model");
    if (cmd == "pretrain") check_out_path(out);
    std::printf("seam-train: %d threads\n", t::configure_threads(threads));
    if (auto note = seam::compression::blas_kernel_advice(); !note.empty()) std::printf("seam-train: %s\n", note.c_str());
    ro.data_seed = mc.seed;
    hs.seed = mc.seed;
    oc.total_steps = ro.steps;
    hs.optim = oc;
    auto tk = t::make_task(task, mc.max_len, max_per_class);
    mc.classes = tk->num_classes();
    mc.task = mc.kind == "gpt" ? "lm" : (cmd == "pretrain" && mc.kind == "bert") ? "mlm" : "classify";
    hs.task = mc.task;
    std::printf("task %s: %zu train / %zu test examples, %lld classes\n", tk->name().c_str(), tk->size(t::Split::train),
                tk->size(t::Split::test), static_cast<long long>(tk->num_classes()));
    t::check_model_fits_task(mc.kind, *tk);
    if (cmd == "pretrain") {
      auto r = t::pretrain(mc, oc, *tk, ro, out, [&](const t::StepMetrics& m, double a) { progress_line(m, a, ro.log_every, false); });
      std::printf("pretrain done: %lld steps in %.1f s, mean loss of the last 50 steps %.4f%s -> %s\n",
                  static_cast<long long>(r.steps), r.seconds, r.last_loss,
                  mc.task == "classify" ? (", test accuracy " + std::to_string(r.test_accuracy)).c_str() : "",
                  out.c_str());
      return 0;
    }
    if (!pretrained.empty()) std::printf("%s", t::check_pretrained(mc, pretrained).describe().c_str());
    TimeSplit split;
    auto r = seam::session::run_split_training(mc, hs, *tk, ro, pretrained, [&](const t::StepMetrics& m, double a) {
      split.add(m);
      progress_line(m, a, ro.log_every, true);
    });
    std::printf("finetune done: %lld steps in %.1f s, last loss %.4f, test accuracy %.4f, bytes up %.1f MiB, down %.1f MiB\n",
                static_cast<long long>(r.steps), r.seconds, r.last_loss, r.test_accuracy, r.link.bytes_up / 1048576.0,
                r.link.bytes_down / 1048576.0);
    std::printf("%s", r.traffic.describe().c_str());
    std::printf("%s", split.describe().c_str());
    return 0;
  } catch (const po::error& e) {
    std::cerr << "seam-train: " << e.what() << "\n\n" << kUsage;
    return 2;
  } catch (const seam::tools::UsageError& e) {
    std::cerr << "seam-train: " << e.what() << " (see seam-train --help)\n";
    return 2;
  } catch (const c10::Error& e) {
    std::cerr << "seam-train: error: " << e.what_without_backtrace() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "seam-train: error: " << e.what() << "\n";
    return 1;
  }
}
