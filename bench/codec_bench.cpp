// Codec benchmark: every codec on [32, 128, 768] fp32 activations (GELU of a
// Gaussian, like a transformer FFN output), one LibTorch thread. Throughput is
// GB/s of fp32 input (1 GB = 1e9 bytes); times are medians.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "../compression/src/c3_kernel.hpp"
#include "seam/compression/c3.hpp"
#include "seam/compression/codec.hpp"
#include "seam/compression/platform.hpp"

namespace sc = seam::compression;
using clock_type = std::chrono::steady_clock;

static double ms_since(clock_type::time_point t0) {
  return std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
}

static double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::max(1, std::atoi(argv[1])) : 9;
  at::set_num_threads(1);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1);
  at::Tensor x = at::gelu(at::randn({32, 128, 768}, gen, at::TensorOptions().dtype(at::kFloat)));
  at::Tensor drift = 0.02 * at::randn({32, 128, 768}, gen, at::TensorOptions().dtype(at::kFloat));
  const double gb = double(x.nbytes()) / 1e9;
  std::vector<std::int64_t> ids(32);
  for (int i = 0; i < 32; ++i) ids[i] = i;

  std::printf("seam codec benchmark: [32,128,768] fp32 gelu activations, 1 thread, median of %d\n", reps);
  const char* core = std::getenv("OPENBLAS_CORETYPE");
  std::printf("SIMD kernels: %s; OPENBLAS_CORETYPE=%s\n", sc::detail::simd_isa(), core ? core : "(unset)");
  if (auto note = sc::blas_kernel_advice(); !note.empty()) std::printf("%s\n", note.c_str());
  std::printf("%-44s %9s %11s %10s %10s %9s %9s\n", "spec", "ratio", "nmse", "enc GB/s", "dec GB/s", "enc ms",
              "dec ms");
  const char* specs[] = {"none",
                         "fp16",
                         "bf16",
                         "quant:bits=8",
                         "quant:bits=4",
                         "quant:bits=4,scale=channel,mode=sym",
                         "quant:bits=4,round=stochastic",
                         "quant:bits=3",
                         "quant:bits=2",
                         "quant:bits=2,clip=aciq",
                         "quant:bits=2,clip=dsaciq",
                         "quant:bits=4+zstd",
                         "lowrank:rank=8,iters=0",
                         "lowrank:rank=8",
                         "lowrank:rank=8,iters=2",
                         "lowrank:rank=8,iters=0,warm=1",
                         "lowrank:rank=8+quant:bits=8",
                         "delta:bits=4",
                         "delta:bits=4+zstd"};
  for (const char* spec : specs) {
    auto codec = sc::make_codec(spec);
    sc::CodecContext e(7), d(7);
    e.sample_ids = d.sample_ids = ids;
    const bool stateful = std::string(spec).find("delta") != std::string::npos;
    if (stateful) {  // warm-up call (full precision); measure the steady state after it
      auto b = codec->encode(x, e);
      codec->decode(b.data(), b.size(), d);
    }
    std::vector<double> te, td;
    std::vector<std::uint8_t> bytes;
    at::Tensor y, in;
    for (int r = 0; r < reps; ++r) {
      in = stateful ? x + drift * (r + 1) : x;
      e.step = d.step = r;
      auto t0 = clock_type::now();
      bytes = codec->encode(in, e);
      te.push_back(ms_since(t0));
      t0 = clock_type::now();
      y = codec->decode(bytes.data(), bytes.size(), d);
      td.push_back(ms_since(t0));
    }
    double nmse = ((in - y).pow(2).sum() / in.pow(2).sum()).item<double>();
    double me = median(te), md = median(td);
    std::printf("%-44s %9.2f %11.3g %10.2f %10.2f %9.2f %9.2f\n", spec, double(x.nbytes()) / bytes.size(), nmse,
                gb / (me / 1e3), gb / (md / 1e3), me, md);
  }

  // C3 with R = 8 on the same activations, bound per token (D = 768): the
  // kernel this CPU picks, then each lesser variant and ATen's FFT side by side.
  for (auto kind : {sc::C3KeyKind::gaussian, sc::C3KeyKind::unitary}) {
    sc::C3Transform c3(8, 768, 3, kind);
    const char* kname = kind == sc::C3KeyKind::gaussian ? "gaussian" : "unitary";
    at::Tensor zh;
    // Median bind and unbind times of one path; leaves the last unbind in zh.
    auto time_path = [&](bool aten, const std::string& label) {
      std::vector<double> tb, tu;
      for (int r = 0; r < reps; ++r) {
        auto t0 = clock_type::now();
        auto v = aten ? c3.bind_aten(x) : c3.bind(x);
        tb.push_back(ms_since(t0));
        t0 = clock_type::now();
        zh = aten ? c3.unbind_aten(v, 32) : c3.unbind(v, 32);
        tu.push_back(ms_since(t0));
      }
      std::printf("c3 R=8 %-8s bind %.2f ms + unbind %.2f ms = %.2f ms (%s)\n", kname, median(tb), median(tu),
                  median(tb) + median(tu), label.c_str());
    };
    const std::string best = c3.path();
    time_path(false, best + " kernel, the one used");
    double nmse = ((x - zh).pow(2).sum() / x.pow(2).sum()).item<double>();
    std::printf("c3 R=8 %-8s ratio 8, unbind nmse %.3g\n", kname, nmse);
    for (const char* isa : {"avx2", "generic"}) {
      sc::detail::ScopedSimdIsa variant(isa);
      if (isa != best && variant.ok()) time_path(false, std::string(isa) + " kernel");
    }
    time_path(true, "aten fft");
  }
  return 0;
}
