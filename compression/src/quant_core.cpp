#include "quant_core.hpp"

#include <ATen/ATen.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cmath>
#include <cstring>

namespace seam::compression::detail {

std::vector<ParamSpec> quant_param_specs(const QuantConfig& d) {
  auto name = [](auto v, std::initializer_list<const char*> names) { return std::string(names.begin()[int(v)]); };
  return {
      {"bits", std::to_string(d.bits), {"1", "2", "3", "4", "5", "6", "7", "8", "16"}, 0, 0, "bits per element"},
      {"scale", name(d.scale, {"tensor", "row", "channel"}), {"tensor", "row", "channel"}, 0, 0,
       "one range per tensor, per row, or per channel (last dim)"},
      {"mode", name(d.mode, {"asym", "sym"}), {"asym", "sym"}, 0, 0, "min/max range, or symmetric max-abs"},
      {"round", name(d.round, {"nearest", "stochastic"}), {"nearest", "stochastic"}, 0, 0,
       "stochastic rounding is unbiased (for gradients)"},
      {"clip", name(d.clip, {"none", "aciq", "dsaciq"}), {"none", "aciq", "dsaciq"}, 0, 0,
       "range clipping: ACIQ analytical clip, or QuantPipe's histogram-directed search"},
      {"prior", name(d.prior, {"laplace", "gauss"}), {"laplace", "gauss"}, 0, 0, "distribution ACIQ assumes"},
      {"sdtype", d.fp16_scales ? "f16" : "f32", {"f32", "f16"}, 0, 0, "storage type of the range parameters"},
  };
}

QuantConfig quant_config_from(const Params& p) {
  QuantConfig c;
  c.bits = static_cast<int>(param_int(p, "bits"));
  const auto& s = p.at("scale");
  c.scale = s == "row" ? ScaleMode::row : s == "channel" ? ScaleMode::channel : ScaleMode::tensor;
  c.mode = p.at("mode") == "sym" ? RangeMode::sym : RangeMode::asym;
  c.round = p.at("round") == "stochastic" ? Rounding::stochastic : Rounding::nearest;
  const auto& cl = p.at("clip");
  c.clip = cl == "aciq" ? ClipMode::aciq : cl == "dsaciq" ? ClipMode::dsaciq : ClipMode::none;
  c.prior = p.at("prior") == "gauss" ? Prior::gauss : Prior::laplace;
  c.fp16_scales = p.at("sdtype") == "f16";
  return c;
}

namespace {

struct View2d {
  std::int64_t rows, cols;
};

View2d view2d(const std::vector<std::int64_t>& shape) {
  std::int64_t numel = shape_numel(shape);
  std::int64_t cols = shape.empty() ? 1 : shape.back();
  std::int64_t rows = cols == 0 ? 0 : numel / cols;
  return {rows, cols};
}

std::int64_t group_count(const View2d& v, ScaleMode m) {
  switch (m) {
    case ScaleMode::tensor: return 1;
    case ScaleMode::row: return v.rows;
    case ScaleMode::channel: return v.cols;
  }
  return 1;
}

int params_per_group(const QuantConfig& c) { return c.mode == RangeMode::asym ? 2 : 1; }

std::uint32_t qmax_of(const QuantConfig& c) {
  if (c.mode == RangeMode::asym) return (c.bits == 16) ? 65535u : ((1u << c.bits) - 1u);
  if (c.bits == 1) return 1u;
  return (c.bits == 16) ? 65534u : ((1u << c.bits) - 2u);
}

// Per-group [lo, step] from stored parameters (identical on both sides).
void ranges_from_params(const float* prm, std::int64_t groups, const QuantConfig& c, std::vector<float>& lo,
                        std::vector<float>& step) {
  lo.resize(groups);
  step.resize(groups);
  const float q = static_cast<float>(qmax_of(c));
  for (std::int64_t g = 0; g < groups; ++g) {
    if (c.mode == RangeMode::asym) {
      float a = prm[2 * g], b = prm[2 * g + 1];
      lo[g] = a;
      step[g] = (b - a) / q;
    } else {
      float m = prm[g];
      lo[g] = -m;
      step[g] = 2.0f * m / q;
    }
  }
}

// DS-ACIQ: search the clip multiple on the tensor's histogram, minimising the
// estimated MSE (clipping error exact per bin, s^2/12 inside the range).
double dsaciq_multiple(const at::Tensor& x, const QuantConfig& c, double base_alpha, double centre, double b) {
  if (b <= 0) return base_alpha;
  const int kBins = 1024;
  double mn = x.min().item<double>(), mx = x.max().item<double>();
  if (!(mx > mn)) return base_alpha;
  at::Tensor hist = at::histc(x, kBins, mn, mx).to(at::kDouble);
  at::Tensor centres = at::linspace(mn + (mx - mn) / (2 * kBins), mx - (mx - mn) / (2 * kBins), kBins,
                                    at::TensorOptions().dtype(at::kDouble));
  const double q = qmax_of(c);
  double best_m = std::numeric_limits<double>::infinity(), best_err = std::numeric_limits<double>::infinity();
  auto eval = [&](double lo, double hi) {
    double s = (hi - lo) / q;
    auto below = (centres < lo).to(at::kDouble), above = (centres > hi).to(at::kDouble);
    auto inside = 1.0 - below - above;
    auto err = hist * (below * (centres - lo).pow(2) + above * (centres - hi).pow(2) + inside * (s * s / 12.0));
    return err.sum().item<double>();
  };
  for (int j = -16; j <= 25; ++j) {
    double m = (j == 25) ? std::numeric_limits<double>::infinity() : base_alpha * std::pow(2.0, j / 8.0);
    double lo, hi;
    if (c.mode == RangeMode::asym) {
      lo = std::max(mn, centre - m * b);
      hi = std::min(mx, centre + m * b);
    } else {
      double cm = std::min(std::max(-mn, mx), m * b);
      lo = -cm;
      hi = cm;
    }
    double e = eval(lo, hi);
    if (e < best_err) {
      best_err = e;
      best_m = m;
    }
  }
  return best_m;
}

// Raw (unrounded) per-group parameters as a float tensor [groups, params].
at::Tensor group_params(const at::Tensor& x2, const QuantConfig& c) {
  at::Tensor lo, hi, cabs;
  const bool whole = c.scale == ScaleMode::tensor;
  const int dim = c.scale == ScaleMode::row ? 1 : 0;
  auto reduce_min = [&](const at::Tensor& t) { return whole ? t.min().reshape({1}) : t.amin(dim); };
  auto reduce_max = [&](const at::Tensor& t) { return whole ? t.max().reshape({1}) : t.amax(dim); };
  auto reduce_mean = [&](const at::Tensor& t) { return whole ? t.mean().reshape({1}) : t.mean(dim); };
  auto expand = [&](const at::Tensor& g) { return whole ? g : (dim == 1 ? g.unsqueeze(1) : g.unsqueeze(0)); };

  if (c.mode == RangeMode::asym) {
    lo = reduce_min(x2);
    hi = reduce_max(x2);
  } else {
    cabs = reduce_max(x2.abs());
  }
  if (!at::isfinite(c.mode == RangeMode::asym ? (lo + hi) : cabs).all().item<bool>())
    throw CodecError("quant: input contains NaN or Inf");
  if (c.clip == ClipMode::none) return c.mode == RangeMode::asym ? at::stack({lo, hi}, 1) : cabs.unsqueeze(1);

  // ACIQ statistics: Laplace scale b = E|x - mu|, or Gaussian sigma.
  const double k = aciq_alpha(c.bits, c.prior);
  at::Tensor mu = c.mode == RangeMode::asym ? reduce_mean(x2) : at::zeros_like(cabs);
  at::Tensor dev = x2 - expand(mu);
  at::Tensor b = c.prior == Prior::laplace ? reduce_mean(dev.abs()) : reduce_mean(dev * dev).sqrt();
  double m = k;
  if (c.clip == ClipMode::dsaciq) {
    double centre = c.mode == RangeMode::asym ? x2.mean().item<double>() : 0.0;
    at::Tensor d = x2 - centre;
    double bt = c.prior == Prior::laplace ? d.abs().mean().item<double>() : d.pow(2).mean().sqrt().item<double>();
    m = dsaciq_multiple(x2, c, k, centre, bt);
  }
  if (std::isinf(m)) return c.mode == RangeMode::asym ? at::stack({lo, hi}, 1) : cabs.unsqueeze(1);
  at::Tensor alpha = b * m;
  if (c.mode == RangeMode::asym) return at::stack({at::maximum(lo, mu - alpha), at::minimum(hi, mu + alpha)}, 1);
  return at::minimum(cabs, alpha).unsqueeze(1);
}

struct BitWriter {
  std::uint8_t* out;
  std::uint64_t acc = 0;
  int nbits = 0;
  void put(std::uint32_t code, int b) {
    acc |= static_cast<std::uint64_t>(code) << nbits;
    nbits += b;
    if (nbits >= 32) {
      std::uint32_t w = static_cast<std::uint32_t>(acc);
      std::memcpy(out, &w, 4);
      out += 4;
      acc >>= 32;
      nbits -= 32;
    }
  }
  void flush() {
    while (nbits > 0) {
      *out++ = static_cast<std::uint8_t>(acc);
      acc >>= 8;
      nbits -= 8;
    }
  }
};

struct BitReader {
  const std::uint8_t* p;
  std::uint64_t acc = 0;
  int nbits = 0;
  std::uint32_t get(int b) {
    while (nbits < b) {
      acc |= static_cast<std::uint64_t>(*p++) << nbits;
      nbits += 8;
    }
    std::uint32_t v = static_cast<std::uint32_t>(acc & ((1ull << b) - 1));
    acc >>= b;
    nbits -= b;
    return v;
  }
};

template <ScaleMode M, Rounding R>
void quantize_loop(const float* x, std::int64_t rows, std::int64_t cols, const float* lo, const float* inv,
                   float qmax, int bits, std::uint64_t seed, std::uint8_t* out) {
  BitWriter w{out};
  std::uint64_t s = seed | 1;
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    for (std::int64_t k = 0; k < cols; ++k) {
      const std::int64_t g = M == ScaleMode::tensor ? 0 : M == ScaleMode::row ? r : k;
      float v = (xr[k] - lo[g]) * inv[g];
      std::uint32_t code;
      if constexpr (R == Rounding::nearest) {
        v = std::min(std::max(v, 0.0f), qmax);
        code = static_cast<std::uint32_t>(v + 0.5f);
      } else {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        float u = static_cast<float>((s * 0x2545F4914F6CDD1Dull) >> 40) * (1.0f / 16777216.0f);
        v = std::min(std::max(v + u, 0.0f), qmax + 0.5f);
        code = std::min(static_cast<std::uint32_t>(v), static_cast<std::uint32_t>(qmax));
      }
      w.put(code, bits);
    }
  }
  w.flush();
}

template <ScaleMode M>
void dequantize_loop(const std::uint8_t* in, std::int64_t rows, std::int64_t cols, const float* lo, const float* step,
                     int bits, float* y) {
  BitReader rd{in};
  for (std::int64_t r = 0; r < rows; ++r) {
    float* yr = y + r * cols;
    for (std::int64_t k = 0; k < cols; ++k) {
      const std::int64_t g = M == ScaleMode::tensor ? 0 : M == ScaleMode::row ? r : k;
      yr[k] = lo[g] + static_cast<float>(rd.get(bits)) * step[g];
    }
  }
}

}  // namespace

std::size_t quantized_size(const std::vector<std::int64_t>& shape, const QuantConfig& c) {
  auto v = view2d(shape);
  std::size_t n = static_cast<std::size_t>(shape_numel(shape));
  std::size_t groups = static_cast<std::size_t>(group_count(v, c.scale));
  std::size_t param_bytes = groups * params_per_group(c) * (c.fp16_scales ? 2 : 4);
  return param_bytes + (n * static_cast<std::size_t>(c.bits) + 7) / 8;
}

void quantize_append(const at::Tensor& x, const QuantConfig& c, std::uint64_t seed, std::vector<std::uint8_t>& out) {
  auto shape = shape_of(x);
  auto v = view2d(shape);
  const std::size_t start = out.size();
  out.resize(start + quantized_size(shape, c));
  if (x.numel() == 0) return;
  at::Tensor x2 = x.reshape({v.rows, v.cols});
  at::Tensor prm = group_params(x2, c).contiguous();  // [groups, params]
  // Round the parameters to their storage type first: both sides then use the same values.
  if (c.fp16_scales) {
    if (prm.abs().max().item<float>() > 65504.0f)
      throw CodecError("quant: value range exceeds fp16 range parameters; use sdtype=f32");
    prm = prm.to(at::kHalf);
  }
  std::uint8_t* dst = out.data() + start;
  std::memcpy(dst, prm.data_ptr(), prm.nbytes());
  at::Tensor prm32 = prm.to(at::kFloat).contiguous();
  const std::int64_t groups = group_count(v, c.scale);
  std::vector<float> lo, step, inv(groups);
  ranges_from_params(prm32.data_ptr<float>(), groups, c, lo, step);
  for (std::int64_t g = 0; g < groups; ++g) inv[g] = step[g] > 0 ? 1.0f / step[g] : 0.0f;
  const float qmax = static_cast<float>(qmax_of(c));
  std::uint8_t* codes = dst + prm.nbytes();
  const float* xp = x.data_ptr<float>();
#define SEAM_Q(M, R) quantize_loop<M, R>(xp, v.rows, v.cols, lo.data(), inv.data(), qmax, c.bits, seed, codes)
  if (c.round == Rounding::nearest) {
    switch (c.scale) {
      case ScaleMode::tensor: SEAM_Q(ScaleMode::tensor, Rounding::nearest); break;
      case ScaleMode::row: SEAM_Q(ScaleMode::row, Rounding::nearest); break;
      case ScaleMode::channel: SEAM_Q(ScaleMode::channel, Rounding::nearest); break;
    }
  } else {
    switch (c.scale) {
      case ScaleMode::tensor: SEAM_Q(ScaleMode::tensor, Rounding::stochastic); break;
      case ScaleMode::row: SEAM_Q(ScaleMode::row, Rounding::stochastic); break;
      case ScaleMode::channel: SEAM_Q(ScaleMode::channel, Rounding::stochastic); break;
    }
  }
#undef SEAM_Q
}

at::Tensor dequantize(const std::uint8_t* p, std::size_t n, const std::vector<std::int64_t>& shape,
                      const QuantConfig& c) {
  const std::size_t expect = quantized_size(shape, c);
  if (n != expect)
    throw DecodeError("quant: part has " + std::to_string(n) + " bytes, shape needs " + std::to_string(expect));
  at::Tensor y = at::empty(shape, at::TensorOptions().dtype(at::kFloat));
  if (y.numel() == 0) return y;
  auto v = view2d(shape);
  const std::int64_t groups = group_count(v, c.scale);
  const std::size_t nprm = static_cast<std::size_t>(groups * params_per_group(c));
  std::vector<float> prm(nprm);
  if (c.fp16_scales) {
    for (std::size_t i = 0; i < nprm; ++i) {
      std::uint16_t h;
      std::memcpy(&h, p + 2 * i, 2);
      prm[i] = static_cast<float>(c10::Half(h, c10::Half::from_bits()));
    }
  } else {
    std::memcpy(prm.data(), p, nprm * 4);
  }
  for (float f : prm)
    if (!std::isfinite(f)) throw DecodeError("quant: non-finite range parameter");
  std::vector<float> lo, step;
  ranges_from_params(prm.data(), groups, c, lo, step);
  const std::uint8_t* codes = p + nprm * (c.fp16_scales ? 2 : 4);
  float* yp = y.data_ptr<float>();
  switch (c.scale) {
    case ScaleMode::tensor: dequantize_loop<ScaleMode::tensor>(codes, v.rows, v.cols, lo.data(), step.data(), c.bits, yp); break;
    case ScaleMode::row: dequantize_loop<ScaleMode::row>(codes, v.rows, v.cols, lo.data(), step.data(), c.bits, yp); break;
    case ScaleMode::channel: dequantize_loop<ScaleMode::channel>(codes, v.rows, v.cols, lo.data(), step.data(), c.bits, yp); break;
  }
  return y;
}

double aciq_alpha(int bits, Prior prior) {
  // Cheap (microseconds), so computed on each call instead of cached in shared state.
  double alpha = 0;
  const double levels4 = std::pow(4.0, bits);  // (2^M)^2
  if (prior == Prior::laplace) {
    // MSE(a) = 2 b^2 e^{-a/b} + a^2 / (3 * 4^M); stationary point a = 3*4^M e^{-a} (b = 1),
    // the Lambert-W equation of Banner et al. Solved by Newton from a safe start.
    double a = std::log(3.0 * levels4);
    for (int i = 0; i < 100; ++i) {
      double f = a - 3.0 * levels4 * std::exp(-a);
      double df = 1.0 + 3.0 * levels4 * std::exp(-a);
      double next = a - f / df;
      if (std::abs(next - a) < 1e-13) {
        a = next;
        break;
      }
      a = next;
    }
    alpha = a;
  } else {
    // Gaussian (sigma = 1): clip error 2[(a^2+1)(1-Phi(a)) - a phi(a)] + a^2/(3*4^M); golden section.
    auto mse = [&](double a) {
      double tail = 0.5 * std::erfc(a / std::sqrt(2.0));
      double phi = std::exp(-0.5 * a * a) / std::sqrt(2.0 * M_PI);
      return 2.0 * ((a * a + 1.0) * tail - a * phi) + a * a / (3.0 * levels4);
    };
    double lo = 0.0, hi = 40.0;
    const double g = (std::sqrt(5.0) - 1) / 2;
    for (int i = 0; i < 200; ++i) {
      double m1 = hi - g * (hi - lo), m2 = lo + g * (hi - lo);
      if (mse(m1) < mse(m2)) hi = m2; else lo = m1;
    }
    alpha = 0.5 * (lo + hi);
  }
  return alpha;
}

}  // namespace seam::compression::detail
