#include "seam/compression/c3.hpp"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cmath>

#include "c3_kernel.hpp"
#include "seam/compression/errors.hpp"

namespace seam::compression {

// The kernels: even D, float32/float64 CPU tensors. Everything else takes the
// ATen FFT path below (bind_aten/unbind_aten), which is also the reference.
struct C3Transform::Kernels {
  std::shared_ptr<const detail::C3Plan<float>> f32;
  std::shared_ptr<const detail::C3Plan<double>> f64;
};

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// (Even D is implied: only then does the transform have kernels.)
bool kernel_ok(const at::Tensor& t) {
  return t.device().is_cpu() && (t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble);
}

// Work items are (group, block of 64 positions); parallel over them.
template <class Fn>
void for_items(std::int64_t groups, std::int64_t m, Fn fn) {
  const std::int64_t chunk = 64, blocks = (m + chunk - 1) / chunk;
  at::parallel_for(0, groups * blocks, 1, [&](std::int64_t i0, std::int64_t i1) {
    for (std::int64_t i = i0; i < i1; ++i) {
      const std::int64_t g = i / blocks, m0 = (i % blocks) * chunk;
      fn(g, m0, std::min(m, m0 + chunk));
    }
  });
}

template <class T>
const detail::C3Plan<T>& plan_for(const C3Transform::Kernels& k);
template <>
const detail::C3Plan<float>& plan_for<float>(const C3Transform::Kernels& k) { return *k.f32; }
template <>
const detail::C3Plan<double>& plan_for<double>(const C3Transform::Kernels& k) { return *k.f64; }

// Runs bind (unbind=false: [b, m, d] -> [ceil(b/r), m, d]) or unbind
// ([g, m, d] -> [n, m, d]) over all work items; no autograd here.
at::Tensor run_kernel(const C3Transform::Kernels& k, const at::Tensor& in, bool unbind, std::int64_t n) {
  const std::int64_t m = in.size(1), d = in.size(2), groups = unbind ? in.size(0) : n;
  at::Tensor src = in.contiguous();
  at::Tensor out = at::empty({unbind ? n : groups, m, d}, src.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(src.scalar_type(), "c3_kernel", [&] {
    const auto& plan = plan_for<scalar_t>(k);
    const scalar_t* s = src.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    for_items(groups, m, [&](std::int64_t g, std::int64_t m0, std::int64_t m1) {
      if (unbind) detail::c3_unbind(plan, s, n, m, o, g, g + 1, m0, m1);
      else detail::c3_bind(plan, s, in.size(0), m, o, g, g + 1, m0, m1);
    });
  });
  return out;
}

at::Tensor kernel_bind(const C3Transform::Kernels& k, const at::Tensor& z3, int r) {
  return run_kernel(k, z3, false, (z3.size(0) + r - 1) / r);
}
at::Tensor kernel_unbind(const C3Transform::Kernels& k, const at::Tensor& v3, std::int64_t batch) {
  return run_kernel(k, v3, true, batch);
}

// The graph keeps the plans alive even if the transform goes first.
struct KernelsRef : torch::CustomClassHolder {
  std::shared_ptr<const C3Transform::Kernels> k;
};
using KernelsPtr = std::shared_ptr<const C3Transform::Kernels>;
at::IValue hold(const KernelsPtr& k) {
  auto ref = c10::make_intrusive<KernelsRef>();
  ref->k = k;
  return at::IValue::make_capsule(std::move(ref));
}
const C3Transform::Kernels& held(AutogradContext* ctx) {
  return *static_cast<const KernelsRef*>(ctx->saved_data["k"].toCapsule().get())->k;
}

// Bind and unbind are each other's adjoint (convolution vs correlation with
// the same keys; zero-padding vs narrowing), so each one's backward is the other.
struct BindFn : torch::autograd::Function<BindFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& z3, const KernelsPtr& k, int r) {
    ctx->saved_data["b"] = z3.size(0);
    ctx->saved_data["k"] = hold(k);
    return kernel_bind(*k, z3, r);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    return {kernel_unbind(held(ctx), grad[0], ctx->saved_data["b"].toInt()), at::Tensor(), at::Tensor()};
  }
};

struct UnbindFn : torch::autograd::Function<UnbindFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& v3, const KernelsPtr& k, int r,
                            std::int64_t batch) {
    ctx->saved_data["r"] = r;
    ctx->saved_data["k"] = hold(k);
    return kernel_unbind(*k, v3, batch);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    return {kernel_bind(held(ctx), grad[0], static_cast<int>(ctx->saved_data["r"].toInt())), at::Tensor(), at::Tensor(),
            at::Tensor()};
  }
};

}  // namespace

C3Transform::C3Transform(int r, std::int64_t d, std::uint64_t seed, C3KeyKind kind) : r_(r), d_(d) {
  if (r < 1 || r > 1024) throw CodecError("c3: R must be in [1, 1024], got " + std::to_string(r));
  if (d < 2) throw CodecError("c3: feature size D must be >= 2, got " + std::to_string(d));
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto f64 = at::TensorOptions().dtype(at::kDouble);
  if (kind == C3KeyKind::gaussian) {
    at::Tensor k = at::randn({r, d}, gen, f64) / std::sqrt(static_cast<double>(d));
    keys_ = k / k.norm(2, {1}, /*keepdim=*/true);
  } else {
    const std::int64_t f = d / 2 + 1;
    at::Tensor phase = at::rand({r, f}, gen, f64) * (2 * M_PI);
    at::Tensor spec = at::polar(at::ones({r, f}, f64), phase);
    // DC (and Nyquist for even D) must be real: +-1 keeps unit magnitude.
    at::Tensor sign = at::where(at::rand({r, 2}, gen, f64) < 0.5, -1.0, 1.0).to(at::kComplexDouble);
    spec.select(1, 0).copy_(sign.select(1, 0));
    if (d % 2 == 0) spec.select(1, f - 1).copy_(sign.select(1, 1));
    keys_ = at::fft_irfft(spec, d, -1);
  }
  spec64_ = at::fft_rfft(keys_, d, -1);
  spec32_ = at::fft_rfft(keys_.to(at::kFloat), d, -1);
  if (d % 2 == 0) {
    at::Tensor re = at::real(spec64_).contiguous(), im = at::imag(spec64_).contiguous();
    auto k = std::make_shared<Kernels>();
    k->f32 = detail::make_c3_plan<float>(d, r, re.data_ptr<double>(), im.data_ptr<double>());
    k->f64 = detail::make_c3_plan<double>(d, r, re.data_ptr<double>(), im.data_ptr<double>());
    kernels_ = std::move(k);
  }
}



at::Tensor C3Transform::spectrum(c10::ScalarType t) const {
  if (t == at::kDouble) return spec64_;
  if (t == at::kFloat) return spec32_;
  throw CodecError(std::string("c3: dtype ") + c10::toString(t) + " unsupported (float32 or float64)");
}

namespace {

struct Dims {
  std::int64_t b, m, g;  // samples, positions per sample, groups
};

Dims bind_dims(const at::Tensor& z, std::int64_t d, int r) {
  if (z.dim() < 2 || z.size(-1) != d)
    throw CodecError("c3 bind: input must be [batch, ..., D] with D=" + std::to_string(d));
  const std::int64_t b = z.size(0);
  return {b, z.numel() / std::max<std::int64_t>(b * d, 1), (b + r - 1) / r};
}

Dims unbind_dims(const at::Tensor& v, std::int64_t batch, std::int64_t d, int r) {
  if (v.dim() < 2 || v.size(-1) != d)
    throw CodecError("c3 unbind: input must be [groups, ..., D] with D=" + std::to_string(d));
  const std::int64_t g = v.size(0);
  if (batch <= (g - 1) * r || batch > g * r)
    throw CodecError("c3 unbind: batch " + std::to_string(batch) + " does not fit " + std::to_string(g) +
                     " groups of " + std::to_string(r));
  return {batch, v.numel() / std::max<std::int64_t>(g * d, 1), g};
}

std::vector<std::int64_t> with_first(const at::Tensor& t, std::int64_t first) {
  auto shape = t.sizes().vec();
  shape[0] = first;
  return shape;
}

}  // namespace

const char* C3Transform::path() const { return kernels_ ? detail::simd_isa() : "aten"; }

at::Tensor C3Transform::bind(const at::Tensor& z) const {
  const Dims s = bind_dims(z, d_, r_);
  if (!kernels_ || !kernel_ok(z)) return bind_aten(z);
  return BindFn::apply(z.reshape({s.b, s.m, d_}), kernels_, r_).reshape(with_first(z, s.g));
}

at::Tensor C3Transform::unbind(const at::Tensor& v, std::int64_t batch) const {
  const Dims s = unbind_dims(v, batch, d_, r_);
  if (!kernels_ || !kernel_ok(v)) return unbind_aten(v, batch);
  return UnbindFn::apply(v.reshape({s.g, s.m, d_}), kernels_, r_, batch).reshape(with_first(v, batch));
}

at::Tensor C3Transform::bind_aten(const at::Tensor& z) const {
  const Dims s = bind_dims(z, d_, r_);
  at::Tensor z3 = z.reshape({s.b, s.m, d_});
  if (s.g * r_ != s.b) z3 = at::constant_pad_nd(z3, {0, 0, 0, 0, 0, s.g * r_ - s.b});
  at::Tensor kf = spectrum(z.scalar_type());                              // [R, F]
  at::Tensor zf = at::fft_rfft(z3.reshape({s.g, r_, s.m, d_}), d_, -1);   // [G, R, M, F]
  // Accumulate over r instead of materialising all R products (~15% faster here).
  at::Tensor acc = zf.select(1, 0) * kf[0];
  for (int r = 1; r < r_; ++r) acc.add_(zf.select(1, r) * kf[r]);
  return at::fft_irfft(acc, d_, -1).reshape(with_first(z, s.g));          // [G, M, D]
}

at::Tensor C3Transform::unbind_aten(const at::Tensor& v, std::int64_t batch) const {
  const Dims s = unbind_dims(v, batch, d_, r_);
  at::Tensor kf = spectrum(v.scalar_type()).conj().unsqueeze(1);          // [R, 1, F]
  at::Tensor vf = at::fft_rfft(v.reshape({s.g, 1, s.m, d_}), d_, -1);     // [G, 1, M, F]
  at::Tensor z = at::fft_irfft(vf * kf, d_, -1);                          // [G, R, M, D]
  return z.reshape({s.g * r_, s.m, d_}).narrow(0, 0, batch).reshape(with_first(v, batch));
}

at::Tensor C3Transform::circular_convolve_direct(const at::Tensor& k, const at::Tensor& z) {
  // k: [R, D], z: [R, D] -> sum_r (k_r (*) z_r)[n] = sum_r sum_m k_r[m] z_r[(n - m) mod D]
  const std::int64_t d = k.size(1);
  at::Tensor out = at::zeros({d}, k.options());
  auto ka = k.accessor<double, 2>();
  auto za = z.accessor<double, 2>();
  auto oa = out.accessor<double, 1>();
  for (std::int64_t r = 0; r < k.size(0); ++r)
    for (std::int64_t n = 0; n < d; ++n)
      for (std::int64_t m = 0; m < d; ++m) oa[n] += ka[r][m] * za[r][((n - m) % d + d) % d];
  return out;
}

at::Tensor C3Transform::circular_correlate_direct(const at::Tensor& k, const at::Tensor& v) {
  // (k (star) v)[n] = sum_m k[m] v[(m + n) mod D]
  const std::int64_t d = k.size(0);
  at::Tensor out = at::zeros({d}, k.options());
  auto ka = k.accessor<double, 1>();
  auto va = v.accessor<double, 1>();
  auto oa = out.accessor<double, 1>();
  for (std::int64_t n = 0; n < d; ++n)
    for (std::int64_t m = 0; m < d; ++m) oa[n] += ka[m] * va[(m + n) % d];
  return out;
}

}  // namespace seam::compression
