// seam-ptq: accumulator-aware post-training quantization of a model's edge half
// (OPTQ, GPFQ, AXE), with the integer wrap-around simulation as an option.
#include <boost/program_options.hpp>

#include "command_line.hpp"

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "seam/compression/platform.hpp"
#include "seam/ptq/model_ptq.hpp"
#include "seam/training/checkpoint.hpp"
#include "seam/training/job.hpp"
#include "seam/training/threads.hpp"

namespace po = boost::program_options;
namespace t = seam::training;
namespace q = seam::ptq;

namespace {

const char* kUsage =
    "Usage:\n"
    "  seam-ptq quantize --checkpoint CKPT --task TASK --split K --method optq --axe --acc-bits 16 \\\n"
    "                    [--tile 64] [--weight-bits 8] [--act-bits 8] [--calib 256] [--simulate] --out Q.pt\n"
    "  seam-ptq sweep    --checkpoint CKPT --task TASK --split K --methods rtn,ep-init,optq,gpfq,optq+axe,gpfq+axe \\\n"
    "                    --acc-bits 10:20 [--weight-bits 8,6,4] [--tile 64] --table results.tsv\n"
    "  seam-ptq train    --model vit|bert --task TASK --steps 1500 --out CKPT   (a classifier to quantize)\n"
    "\n"
    "quantize calibrates every Linear and Conv2d of the edge half [0, K) layer by layer on inputs\n"
    "from the partly quantized model, prints each layer's time and output error, the float and\n"
    "quantized test accuracy, and writes a checkpoint (weights s*q) plus Q.pt.ptq (codes, scales,\n"
    "activation quantizers). --simulate runs the quantized layers through the P-bit wrap-around\n"
    "integer simulator (a simulation, not a hardware measurement) and counts overflowed outputs.\n"
    "sweep writes one TSV row per method, weight bits and accumulator bits.\n";

struct Setup {
  std::string checkpoint, task;
  std::int64_t split = 2, calib = 256, batch = 64;
  std::size_t max_per_class = 0, eval_limit = 0;
  std::uint64_t seed = 0;
};

struct Loaded {
  t::ModelConfig mc;
  std::unique_ptr<t::Task> task;
  t::SplitModel model;
  std::vector<q::CalibBatch> calib;
};

Loaded load(const Setup& s) {
  if (s.checkpoint.empty()) throw std::invalid_argument("--checkpoint is required");
  auto mc = t::checkpoint_config(s.checkpoint);
  mc.split = s.split;
  auto task = t::make_task(s.task, mc.max_len, s.max_per_class);
  if (task->num_classes() != mc.classes)
    throw std::invalid_argument("task '" + s.task + "' has " + std::to_string(task->num_classes()) +
                                " classes, the checkpoint's model " + std::to_string(mc.classes));
  auto model = t::build_split_model(mc, s.checkpoint);
  if (s.calib < 1) throw std::invalid_argument("--calib must be >= 1");
  t::Sampler sampler(task->size(t::Split::train), s.seed);
  std::vector<q::CalibBatch> calib;
  for (std::int64_t left = s.calib; left > 0; left -= s.batch) {
    auto b = task->batch(t::Split::train, sampler.next(std::min(left, s.batch)));
    calib.push_back({b.x, t::BatchContext{b.mask, b.x.size(0)}});
  }
  return {mc, std::move(task), std::move(model), std::move(calib)};
}

double accuracy(Loaded& l, const Setup& s) {
  return t::evaluate(l.model.edge, &l.model.cloud, *l.task, t::Split::test, s.eval_limit);
}

// Every edge tensor, to put back between sweep runs.
struct Snapshot {
  explicit Snapshot(const t::ModelHalf& h) {
    for (auto& [n, v] : h.named_parameters()) saved.emplace_back(v, v.clone());
  }
  void restore() {
    torch::NoGradGuard ng;
    for (auto& [live, copy] : saved) live.copy_(copy);
  }
  std::vector<std::pair<at::Tensor, at::Tensor>> saved;
};

void print_progress(const q::PtqProgress& p) {
  if (!p.layer) return;
  const auto& l = *p.layer;
  std::printf("  [%zu/%zu] %-22s %-6s %5lld -> %-5lld %s %8.3f s  output error %.3e\n", p.index + 1, p.count,
              l.name.c_str(), l.kind.c_str(), static_cast<long long>(l.q.numel() / l.q.size(0)),
              static_cast<long long>(l.q.size(0)), l.act.is_signed ? "  signed" : "unsigned", l.seconds,
              l.output_error);
  std::fflush(stdout);
}

std::vector<int> parse_ints(const std::string& s, const char* what) {
  std::vector<int> out;
  try {
    if (auto colon = s.find(':'); colon != std::string::npos) {
      const int lo = std::stoi(s.substr(0, colon)), hi = std::stoi(s.substr(colon + 1));
      for (int v = lo; v <= hi; ++v) out.push_back(v);
    } else {
      std::stringstream ss(s);
      for (std::string item; std::getline(ss, item, ',');) out.push_back(std::stoi(item));
    }
  } catch (const std::exception&) {
    throw std::invalid_argument(std::string("--") + what + " '" + s + "': use A:B or A,B,C");
  }
  if (out.empty()) throw std::invalid_argument(std::string("--") + what + " is empty");
  return out;
}

double mean_seconds(const q::PtqResult& r) {
  double s = 0;
  for (const auto& l : r.layers) s += l.seconds;
  return r.layers.empty() ? 0 : s / static_cast<double>(r.layers.size());
}

int run_quantize(const Setup& s, q::PtqOptions o, bool simulate, const std::string& out, const std::string& layer_table) {
  auto l = load(s);
  const double float_acc = accuracy(l, s);
  std::printf("float accuracy %.4f (%s, split %lld)\n", float_acc, s.task.c_str(), static_cast<long long>(s.split));
  std::printf("quantizing the edge half: %s%s%s, M=%d, N=%d, P=%d, T=%lld, %lld calibration samples\n",
              q::method_name(o.spec.method).c_str(), o.spec.axe ? "+axe" : "", o.spec.budget_scale ? "+scaled" : "",
              o.spec.weight_bits, o.spec.act_bits,
              o.spec.acc_bits, static_cast<long long>(o.spec.tile), static_cast<long long>(s.calib));
  auto r = q::quantize_half(l.model.edge, l.calib, o, print_progress);
  double acc = 0;
  q::ExecutionStats st;
  {
    q::QuantizedExecution run(l.model.edge, r, {simulate, 0, -1});
    acc = accuracy(l, s);
    st = run.stats();
  }
  std::printf("\nper-layer output error (relative squared, calibration data):\n");
  for (const auto& layer : r.layers)
    std::printf("  %-22s %.3e   %.3f s\n", layer.name.c_str(), layer.output_error, layer.seconds);
  std::printf("quantized accuracy %.4f (float %.4f)%s\n", acc, float_acc,
              simulate ? " [integer simulation of the accumulator]" : "");
  if (simulate)
    std::printf("simulated outputs %lld, overflowed %lld\n", static_cast<long long>(st.dot_products),
                static_cast<long long>(st.overflowed));
  if (!layer_table.empty()) {
    std::ofstream f(layer_table);
    f << "layer\tkind\tin\tout\tseconds\toutput_error\n";
    for (const auto& layer : r.layers)
      f << layer.name << '\t' << layer.kind << '\t' << layer.q.numel() / layer.q.size(0) << '\t' << layer.q.size(0)
        << '\t' << layer.seconds << '\t' << layer.output_error << '\n';
    if (!f) throw std::runtime_error("cannot write '" + layer_table + "'");
  }
  if (!out.empty()) {
    const auto fp = t::fingerprint(l.mc, l.model.edge, l.model.cloud);
    t::CheckpointParts parts{&l.mc, &l.model.edge, &l.model.cloud, nullptr, nullptr, 0, fp};
    t::save_checkpoint(out, parts);
    q::save_ptq(out + ".ptq", r);
    std::printf("wrote %s and %s.ptq\n", out.c_str(), out.c_str());
  }
  return 0;
}

int run_sweep(const Setup& s, const q::PtqOptions& base, const std::string& methods, const std::string& acc_list,
              const std::string& bits_list, const std::string& table) {
  if (table.empty()) throw std::invalid_argument("sweep needs --table FILE");
  auto l = load(s);
  Snapshot snap(l.model.edge);
  const double float_acc = accuracy(l, s);
  std::printf("float accuracy %.4f\n", float_acc);
  std::ofstream f(table);
  f << "method\tweight_bits\tact_bits\tacc_bits\ttile\taccuracy\tfloat_accuracy\toverflow_rate\tptq_seconds_per_layer\n";
  auto row = [&](const std::string& m, int bits, int p, double acc, double rate, double secs) {
    f << m << '\t' << bits << '\t' << base.spec.act_bits << '\t' << p << '\t' << base.spec.tile << '\t' << acc << '\t'
      << float_acc << '\t' << rate << '\t' << secs << '\n';
    f.flush();
    std::printf("%-10s M=%d P=%-3d T=%-3lld accuracy %.4f  overflow %.2e  %.3f s/layer\n", m.c_str(), bits, p,
                static_cast<long long>(base.spec.tile), acc, rate, secs);
    std::fflush(stdout);
  };
  auto evaluate_at = [&](const q::PtqResult& r, int p) {
    q::QuantizedExecution run(l.model.edge, r, {p > 0, p, base.spec.tile});
    const double acc = accuracy(l, s);
    const auto st = run.stats();
    return std::make_pair(acc, st.dot_products ? double(st.overflowed) / double(st.dot_products) : 0.0);
  };
  const auto accs = parse_ints(acc_list, "acc-bits");
  for (int bits : parse_ints(bits_list, "weight-bits")) {
    std::stringstream each(methods);
    for (std::string name; std::getline(each, name, ',');) {
      q::PtqOptions o = base;
      o.spec.weight_bits = bits;
      std::string m = name;
      auto strip = [&m](const std::string& suffix) {
        const bool has = m.size() > suffix.size() && m.compare(m.size() - suffix.size(), suffix.size(), suffix) == 0;
        if (has) m.resize(m.size() - suffix.size());
        return has;
      };
      o.spec.budget_scale = strip("+scaled");
      o.spec.axe = strip("+axe");
      o.spec.method = q::parse_method(m);
      if (!o.spec.axe && !o.spec.budget_scale && o.spec.method != q::Method::ep_init) {
        // No accumulator in the method: quantize once, then run it through each
        // register width (and tiling) in the simulator.
        o.spec.acc_bits = 0;
        o.spec.tile = 0;
        auto r = q::quantize_half(l.model.edge, l.calib, o);
        const auto [acc0, rate0] = evaluate_at(r, 0);
        row(name, bits, 0, acc0, rate0, mean_seconds(r));
        for (int p : accs) {
          const auto [acc, rate] = evaluate_at(r, p);
          row(name, bits, p, acc, rate, mean_seconds(r));
        }
      } else {
        for (int p : accs) {
          o.spec.acc_bits = p;
          snap.restore();
          try {
            auto r = q::quantize_half(l.model.edge, l.calib, o);
            const auto [acc, rate] = evaluate_at(r, p);
            row(name, bits, p, acc, rate, mean_seconds(r));
          } catch (const std::invalid_argument& e) {
            std::printf("%-10s M=%d P=%-3d skipped: %s\n", name.c_str(), bits, p, e.what());
          }
        }
      }
      snap.restore();
    }
  }
  if (!f) throw std::runtime_error("cannot write '" + table + "'");
  return 0;
}

int run_train(t::ModelConfig mc, const Setup& s, t::OptimConfig oc, t::RunOptions ro, const std::string& out) {
  if (out.empty()) throw std::invalid_argument("train needs --out CHECKPOINT");
  auto task = t::make_task(s.task, mc.max_len, s.max_per_class);
  mc.classes = task->num_classes();
  mc.task = "classify";
  ro.data_seed = mc.seed;
  oc.total_steps = ro.steps;
  auto r = t::pretrain(mc, oc, *task, ro, out, [&](const t::StepMetrics& m, double) {
    if (ro.log_every > 0 && (m.step + 1) % static_cast<std::uint64_t>(ro.log_every) == 0)
      std::printf("step %6llu  loss %.4f\n", static_cast<unsigned long long>(m.step + 1), m.loss), std::fflush(stdout);
  });
  std::printf("train done: %lld steps in %.1f s, test accuracy %.4f -> %s\n", static_cast<long long>(r.steps),
              r.seconds, r.test_accuracy, out.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Setup s;
  q::PtqOptions o;
  t::ModelConfig mc;
  t::OptimConfig oc;
  t::RunOptions ro;
  std::string method, methods, acc_list, bits_list, out, table, layer_table;
  bool axe = false, simulate = false;
  int threads = 0;
  po::options_description opts("Options");
  opts.add_options()("help,h", "show this help")(
      "checkpoint", po::value(&s.checkpoint), "quantize/sweep: checkpoint of the float model (seam-train or train)")(
      "task", po::value(&s.task)->default_value("fashion-mnist"), "data for calibration and accuracy (see seam-train)")(
      "max-per-class", po::value(&s.max_per_class)->default_value(0), "cap text examples per class (0 = all)")(
      "split", po::value(&s.split)->default_value(2), "blocks [0, split) form the edge half that is quantized")(
      "method", po::value(&method)->default_value("optq"), "quantize: rtn | ep-init | optq | gpfq")(
      "axe", po::bool_switch(&axe), "quantize: accumulator-aware constraints (needs --acc-bits)")(
      "budget-scale", po::bool_switch(&o.spec.budget_scale),
      "quantize: grow scales until each row fits the accumulator budget (sweep: METHOD+scaled)")(
      "methods", po::value(&methods)->default_value("rtn,ep-init,optq,gpfq,optq+axe,gpfq+axe"), "sweep: methods")(
      "weight-bits", po::value(&bits_list)->default_value("8"), "M, 2..8 (sweep: a list, e.g. 8,6,4,3)")(
      "act-bits", po::value(&o.spec.act_bits)->default_value(8), "N, input activation bits")(
      "act-mode", po::value(&o.act_mode)->default_value("auto"), "auto | signed | unsigned input codes")(
      "acc-bits", po::value(&acc_list)->default_value("0"), "P, accumulator bits (0 = none; sweep: 10:20 or a list)")(
      "tile", po::value(&o.spec.tile)->default_value(0), "T inputs per inner accumulation (0 = single stage)")(
      "act-order", po::bool_switch(&o.spec.act_order), "OPTQ: columns by decreasing Hessian diagonal")(
      "calib", po::value(&s.calib)->default_value(256), "calibration samples (from the train split)")(
      "eval-limit", po::value(&s.eval_limit)->default_value(0), "evaluate on the first N test examples (0 = all)")(
      "simulate", po::bool_switch(&simulate), "quantize: evaluate through the integer accumulator simulator")(
      "out", po::value(&out), "quantize: checkpoint to write (plus OUT.ptq); train: checkpoint")(
      "table", po::value(&table), "sweep: TSV file of results")(
      "layer-table", po::value(&layer_table), "quantize: TSV file of per-layer time and error")(
      "model", po::value(&mc.kind)->default_value("vit"), "train: vit | cnn | bert")(
      "width", po::value(&mc.width)->default_value(64), "train: transformer width")(
      "depth", po::value(&mc.depth)->default_value(4), "train: transformer blocks")(
      "heads", po::value(&mc.heads)->default_value(4), "train: attention heads")(
      "patch", po::value(&mc.patch)->default_value(7), "train: ViT patch size")(
      "max-len", po::value(&mc.max_len)->default_value(64), "train: text length in bytes")(
      "steps", po::value(&ro.steps)->default_value(1500), "train: optimizer steps")(
      "batch", po::value(&ro.batch)->default_value(64), "train: batch size")(
      "lr", po::value(&oc.lr)->default_value(2e-3), "train: peak learning rate")(
      "warmup", po::value(&oc.warmup_steps)->default_value(100), "train: warm-up steps")(
      "seed", po::value(&s.seed)->default_value(0), "model, data and calibration seed")(
      "threads", po::value(&threads)->default_value(0), "LibTorch threads (0 = all cores)");
  try {
    auto vm = seam::tools::parse_command_line(argc, argv, opts);
    po::notify(vm);
    if (vm.count("help") || !vm.count("command")) {
      std::cout << kUsage << "\n" << opts;
      return vm.count("help") ? 0 : 2;
    }
    const auto cmd = vm["command"].as<std::string>();
    std::printf("seam-ptq: %d threads\n", t::configure_threads(threads));
    if (auto note = seam::compression::blas_kernel_advice(); !note.empty()) std::printf("seam-ptq: %s\n", note.c_str());
    mc.seed = s.seed;
    if (cmd == "train") return run_train(mc, s, oc, ro, out);
    if (cmd == "sweep") return run_sweep(s, o, methods, acc_list, bits_list, table);
    if (cmd != "quantize") throw std::invalid_argument("unknown command '" + cmd + "' (quantize, sweep, train)");
    o.spec.method = q::parse_method(method);
    o.spec.axe = axe;
    o.spec.weight_bits = parse_ints(bits_list, "weight-bits").front();
    o.spec.acc_bits = parse_ints(acc_list, "acc-bits").front();
    q::check_spec(o.spec, o.spec.tile > 0 ? o.spec.tile : 1);  // refuse bad bits before loading anything
    return run_quantize(s, o, simulate, out, layer_table);
  } catch (const po::error& e) {
    std::cerr << "seam-ptq: " << e.what() << "\n\n" << kUsage;
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "seam-ptq: error: " << e.what() << "\n";
    return 1;
  }
}
