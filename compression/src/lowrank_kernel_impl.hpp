// Body of lowrank's skinny products for one vector width; included by the
// simd_kernels_*.cpp files after c3_kernel_impl.hpp (which defines VecOf).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "lowrank_kernel.hpp"

namespace seam::compression::detail::SEAM_KNS {

namespace lowrank {

using V = VecOf<float>::type;
constexpr int W = SEAM_VEC_BYTES / sizeof(float);
constexpr int kMaxVecs = 4;  // k <= 4 W

inline V splat(float x) {
  const V v = {x};
  return shuffle2(v, v, MaskOf<float>::type{});  // lane 0 everywhere: one broadcast
}

// Columns [0, k) of a thin matrix with row stride ld -> [rows][KV] vectors,
// zero-padded.
template <int KV>
std::vector<V> pad(const float* t, std::int64_t rows, std::int64_t k, std::int64_t ld) {
  std::vector<V> p(static_cast<std::size_t>(rows) * KV, V{});
  for (std::int64_t i = 0; i < rows; ++i) std::memcpy(&p[i * KV], t + i * ld, sizeof(float) * k);
  return p;
}

// R rows of y = a x at once: acc[r] += a[r][c] * x[c] for every column c of a.
template <int KV, int R>
void a_x_rows(const float* a, std::int64_t h, const V* xp, std::int64_t k, float* y, std::int64_t ldy) {
  V acc[R][KV] = {};
  for (std::int64_t c = 0; c < h; ++c) {
    const V* xv = xp + c * KV;
    for (int r = 0; r < R; ++r) {
      const V b = splat(a[r * h + c]);
      for (int v = 0; v < KV; ++v) acc[r][v] += b * xv[v];
    }
  }
  for (int r = 0; r < R; ++r) std::memcpy(y + r * ldy, acc[r], sizeof(float) * k);
}

// Columns [0, k) of y (row stride ld) from the same columns of x (row stride ld).
template <int KV>
void a_x(const float* a, std::int64_t m, std::int64_t h, const float* x, std::int64_t k, float* y, std::int64_t ld) {
  const std::vector<V> xp = pad<KV>(x, h, k, ld);
  constexpr int R = 8 / KV;  // 8 independent FMA chains
  std::int64_t i = 0;
  for (; i + R <= m; i += R) a_x_rows<KV, R>(a + i * h, h, xp.data(), k, y + i * ld, ld);
  for (; i < m; ++i) a_x_rows<KV, 1>(a + i * h, h, xp.data(), k, y + i * ld, ld);
}

// z[c] += sum over R rows i of a[i][c] * q[i], for every column c: A is read
// in row order, z (h x KV vectors) stays in L1/L2.
template <int KV, int R>
void at_q_rows(const float* a, std::int64_t h, const V* qp, V* zp) {
  V qv[R][KV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < KV; ++v) qv[r][v] = qp[r * KV + v];
  for (std::int64_t c = 0; c < h; ++c) {
    V even[KV], odd[KV];  // two chains halve the FMA latency per column
    for (int v = 0; v < KV; ++v) {
      even[v] = zp[c * KV + v];
      odd[v] = V{};
    }
    for (int r = 0; r < R; ++r) {
      const V b = splat(a[r * h + c]);
      for (int v = 0; v < KV; ++v) {
        if (r % 2) odd[v] += b * qv[r][v];
        else even[v] += b * qv[r][v];
      }
    }
    for (int v = 0; v < KV; ++v) zp[c * KV + v] = even[v] + odd[v];
  }
}

// Columns [0, k) of z (row stride ld) from the same columns of q (row stride ld).
template <int KV>
void at_q(const float* a, std::int64_t m, std::int64_t h, const float* q, std::int64_t k, float* z, std::int64_t ld) {
  const std::vector<V> qp = pad<KV>(q, m, k, ld);
  std::vector<V> zp(static_cast<std::size_t>(h) * KV, V{});
  constexpr int R = 8;
  std::int64_t i = 0;
  for (; i + R <= m; i += R) at_q_rows<KV, R>(a + i * h, h, qp.data() + i * KV, zp.data());
  for (; i < m; ++i) at_q_rows<KV, 1>(a + i * h, h, qp.data() + i * KV, zp.data());
  for (std::int64_t c = 0; c < h; ++c) std::memcpy(z + c * ld, &zp[c * KV], sizeof(float) * k);
}

inline float hsum(V v) {
  float s = 0;
  for (int l = 0; l < W; ++l) s += v[l];
  return s;
}

// Dot product of two length-n columns (n a multiple of W, zero-padded).
inline float dot(const V* a, const V* b, std::int64_t nv) {
  V acc0{}, acc1{};
  std::int64_t i = 0;
  for (; i + 2 <= nv; i += 2) {
    acc0 += a[i] * b[i];
    acc1 += a[i + 1] * b[i + 1];
  }
  if (i < nv) acc0 += a[i] * b[i];
  return hsum(acc0 + acc1);
}

}  // namespace lowrank

void lowrank_orthonormalize(float* y, std::int64_t n, std::int64_t k) {
  using namespace lowrank;
  const std::int64_t nv = (n + W - 1) / W;
  std::vector<V> cols(static_cast<std::size_t>(k) * nv, V{});  // column-major, zero-padded
  std::vector<float> col(static_cast<std::size_t>(nv) * W, 0.0f);
  for (std::int64_t j = 0; j < k; ++j) {
    for (std::int64_t i = 0; i < n; ++i) col[i] = y[i * k + j];
    std::memcpy(&cols[j * nv], col.data(), sizeof(V) * nv);
  }
  for (std::int64_t j = 0; j < k; ++j) {
    V* v = &cols[j * nv];
    float before = std::sqrt(dot(v, v, nv));
    // Classical Gram-Schmidt, repeated while a pass removes more than half
    // of the column ("twice is enough", Kahan-Parlett); at most three passes.
    for (int pass = 0; pass < 3 && before > 0; ++pass) {
      for (std::int64_t i = 0; i < j; ++i) {
        const V* qi = &cols[i * nv];
        const V c = splat(dot(qi, v, nv));
        for (std::int64_t t = 0; t < nv; ++t) v[t] -= c * qi[t];
      }
      const float after = std::sqrt(dot(v, v, nv));
      const bool done = after >= 0.5f * before;
      before = after;
      if (done) break;
    }
    // A column with nothing left (exactly rank-deficient input) becomes zero.
    const V scale = splat(before > 1e-30f ? 1.0f / before : 0.0f);
    for (std::int64_t t = 0; t < nv; ++t) v[t] *= scale;
  }
  for (std::int64_t j = 0; j < k; ++j) {
    std::memcpy(col.data(), &cols[j * nv], sizeof(V) * nv);
    for (std::int64_t i = 0; i < n; ++i) y[i * k + j] = col[i];
  }
}

// Wide thin sides go in blocks of up to kMaxVecs vectors' worth of columns;
// fn(j0, kb, kv) gets the block's first column, width, and vector count as a
// compile-time constant.
template <class Fn>
void column_blocks(std::int64_t k, Fn fn) {
  using namespace lowrank;
  for (std::int64_t j0 = 0; j0 < k; j0 += kMaxVecs * W) {
    const std::int64_t kb = std::min<std::int64_t>(kMaxVecs * W, k - j0);
    switch ((kb + W - 1) / W) {
      case 1: fn(j0, kb, std::integral_constant<int, 1>{}); break;
      case 2: fn(j0, kb, std::integral_constant<int, 2>{}); break;
      case 3: fn(j0, kb, std::integral_constant<int, 3>{}); break;
      default: fn(j0, kb, std::integral_constant<int, 4>{}); break;
    }
  }
}

void lowrank_a_x(const float* a, std::int64_t m, std::int64_t h, const float* x, std::int64_t k, float* y) {
  column_blocks(k, [&](std::int64_t j0, std::int64_t kb, auto kv) {
    lowrank::a_x<decltype(kv)::value>(a, m, h, x + j0, kb, y + j0, k);
  });
}

void lowrank_at_q(const float* a, std::int64_t m, std::int64_t h, const float* q, std::int64_t k, float* z) {
  column_blocks(k, [&](std::int64_t j0, std::int64_t kb, auto kv) {
    lowrank::at_q<decltype(kv)::value>(a, m, h, q + j0, kb, z + j0, k);
  });
}

}  // namespace seam::compression::detail::SEAM_KNS
