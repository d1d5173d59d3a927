#pragma once
// C3-SL boundary transform (Hsieh et al. 2022, arXiv 2207.12397): groups of R
// samples are bound into one by circular convolution with fixed keys, and
// unbound on the other side by circular correlation. Both directions shrink by
// R. bind/unbind are ordinary differentiable ATen ops: the gradient that flows
// back through unbind is the gradient with respect to the bound tensor.
#include <ATen/core/Tensor.h>
#include <memory>

#include <cstdint>

namespace seam::compression {

enum class C3KeyKind {
  gaussian,  // k ~ N(0, 1/D), L2-normalised (the paper's keys)
  unitary,   // unit-magnitude spectrum, random phase: unbinding is exact for R = 1
};

class C3Transform {
 public:
  // R keys of length D, drawn from `seed` (shared by both sides of a session).
  C3Transform(int r, std::int64_t d, std::uint64_t seed, C3KeyKind kind = C3KeyKind::gaussian);

  // z: [B, ..., D]. Binds along the last dimension (the same key for every
  // position in between, e.g. every token); to bind a whole flattened sample,
  // reshape it to [B, D] first. Returns [ceil(B/R), ..., D]; a partial last
  // group is zero-padded, never dropped.
  at::Tensor bind(const at::Tensor& z) const;
  // v: [G, ..., D]. Returns [batch, ..., D], (G-1)*R < batch <= G*R.
  at::Tensor unbind(const at::Tensor& v, std::int64_t batch) const;

  int r() const { return r_; }
  std::int64_t d() const { return d_; }
  const at::Tensor& keys() const { return keys_; }  // [R, D], float64

  // Direct O(D^2) definitions, for tests: sum_r k_r (*) z_r and k_r (star) v.
  static at::Tensor circular_convolve_direct(const at::Tensor& k, const at::Tensor& z);
  static at::Tensor circular_correlate_direct(const at::Tensor& k, const at::Tensor& v);
  // The same maps through ATen's FFT (the path odd D and other dtypes take).
  at::Tensor bind_aten(const at::Tensor& z) const;
  at::Tensor unbind_aten(const at::Tensor& v, std::int64_t batch) const;

  // Which path float32/float64 tensors take: "avx512", "avx2" or "generic"
  // (the SIMD kernels, even D) or "aten" (odd D).
  const char* path() const;

  struct Kernels;  // batched SIMD FFT plans (even D, float32/float64)

 private:
  at::Tensor spectrum(c10::ScalarType t) const;  // rfft of the keys, [R, D/2+1]

  int r_;
  std::int64_t d_;
  at::Tensor keys_;
  at::Tensor spec64_, spec32_;  // cached: the keys never change
  std::shared_ptr<const Kernels> kernels_;  // null for odd D
};

}  // namespace seam::compression
