// seam-codec: shows how a codec spec does on a tensor.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <boost/program_options.hpp>

#include "command_line.hpp"
#include <chrono>
#include <cstdio>
#include <iostream>
#include <sstream>
#include <thread>

#include "seam/compression/codec.hpp"
#include "seam/compression/platform.hpp"
#include "seam/compression/errors.hpp"
#include "seam/compression/tensor_io.hpp"

namespace po = boost::program_options;
namespace sc = seam::compression;

namespace {

const char* kUsage =
    "Usage:\n"
    "  seam-codec eval --spec SPEC (--input FILE | --synthetic gaussian|laplace|gelu --shape 32,128,768)\n"
    "                  [--seed N] [--repeat K] [--threads N] [--json]\n"
    "  seam-codec list\n"
    "\n"
    "eval encodes and decodes the tensor K times, each time with a fresh codec context\n"
    "(for delta that is the warm-up call, sent at full precision), and prints bytes in and\n"
    "out, ratio, NMSE = |x-x^|^2/|x|^2, max abs error, and median encode/decode ms.\n"
    "FILE is a tensor saved with torch.save(t, path) (zip format) or numpy.save(path, a); the\n"
    "format comes from the file's first bytes. Floating tensors only: float16, bfloat16 and float32\n"
    "keep their dtype (bytes_in counts the tensor's own bytes), float64 becomes float32. Empty\n"
    "tensors and tensors holding NaN or Inf are refused.\n"
    "list prints every stage with its parameters and defaults.\n";

std::vector<std::int64_t> parse_shape(const std::string& s) {
  std::vector<std::int64_t> shape;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    std::size_t used = 0;
    long long v = -1;
    try {
      v = std::stoll(item, &used);
    } catch (...) {
    }
    if (used != item.size() || v <= 0)
      throw seam::tools::UsageError("--shape: '" + s + "' is not a list of positive integers like 32,128,768");
    shape.push_back(v);
  }
  if (shape.empty() || shape.size() > 8) throw seam::tools::UsageError("--shape: give 1 to 8 dimensions");
  return shape;
}

at::Tensor synthetic(const std::string& kind, const std::vector<std::int64_t>& shape, std::uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto f32 = at::TensorOptions().dtype(at::kFloat);
  if (kind == "gaussian") return at::randn(shape, gen, f32);
  if (kind == "laplace") {
    at::Tensor u = at::rand(shape, gen, f32) - 0.5;
    return -at::sign(u) * at::log1p(-2 * u.abs());
  }
  if (kind == "gelu") return at::gelu(at::randn(shape, gen, f32));
  throw seam::tools::UsageError("--synthetic: '" + kind + "' unknown; use gaussian, laplace or gelu");
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    o += c;
  }
  return o;
}

int eval(const po::variables_map& vm) {
  if (!vm.count("spec")) throw seam::tools::UsageError("eval needs --spec");
  if (vm.count("input") == vm.count("synthetic"))
    throw seam::tools::UsageError("eval needs exactly one of --input FILE or --synthetic KIND");
  const int repeat = vm["repeat"].as<int>();
  if (repeat < 1 || repeat > 10000) throw seam::tools::UsageError("--repeat must be in [1, 10000]");
  const int threads = vm["threads"].as<int>();
  if (threads < 0) throw seam::tools::UsageError("--threads must be >= 0 (0 = all cores)");
  at::set_num_threads(threads > 0 ? threads : std::max(1, static_cast<int>(std::thread::hardware_concurrency())));
  if (auto note = sc::blas_kernel_advice(); !note.empty()) std::fprintf(stderr, "seam-codec: %s\n", note.c_str());
  const auto seed = vm["seed"].as<std::uint64_t>();

  at::Tensor x = vm.count("input") ? sc::load_tensor_file(vm["input"].as<std::string>())
                                   : synthetic(vm["synthetic"].as<std::string>(),
                                               parse_shape(vm["shape"].as<std::string>()), seed);
  const std::string what = vm.count("input") ? "--input " + vm["input"].as<std::string>() : "--synthetic tensor";
  if (x.numel() == 0)
    throw sc::CodecError(what + ": the tensor is empty (shape " + c10::str(x.sizes()) + "); there is nothing to measure");
  if (const auto bad = (~at::isfinite(x)).sum().item<std::int64_t>(); bad > 0)
    throw sc::CodecError(what + ": " + std::to_string(bad) + " of " + std::to_string(x.numel()) +
                         " values are NaN or Inf; eval measures finite tensors (their error is undefined)");
  auto codec = sc::make_codec(vm["spec"].as<std::string>());
  std::vector<std::int64_t> ids(x.dim() ? x.size(0) : 1);
  for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<std::int64_t>(i);

  std::vector<double> enc_ms, dec_ms;
  std::vector<std::uint8_t> bytes;
  at::Tensor y;
  using clock = std::chrono::steady_clock;
  for (int k = 0; k < repeat; ++k) {
    sc::CodecContext e(seed), d(seed);
    e.sample_ids = d.sample_ids = ids;
    auto t0 = clock::now();
    bytes = codec->encode(x, e);
    auto t1 = clock::now();
    y = codec->decode(bytes.data(), bytes.size(), d);
    auto t2 = clock::now();
    enc_ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    dec_ms.push_back(std::chrono::duration<double, std::milli>(t2 - t1).count());
  }
  at::Tensor xd = x.to(at::kDouble), yd = y.to(at::kDouble);
  const double denom = xd.pow(2).sum().item<double>();
  const double nmse = denom > 0 ? (xd - yd).pow(2).sum().item<double>() / denom : 0.0;
  const double max_abs = (xd - yd).abs().max().item<double>();
  const std::size_t bytes_in = x.nbytes();
  const double ratio = double(bytes_in) / double(bytes.size());
  if (vm.count("json")) {
    std::printf(
        "{\"spec\": \"%s\", \"elements\": %lld, \"bytes_in\": %zu, \"bytes_out\": %zu, \"ratio\": %.6g, "
        "\"nmse\": %.6g, \"max_abs_err\": %.6g, \"encode_ms\": %.6g, \"decode_ms\": %.6g}\n",
        json_escape(codec->spec()).c_str(), static_cast<long long>(x.numel()), bytes_in, bytes.size(), ratio, nmse,
        max_abs, median(enc_ms), median(dec_ms));
  } else {
    std::printf("spec         %s\nelements     %lld\nbytes_in     %zu\nbytes_out    %zu\nratio        %.4g\n"
                "nmse         %.4g\nmax_abs_err  %.4g\nencode_ms    %.4g (median of %d)\ndecode_ms    %.4g\n",
                codec->spec().c_str(), static_cast<long long>(x.numel()), bytes_in, bytes.size(), ratio, nmse, max_abs,
                median(enc_ms), repeat, median(dec_ms));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  po::options_description opts("Options");
  opts.add_options()("help,h", "show this help")(
      "spec", po::value<std::string>(), "codec chain, e.g. quant:bits=4 or lowrank:rank=8+quant:bits=8")(
      "input", po::value<std::string>(), "tensor file: torch.save(t, path) or .npy")(
      "synthetic", po::value<std::string>(), "gaussian | laplace | gelu")(
      "shape", po::value<std::string>()->default_value("32,128,768"), "shape of the synthetic tensor")(
      "seed", po::value<std::uint64_t>()->default_value(0), "seed for synthetic data and codec randomness")(
      "repeat", po::value<int>()->default_value(5), "timed encode/decode repetitions")(
      "threads", po::value<int>()->default_value(0), "LibTorch threads (0 = all cores)")(
      "json", "print one JSON object");
  try {
    po::variables_map vm = seam::tools::parse_command_line(argc, argv, opts);
    po::notify(vm);
    if (vm.count("help") || !vm.count("command")) {
      std::cout << kUsage << "\n" << opts;
      return vm.count("help") ? 0 : 2;
    }
    const auto cmd = vm["command"].as<std::string>();
    if (cmd == "list") {
      std::cout << sc::describe_stages();
      return 0;
    }
    if (cmd == "eval") return eval(vm);
    std::cerr << "seam-codec: unknown command '" << cmd << "' (use eval or list)\n\n" << kUsage;
    return 2;
  } catch (const po::error& e) {
    std::cerr << "seam-codec: " << e.what() << "\n\n" << kUsage;
    return 2;
  } catch (const seam::tools::UsageError& e) {
    std::cerr << "seam-codec: " << e.what() << " (see seam-codec --help)\n";
    return 2;
  } catch (const sc::CodecError& e) {
    std::cerr << "seam-codec: error: " << e.what() << "\n";
    return 1;
  } catch (const c10::Error& e) {
    std::cerr << "seam-codec: error: " << e.what_without_backtrace() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "seam-codec: error: " << e.what() << "\n";
    return 1;
  }
}
