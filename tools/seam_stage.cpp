// seam-stage: pipelined inference across processes (docs/pipeline.md).
//   serve    one stage: blocks [A, B) of a model, listening for the previous hop
//   source   feeds a dataset's test split through a pipeline, reports accuracy and throughput
//   profile  measures each block on this machine (the planner's input)
//   plan     the EdgePipe plan for a profile on a fleet, against an even split and one device
#include <signal.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <cstdio>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <mutex>
#include <numeric>
#include <sstream>

#include "command_line.hpp"
#include "seam/compression/tensor_io.hpp"
#include "seam/pipeline/planner.hpp"
#include "seam/pipeline/profiler.hpp"
#include "seam/pipeline/stage.hpp"
#include "seam/session/job.hpp"
#include "seam/training/checkpoint.hpp"
#include "seam/training/job.hpp"
#include "seam/training/threads.hpp"

namespace po = boost::program_options;
namespace sp = seam::pipeline;
namespace t = seam::training;
using seam::tools::UsageError;

namespace {

double unix_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

const char* kUsage =
    "usage: seam-stage serve --name S1 --port P (--blocks A:B (--checkpoint CKPT | --model vit ...) \\\n"
    "                        | --job DIR --half edge|cloud [--weights STEPDIR]) \\\n"
    "                        --next HOST:PORT --next-name S2 --cert PEM --key PEM --ca PEM [options]\n"
    "       seam-stage source --port P --first HOST:PORT --stages S1@HOST:PORT,... (--task TASK | --input FILE) \\\n"
    "                        --checkpoint CKPT --cert PEM --key PEM --ca PEM [options]\n"
    "       seam-stage profile (--checkpoint CKPT | --model vit ...) --micro-batch 8 --out PROFILE\n"
    "       seam-stage plan --profile PROFILE --fleet FLEET [--brute-force]\n"
    "\n"
    "A stage listens with its certificate (--cert/--key, clients verified against --ca) and\n"
    "connects to the next hop with --client-cert/--client-key (default: --cert/--key). The\n"
    "last stage's next hop is the source. --codec quantpipe picks each micro-batch's width\n"
    "from {32,16,8,6,4,3,2} per window (--target-rate micro-batches/s, --window, --clip).\n"
    "serve runs until SIGTERM or SIGINT. Options may also come from --config FILE.\n";

std::pair<std::string, std::uint16_t> host_port(const std::string& s, const char* flag) {
  const auto colon = s.rfind(':');
  if (colon == std::string::npos) throw UsageError(std::string("--") + flag + " needs HOST:PORT, got '" + s + "'");
  int port = 0;
  try {
    port = std::stoi(s.substr(colon + 1));
  } catch (const std::exception&) {
    port = -1;
  }
  if (port < 1 || port > 65535) throw UsageError(std::string("--") + flag + ": bad port in '" + s + "'");
  return {s.substr(0, colon), static_cast<std::uint16_t>(port)};
}

std::pair<std::int64_t, std::int64_t> block_range(const std::string& s) {
  const auto colon = s.find(':');
  try {
    if (colon != std::string::npos) return {std::stoll(s.substr(0, colon)), std::stoll(s.substr(colon + 1))};
  } catch (const std::exception&) {
  }
  throw UsageError("--blocks needs A:B (blocks [A, B)), got '" + s + "'");
}

struct Common {
  t::ModelConfig mc;
  std::string checkpoint, torchscript, cert, key, ca, client_cert, client_key, job, half, weights;
  int threads = 1;
  void add(po::options_description& o) {
    o.add_options()("checkpoint", po::value(&checkpoint), "weights and config from seam-train pretrain / seam-ptq train")(
        "job", po::value(&job), "a prepared fine-tuning job's folder (seam-cloud prepare, or an edge's download): "
                                "host one of its halves (--half) instead of --blocks")(
        "half", po::value(&half), "with --job: edge | cloud")(
        "weights", po::value(&weights), "with --job: a session's checkpoint of that half (step-N folder or its "
                                        "half.pt); default: the job's initial weights")(
        "torchscript", po::value(&torchscript), "a scripted nn.Sequential instead of a native model")(
        "model", po::value(&mc.kind)->default_value("vit"), "vit | bert | cnn | gpt (fresh weights from --seed)")(
        "width", po::value(&mc.width)->default_value(64), "")("depth", po::value(&mc.depth)->default_value(4), "")(
        "heads", po::value(&mc.heads)->default_value(4), "")("patch", po::value(&mc.patch)->default_value(7), "")(
        "image-size", po::value(&mc.image_size)->default_value(28), "")(
        "channels", po::value(&mc.channels)->default_value(1), "")(
        "max-len", po::value(&mc.max_len)->default_value(128), "")(
        "classes", po::value(&mc.classes)->default_value(10), "")("seed", po::value(&mc.seed)->default_value(0), "")(
        "cert", po::value(&cert), "own certificate (PEM)")("key", po::value(&key), "own private key (PEM)")(
        "ca", po::value(&ca), "CA of the peers (mutual TLS)")(
        "client-cert", po::value(&client_cert), "certificate towards the next hop (default --cert)")(
        "client-key", po::value(&client_key), "key towards the next hop (default --key)")(
        "threads", po::value(&threads)->default_value(1), "LibTorch threads (0 = all cores)");
  }
  void finish() {
    if (!torchscript.empty()) {
      mc.kind = "torchscript";
      mc.script_path = torchscript;
    }
    if (mc.kind == "bert") mc.task = "classify";
    if (mc.kind == "gpt") mc.task = "lm";
    t::configure_threads(threads);
  }
  seam::transport::TlsOptions server_tls() const {
    if (cert.empty() || key.empty() || ca.empty()) throw UsageError("--cert, --key and --ca are required (mutual TLS)");
    seam::transport::TlsOptions o;
    o.cert_file = cert;
    o.key_file = key;
    o.ca_file = ca;
    return o;
  }
  seam::transport::TlsOptions client_tls() const {
    auto o = server_tls();
    if (!client_cert.empty()) o.cert_file = client_cert;
    if (!client_key.empty()) o.key_file = client_key;
    return o;
  }
};

struct Hop {
  std::string next, next_name, server_name, codec = "none", clip = "dsaciq";
  double target_rate = 0, rate_mbit = 0;
  int window = 8, in_flight = 4;
  std::int64_t stall_ms = 10000;
  void add(po::options_description& o, const char* next_flag) {
    o.add_options()(next_flag, po::value(&next), "HOST:PORT of the next hop")(
        "next-name", po::value(&next_name), "the next hop's name, for messages")(
        "next-server-name", po::value(&server_name), "host name to verify in the next hop's certificate (default: its host)")(
        "codec", po::value(&codec)->default_value("none"), "a stateless codec spec, or quantpipe")(
        "clip", po::value(&clip)->default_value("dsaciq"), "quantpipe clipping: none | aciq | dsaciq")(
        "target-rate", po::value(&target_rate)->default_value(0), "quantpipe: micro-batches/s to hold")(
        "window", po::value(&window)->default_value(8), "quantpipe: micro-batches per decision")(
        "in-flight", po::value(&in_flight)->default_value(4), "frames awaiting acknowledgement on the hop")(
        "rate-mbit", po::value(&rate_mbit)->default_value(0), "emulate a link of this rate on the hop (0 = none)")(
        "stall-timeout-ms", po::value(&stall_ms)->default_value(10000), "a hop without progress this long has failed");
  }
  sp::HopOptions options(const Common& c, const char* flag) const {
    if (next.empty()) throw UsageError(std::string("--") + flag + " HOST:PORT is required");
    sp::HopOptions h;
    std::tie(h.host, h.port) = host_port(next, flag);
    h.name = next_name.empty() ? next : next_name;
    h.tls = c.client_tls();
    h.tls.server_name = server_name;
    h.codec = codec;
    h.clip = sp::parse_clip(clip);
    h.controller.target_rate = target_rate;
    h.controller.window = window;
    h.in_flight = in_flight;
    h.link.rate_bits_per_s = rate_mbit * 1e6;
    h.stall_timeout = seam::transport::Millis(stall_ms);
    if (in_flight < 1 || window < 1 || stall_ms < 1) throw UsageError("--in-flight, --window and --stall-timeout-ms must be >= 1");
    return h;
  }
};

int serve(const po::variables_map&, Common& c, Hop& hop, const std::string& name, std::uint16_t port,
          const std::string& bind, const std::string& blocks, int queue, const std::string& log) {
  if (name.empty()) throw UsageError("--name is required");
  if (blocks.empty() == c.job.empty()) throw UsageError("give --blocks A:B, or --job DIR with --half edge|cloud");
  if (c.job.empty() && (!c.half.empty() || !c.weights.empty())) throw UsageError("--half and --weights go with --job DIR");
  if (!c.job.empty() && c.half != "edge" && c.half != "cloud") throw UsageError("--job needs --half edge or --half cloud");
  sp::StageOptions o;
  o.name = name;
  o.bind_address = bind;
  o.port = port;
  o.tls = c.server_tls();
  o.model = c.mc;
  o.checkpoint = c.checkpoint;
  o.job_dir = c.job;
  o.job_half = c.half;
  o.job_weights = c.weights;
  if (c.job.empty()) std::tie(o.begin, o.end) = block_range(blocks);
  o.next = hop.options(c, "next");
  o.queue = queue;
  std::ofstream events;
  std::mutex mu;
  if (!log.empty()) {
    events.open(log);
    if (!events) throw std::runtime_error("cannot write --log '" + log + "'");
    events << "unix_s\tbatch\tbits\tframe_bytes\tcompute_ms\tencode_ms\tbandwidth_mbit\tsearch_ms\n";
  }
  o.on_event = [&](const sp::StageEvent& e) {
    if (!events.is_open()) return;
    std::lock_guard<std::mutex> lock(mu);
    events << std::fixed << std::setprecision(4) << unix_seconds() << '\t' << (e.batch_id & 0xffffffffu)
           << '\t' << e.bits << '\t' << e.frame_bytes << '\t' << e.compute_s * 1e3 << '\t' << e.encode_s * 1e3 << '\t'
           << e.bandwidth_bytes_per_s * 8 / 1e6 << '\t' << e.search_s * 1e3 << '\n';
    events.flush();
  };
  // Block the stop signals before any thread starts, then wait for one.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  signal(SIGPIPE, SIG_IGN);
  sp::StageWorker w(o);
  w.start();
  const std::string hosts = c.job.empty() ? "blocks " + blocks : "the " + c.half + " half of job " + c.job;
  std::printf("seam-stage %s listening on %s:%u, %s%s, next hop %s\n", name.c_str(), bind.c_str(),
              static_cast<unsigned>(w.port()), hosts.c_str(), w.last() ? " (last: results go to the source)" : "",
              o.next.name.c_str());
  std::fflush(stdout);
  int sig = 0;
  sigwait(&stop, &sig);
  w.stop();
  std::printf("seam-stage %s stopped: %llu micro-batches sent%s%s\n", name.c_str(),
              static_cast<unsigned long long>(w.batches_sent()), w.failure().empty() ? "" : "; last failure: ",
              w.failure().c_str());
  return 0;
}

int source(Common& c, Hop& hop, std::uint16_t port, const std::string& bind, const std::string& stages,
           const std::string& task_spec, const std::string& input, const std::string& output, std::int64_t micro_batch,
           std::int64_t batches, std::int64_t result_ms, const std::string& times) {
  if (task_spec.empty() == input.empty()) throw UsageError("give either --task (a test split) or --input FILE");
  if (micro_batch < 1 || batches < 1) throw UsageError("--micro-batch and --batches must be >= 1");
  sp::SourceOptions so;
  so.bind_address = bind;
  so.port = port;
  so.tls = c.server_tls();
  so.first = hop.options(c, "first");
  so.result_timeout = seam::transport::Millis(result_ms);
  std::stringstream ss(stages);
  for (std::string item; std::getline(ss, item, ',');) {
    const auto at = item.find('@');
    if (at == std::string::npos) throw UsageError("--stages needs NAME@HOST:PORT,..., got '" + item + "'");
    sp::StageAddress a;
    a.name = item.substr(0, at);
    std::tie(a.host, a.port) = host_port(item.substr(at + 1), "stages");
    so.stages.push_back(a);
  }
  std::vector<sp::MicroBatch> in;
  std::vector<at::Tensor> labels;  // with --task only
  if (!input.empty()) {
    // Every row of the file, in micro-batches (the last may be smaller).
    const at::Tensor x = seam::compression::load_tensor_file(input);
    if (x.dim() < 1 || x.size(0) < 1) throw std::runtime_error("--input '" + input + "' holds no rows");
    for (std::int64_t b = 0; b < x.size(0); b += micro_batch)
      in.push_back({x.slice(0, b, std::min(b + micro_batch, x.size(0))), {}});
  } else {
    const std::int64_t max_len = !c.job.empty()          ? seam::session::load_job(c.job).spec.model.max_len
                                 : c.checkpoint.empty() ? c.mc.max_len
                                                        : t::checkpoint_config(c.checkpoint).max_len;
    auto task = t::make_task(task_spec, max_len);
    const auto n = static_cast<std::int64_t>(task->size(t::Split::test));
    for (std::int64_t b = 0; b < batches; ++b) {
      std::vector<std::int64_t> idx;
      for (std::int64_t i = 0; i < micro_batch; ++i) idx.push_back((b * micro_batch + i) % n);
      auto tb = task->batch(t::Split::test, idx);
      in.push_back({tb.x, tb.mask});
      labels.push_back(tb.labels);
    }
  }
  signal(SIGPIPE, SIG_IGN);
  sp::PipelineSource src(so);
  src.start();
  std::fprintf(stderr, "seam-stage source: results on port %u, %lld micro-batches of %lld\n",
               static_cast<unsigned>(src.port()), static_cast<long long>(in.size()), static_cast<long long>(micro_batch));
  const double start_unix = unix_seconds();
  const auto r = src.run(in);
  std::int64_t correct = 0, total = 0;
  std::vector<double> latency;
  std::ofstream predictions;
  if (!output.empty()) {
    predictions.open(output);
    if (!predictions) throw std::runtime_error("cannot write --output '" + output + "'");
  }
  for (std::size_t i = 0; i < r.logits.size(); ++i) {
    const at::Tensor classes = r.logits[i].argmax(1);
    if (!labels.empty()) correct += classes.eq(labels[i]).sum().item<std::int64_t>();
    total += classes.size(0);
    latency.push_back(r.done_s[i] - r.sent_s[i]);
    for (std::int64_t k = 0; predictions.is_open() && k < classes.size(0); ++k) predictions << classes[k].item<std::int64_t>() << '\n';
  }
  char accuracy[32] = "null";
  if (!labels.empty()) std::snprintf(accuracy, sizeof accuracy, "%.4f", static_cast<double>(correct) / static_cast<double>(total));
  if (!times.empty()) {
    std::ofstream f(times);
    f << "batch\tsent_s\tdone_s\n";
    for (std::size_t i = 0; i < r.logits.size(); ++i) f << i << '\t' << r.sent_s[i] << '\t' << r.done_s[i] << '\n';
  }
  std::sort(latency.begin(), latency.end());
  // Steady-state throughput: from the first result to the last.
  const double span = r.done_s.back() - r.done_s.front();
  const double steady = r.logits.size() > 1 && span > 0 ? static_cast<double>(total - r.logits.front().size(0)) / span : 0;
  std::printf("{\"batches\": %zu, \"samples\": %lld, \"seconds\": %.3f, \"samples_per_s\": %.1f, "
              "\"steady_samples_per_s\": %.1f, \"latency_ms_p50\": %.2f, \"latency_ms_max\": %.2f, \"accuracy\": %s, "
              "\"start_unix_s\": %.3f}\n",
              r.logits.size(), static_cast<long long>(total), r.seconds, static_cast<double>(total) / r.seconds, steady,
              latency[latency.size() / 2] * 1e3, latency.back() * 1e3, accuracy, start_unix);
  return 0;
}

int profile(Common& c, std::int64_t micro_batch, const std::string& codec, int repeats, std::int64_t seq_len,
            const std::string& out) {
  if (out.empty()) throw UsageError("--out PROFILE is required");
  sp::ProfileOptions o;
  o.micro_batch = micro_batch;
  o.codec = codec;
  o.repeats = repeats;
  o.seq_len = seq_len;
  const auto p = sp::profile_model(c.mc, c.checkpoint, o);
  sp::write_profile(p, out);
  double total = 0;
  for (const auto& b : p.blocks) total += b.compute_s;
  std::printf("profiled %zu blocks of %s at micro-batch %lld: %.3f ms in all -> %s\n", p.blocks.size(), p.model.c_str(),
              static_cast<long long>(micro_batch), total * 1e3, out.c_str());
  return 0;
}

int plan(const std::string& profile_path, const std::string& fleet_path, bool brute) {
  if (profile_path.empty() || fleet_path.empty()) throw UsageError("--profile and --fleet are required");
  const auto m = sp::read_profile(profile_path);
  const auto f = sp::read_fleet(fleet_path);
  const auto p = sp::plan_pipeline(m, f);
  const auto single = sp::best_single_device(m, f);
  const auto even = sp::even_split(m, f);
  std::printf("EdgePipe plan (%d devices, %zu stages):\n%s", f.devices(), p.stages.size(), sp::describe(p, m, f).c_str());
  if (!single.stages.empty())
    std::printf("best single device:\n%s", sp::describe(single, m, f).c_str());
  else
    std::printf("best single device: the model fits on no single device\n");
  if (!even.stages.empty())
    std::printf("even split:\n%s", sp::describe(even, m, f).c_str());
  else
    std::printf("even split: does not fit in memory\n");
  if (brute) {
    const auto b = sp::brute_force_plan(m, f);
    std::printf("brute force bottleneck %.6g ms (planner %.6g ms)\n", b.bottleneck_s * 1e3, p.bottleneck_s * 1e3);
  }
  std::printf("{\"devices\": %d, \"stages\": %zu, \"plan_per_s\": %.4g, \"single_per_s\": %.4g, \"even_per_s\": %.4g, "
              "\"speedup_vs_single\": %.3f, \"speedup_vs_even\": %.3f}\n",
              f.devices(), p.stages.size(), p.throughput(), single.throughput(), even.throughput(),
              single.stages.empty() ? 0.0 : p.throughput() / single.throughput(),
              even.stages.empty() ? 0.0 : p.throughput() / even.throughput());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Common c;
  Hop hop;
  std::string config, name, bind = "127.0.0.1", blocks, log, stages, task, input, output, times, out, codec_profile, profile_path, fleet;
  int port = 0, queue = 4, repeats = 5;
  std::int64_t micro_batch = 8, batches = 20, result_ms = 15000, seq_len = 0;
  po::options_description opts("Options");
  opts.add_options()("help,h", "show this help")("config", po::value(&config), "key = value file with these options")(
      "name", po::value(&name), "serve: this stage's name")("port", po::value(&port)->default_value(0), "listening port")(
      "bind-address", po::value(&bind)->default_value("127.0.0.1"), "")(
      "blocks", po::value(&blocks), "serve: blocks A:B ([A, B)) of the model")(
      "queue", po::value(&queue)->default_value(4), "serve: micro-batches queued for compute and for sending")(
      "log", po::value(&log), "serve: one TSV line per micro-batch sent")(
      "first", po::value<std::string>(), "source: HOST:PORT of stage 1")(
      "stages", po::value(&stages), "source: NAME@HOST:PORT,... for health checks")(
      "task", po::value(&task), "source: fashion-mnist | fortunes-language | ... (test split)")(
      "input", po::value(&input), "source: a tensor file (torch.save or .npy), rows sent in micro-batches")(
      "output", po::value(&output), "source: write each sample's predicted class, one per line")(
      "micro-batch", po::value(&micro_batch)->default_value(8), "source, profile: samples per micro-batch")(
      "batches", po::value(&batches)->default_value(20), "source: micro-batches to send")(
      "result-timeout-ms", po::value(&result_ms)->default_value(15000), "source: no result this long = stalled")(
      "times", po::value(&times), "source: per-micro-batch send and result times (TSV)")(
      "out", po::value(&out), "profile: the profile file to write")(
      "profile-codec", po::value(&codec_profile)->default_value("none"), "profile: codec of the output sizes")(
      "repeats", po::value(&repeats)->default_value(5), "profile: timed runs per block (median)")(
      "seq-len", po::value(&seq_len)->default_value(0), "profile: tokens per sample (text; 0 = max-len)")(
      "profile", po::value(&profile_path), "plan: a profile file")("fleet", po::value(&fleet), "plan: a fleet file")(
      "brute-force", "plan: also solve by brute force (small instances)");
  c.add(opts);
  hop.add(opts, "next");
  try {
    auto vm = seam::tools::parse_command_line(argc, argv, opts);
    if (vm.count("help") || !vm.count("command")) {
      std::cout << kUsage << "\n" << opts;
      return vm.count("help") ? 0 : 2;
    }
    if (vm.count("config")) seam::tools::store_config_file(vm["config"].as<std::string>(), opts, vm);
    po::notify(vm);
    const auto cmd = vm["command"].as<std::string>();
    if (port < 0 || port > 65535) throw UsageError("--port must be in 0..65535");
    if (cmd == "serve" || cmd == "source" || cmd == "profile") c.finish();
    if (cmd == "serve") return serve(vm, c, hop, name, static_cast<std::uint16_t>(port), bind, blocks, queue, log);
    if (cmd == "source") {
      if (vm.count("first")) hop.next = vm["first"].as<std::string>();
      if (hop.next_name.empty() && !stages.empty()) hop.next_name = stages.substr(0, stages.find('@'));
      return source(c, hop, static_cast<std::uint16_t>(port), bind, stages, task, input, output, micro_batch, batches,
                    result_ms, times);
    }
    if (cmd == "profile") return profile(c, micro_batch, codec_profile, repeats, seq_len, out);
    if (cmd == "plan") return plan(profile_path, fleet, vm.count("brute-force") > 0);
    throw UsageError("unknown command '" + cmd + "' (serve, source, profile, plan)");
  } catch (const po::error& e) {
    std::fprintf(stderr, "seam-stage: error: %s\n", e.what());
    return 2;
  } catch (const UsageError& e) {
    std::fprintf(stderr, "seam-stage: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "seam-stage: error: %s\n", e.what());
    return 1;
  }
}
