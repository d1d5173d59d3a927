#pragma once
// C3 bind/unbind kernels: batched real FFTs of length D (even), vectorised
// across rows (each SIMD lane is one row), with the key products fused in.
// No LibTorch here; c3.cpp wraps these in an autograd function. The plan is
// plain data shared by every instruction-set variant.
#include <cstdint>
#include <memory>
#include <vector>

#include "simd_kernels.hpp"

namespace seam::compression::detail {

template <class T>
struct C3Plan {
  std::int64_t d = 0;  // real length (even)
  std::int64_t n = 0;  // complex FFT length d / 2
  int r = 0;           // keys
  struct Stage {       // one Stockham radix-p pass: sub-length p*m, stride s
    int p = 0;
    std::int64_t m = 0, s = 0;
    std::vector<T> wr, wi;  // twiddles exp(-2 pi i j u / (p m)), [j][u-1]
    std::vector<T> or_, oi;  // p-th roots of unity, for the generic radix
  };
  std::vector<Stage> stages;
  std::vector<T> rot_r, rot_i;  // exp(-2 pi i k / d), k in [0, n]
  std::vector<T> key_r, key_i;  // key spectra [r][n + 1], scaled by 1 / (2 d)
};

// spec_re/spec_im: rfft of the keys in float64, [r][d/2 + 1]. d must be even.
template <class T>
std::shared_ptr<const C3Plan<T>> make_c3_plan(std::int64_t d, int r, const double* spec_re, const double* spec_im);

// z: [b, m, d] contiguous; out: [ceil(b/r), m, d]. Writes groups [g0, g1) and
// positions [m0, m1) of them; missing members of the last group count as zero.
template <class T>
void c3_bind(const C3Plan<T>& plan, const T* z, std::int64_t b, std::int64_t m, T* out, std::int64_t g0,
             std::int64_t g1, std::int64_t m0, std::int64_t m1);
// v: [g, m, d] contiguous; out: [batch, m, d]. Writes the members of groups
// [g0, g1) that are < batch, positions [m0, m1).
template <class T>
void c3_unbind(const C3Plan<T>& plan, const T* v, std::int64_t batch, std::int64_t m, T* out, std::int64_t g0,
               std::int64_t g1, std::int64_t m0, std::int64_t m1);


}  // namespace seam::compression::detail
