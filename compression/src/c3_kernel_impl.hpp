// Body of the C3 kernels for one vector width. Included by c3_kernel_*.cpp
// with SEAM_KNS (namespace) and SEAM_VEC_BYTES (vector size) defined; each of
// those files is compiled for its own instruction set.
#include <algorithm>
#include <cstring>
#include <utility>

#include "c3_kernel.hpp"

namespace seam::compression::detail::SEAM_KNS {

template <class T>
struct VecOf {
  typedef T type __attribute__((vector_size(SEAM_VEC_BYTES)));
};
template <class T>
struct MaskOf;  // integer vector of the same shape, for __builtin_shuffle
template <>
struct MaskOf<float> {
  typedef std::int32_t type __attribute__((vector_size(SEAM_VEC_BYTES)));
};
template <>
struct MaskOf<double> {
  typedef std::int64_t type __attribute__((vector_size(SEAM_VEC_BYTES)));
};

// Two-vector shuffle: lane i of the result is lane m[i] of the concatenation
// a:b. GCC has it built in; clang gets the same by lanes (its optimiser
// turns constant masks back into shuffles).
template <class V, class M>
inline V shuffle2(V a, V b, M m) {
#if defined(__clang__)
  constexpr int n = sizeof(V) / sizeof(a[0]);
  V r;
  for (int i = 0; i < n; ++i) r[i] = m[i] < n ? a[m[i]] : b[m[i] - n];
  return r;
#else
  return __builtin_shuffle(a, b, m);
#endif
}

// W x W tiles moved between row-major memory (rows of interleaved complex
// values) and the lane-per-row layout, with shuffles instead of scalar moves.
template <class T>
struct Tile {
  using V = typename VecOf<T>::type;
  using M = typename MaskOf<T>::type;
  static constexpr int W = SEAM_VEC_BYTES / sizeof(T);

  template <class F, std::size_t... I>
  static constexpr M mask(F f, std::index_sequence<I...>) {
    return M{static_cast<typename std::remove_reference<decltype(M{}[0])>::type>(f(int(I)))...};
  }
  template <class F>
  static constexpr M mask(F f) {
    return mask(f, std::make_index_sequence<W>{});
  }

  // One transpose step: swap bit log2(S) of the row index with that of the lane index.
  template <int S>
  static void swap_step(V* r) {
    constexpr M ma = mask([](int p) { return (p % (2 * S)) < S ? p : W + p - S; });
    constexpr M mb = mask([](int p) { return (p % (2 * S)) < S ? p + S : W + p; });
    for (int i = 0; i < W; ++i)
      if (!(i & S)) {
        V a = r[i], b = r[i + S];
        r[i] = shuffle2(a, b, ma);
        r[i + S] = shuffle2(a, b, mb);
      }
  }
  template <int S = W / 2>
  static void transpose(V* r) {
    swap_step<S>(r);
    if constexpr (S > 1) transpose<S / 2>(r);
  }

  // rows[l][2(k0+t)], rows[l][2(k0+t)+1] -> re[t][l], im[t][l]
  static void load(const T* const* rows, std::int64_t k0, V* re, V* im) {
    constexpr M even = mask([](int p) { return 2 * p; });
    constexpr M odd = mask([](int p) { return 2 * p + 1; });
    for (int l = 0; l < W; ++l) {
      if (!rows[l]) {
        re[l] = im[l] = V{};
        continue;
      }
      V lo, hi;
      std::memcpy(&lo, rows[l] + 2 * k0, sizeof(V));
      std::memcpy(&hi, rows[l] + 2 * k0 + W, sizeof(V));
      re[l] = shuffle2(lo, hi, even);
      im[l] = shuffle2(lo, hi, odd);
    }
    transpose(re);
    transpose(im);
  }

  // The reverse of load (re and im are clobbered).
  static void store(V* re, V* im, T* const* rows, std::int64_t k0) {
    constexpr M lo_m = mask([](int p) { return p % 2 ? W + p / 2 : p / 2; });
    constexpr M hi_m = mask([](int p) { return p % 2 ? W + W / 2 + p / 2 : W / 2 + p / 2; });
    transpose(re);
    transpose(im);
    for (int l = 0; l < W; ++l) {
      if (!rows[l]) continue;
      V lo = shuffle2(re[l], im[l], lo_m), hi = shuffle2(re[l], im[l], hi_m);
      std::memcpy(rows[l] + 2 * k0, &lo, sizeof(V));
      std::memcpy(rows[l] + 2 * k0 + W, &hi, sizeof(V));
    }
  }
};

template <class T>
class Engine {
 public:
  using V = typename VecOf<T>::type;
  static constexpr int W = SEAM_VEC_BYTES / sizeof(T);  // rows per block

  explicit Engine(const C3Plan<T>& p)
      : P(p), n(p.n), ar(n), ai(n), br(n), bi(n), xr(n + 1), xi(n + 1), accr(n + 1), acci(n + 1) {}

  // rows[l]: the l-th row of length d, or null for a zero row.
  void forward(const T* const* rows, V* outr, V* outi) {
    load(rows);
    auto [zr, zi] = fft(ar.data(), ai.data(), br.data(), bi.data());
    // X[k] = E + W^k O with E = Z[k] + conj(Z[n-k]), O = -i (Z[k] - conj(Z[n-k])): twice rfft(x).
    for (std::int64_t k = 0; k <= n; ++k) {
      const std::int64_t k1 = k == n ? 0 : k, k2 = k == 0 ? 0 : n - k;
      V er = zr[k1] + zr[k2], ei = zi[k1] - zi[k2];
      V orr = zi[k1] + zi[k2], oi = zr[k2] - zr[k1];
      const T wr = P.rot_r[k], wi = P.rot_i[k];
      outr[k] = er + (orr * wr - oi * wi);
      outi[k] = ei + (orr * wi + oi * wr);
    }
  }

  // Inverse of forward for a spectrum already scaled by 1/(2d): writes rows.
  void inverse(const V* sr, const V* si, T* const* rows) {
    // Z[k] = E + i O, E = X[k] + conj(X[n-k]), O = (X[k] - conj(X[n-k])) conj(W^k); build conj(Z)
    // so that a forward FFT computes the (conjugated) inverse.
    for (std::int64_t k = 0; k < n; ++k) {
      const std::int64_t k2 = n - k;
      V er = sr[k] + sr[k2], ei = si[k] - si[k2];
      V dr = sr[k] - sr[k2], di = si[k] + si[k2];
      const T wr = P.rot_r[k], wi = -P.rot_i[k];
      V orr = dr * wr - di * wi, oi = dr * wi + di * wr;
      ar[k] = er - oi;
      ai[k] = -(ei + orr);
    }
    auto [yr, yi] = fft(ar.data(), ai.data(), br.data(), bi.data());
    store(yr, yi, rows);
  }

  void bind(const T* z, std::int64_t b, std::int64_t m, T* out, std::int64_t g, std::int64_t m0, std::int64_t m1) {
    const std::int64_t d = P.d;
    const T* rows[W];
    bool first = true;
    for (int r = 0; r < P.r; ++r) {
      const std::int64_t s = g * P.r + r;
      if (s >= b) break;
      for (int l = 0; l < W; ++l) rows[l] = m0 + l < m1 ? z + (s * m + m0 + l) * d : nullptr;
      forward(rows, xr.data(), xi.data());
      const T* kr = P.key_r.data() + r * (n + 1);
      const T* ki = P.key_i.data() + r * (n + 1);
      if (first) {
        for (std::int64_t k = 0; k <= n; ++k) {
          accr[k] = xr[k] * kr[k] - xi[k] * ki[k];
          acci[k] = xr[k] * ki[k] + xi[k] * kr[k];
        }
        first = false;
      } else {
        for (std::int64_t k = 0; k <= n; ++k) {
          accr[k] += xr[k] * kr[k] - xi[k] * ki[k];
          acci[k] += xr[k] * ki[k] + xi[k] * kr[k];
        }
      }
    }
    T* outs[W];
    for (int l = 0; l < W; ++l) outs[l] = m0 + l < m1 ? out + (g * m + m0 + l) * d : nullptr;
    inverse(accr.data(), acci.data(), outs);
  }

  void unbind(const T* v, std::int64_t batch, std::int64_t m, T* out, std::int64_t g, std::int64_t m0,
              std::int64_t m1) {
    const std::int64_t d = P.d;
    const T* rows[W];
    for (int l = 0; l < W; ++l) rows[l] = m0 + l < m1 ? v + (g * m + m0 + l) * d : nullptr;
    forward(rows, xr.data(), xi.data());
    T* outs[W];
    for (int r = 0; r < P.r; ++r) {
      const std::int64_t s = g * P.r + r;
      if (s >= batch) break;
      const T* kr = P.key_r.data() + r * (n + 1);
      const T* ki = P.key_i.data() + r * (n + 1);
      for (std::int64_t k = 0; k <= n; ++k) {  // times conj(key)
        accr[k] = xr[k] * kr[k] + xi[k] * ki[k];
        acci[k] = xi[k] * kr[k] - xr[k] * ki[k];
      }
      for (int l = 0; l < W; ++l) outs[l] = m0 + l < m1 ? out + (s * m + m0 + l) * d : nullptr;
      inverse(accr.data(), acci.data(), outs);
    }
  }

 private:
  const C3Plan<T>& P;
  const std::int64_t n;
  std::vector<V> ar, ai, br, bi, xr, xi, accr, acci;

  // z[k] = x[2k] + i x[2k+1], lane l from rows[l].
  void load(const T* const* rows) {
    const std::int64_t full = n / W * W;
    for (std::int64_t k0 = 0; k0 < full; k0 += W) Tile<T>::load(rows, k0, &ar[k0], &ai[k0]);
    for (int l = 0; l < W; ++l) {
      const T* p = rows[l];
      if (!p) {
        for (std::int64_t k = full; k < n; ++k) ar[k][l] = ai[k][l] = 0;
        continue;
      }
      for (std::int64_t k = full; k < n; ++k) {
        ar[k][l] = p[2 * k];
        ai[k][l] = p[2 * k + 1];
      }
    }
  }

  // Rows get conj of the FFT output (the inverse's final conjugation).
  void store(const V* yr, const V* yi, T* const* rows) {
    const std::int64_t full = n / W * W;
    V re[W], im[W];
    for (std::int64_t k0 = 0; k0 < full; k0 += W) {
      for (int t = 0; t < W; ++t) {
        re[t] = yr[k0 + t];
        im[t] = -yi[k0 + t];
      }
      Tile<T>::store(re, im, rows, k0);
    }
    for (int l = 0; l < W; ++l) {
      T* p = rows[l];
      if (!p) continue;
      for (std::int64_t k = full; k < n; ++k) {
        p[2 * k] = yr[k][l];
        p[2 * k + 1] = -yi[k][l];
      }
    }
  }

  struct Ptrs {
    V* r;
    V* i;
  };
  // Stockham autosort FFT of length n: input in (xr, xi), (yr, yi) is scratch.
  Ptrs fft(V* xr_, V* xi_, V* yr_, V* yi_) {
    for (const auto& st : P.stages) {
      switch (st.p) {
        case 4: radix4(st, xr_, xi_, yr_, yi_); break;
        case 2: radix2(st, xr_, xi_, yr_, yi_); break;
        case 3: radix3(st, xr_, xi_, yr_, yi_); break;
        default: radixp(st, xr_, xi_, yr_, yi_); break;
      }
      std::swap(xr_, yr_);
      std::swap(xi_, yi_);
    }
    return {xr_, xi_};
  }

  static void twiddle(V& re, V& im, T wr, T wi) {
    V t = re * wr - im * wi;
    im = re * wi + im * wr;
    re = t;
  }

  // y[q + s (p j + u)] = w^(j u) sum_t x[q + s (j + m t)] omega_p^(t u)
  void radix2(const typename C3Plan<T>::Stage& st, const V* xr_, const V* xi_, V* yr_, V* yi_) {
    const std::int64_t m = st.m, s = st.s;
    for (std::int64_t j = 0; j < m; ++j) {
      const T wr = st.wr[j], wi = st.wi[j];
      for (std::int64_t q = 0; q < s; ++q) {
        const std::int64_t i0 = q + s * j, i1 = i0 + s * m;
        V a_r = xr_[i0], a_i = xi_[i0], b_r = xr_[i1], b_i = xi_[i1];
        V d_r = a_r - b_r, d_i = a_i - b_i;
        twiddle(d_r, d_i, wr, wi);
        const std::int64_t o = q + s * 2 * j;
        yr_[o] = a_r + b_r;
        yi_[o] = a_i + b_i;
        yr_[o + s] = d_r;
        yi_[o + s] = d_i;
      }
    }
  }

  void radix4(const typename C3Plan<T>::Stage& st, const V* xr_, const V* xi_, V* yr_, V* yi_) {
    const std::int64_t m = st.m, s = st.s;
    for (std::int64_t j = 0; j < m; ++j) {
      const T* wr = &st.wr[3 * j];
      const T* wi = &st.wi[3 * j];
      for (std::int64_t q = 0; q < s; ++q) {
        const std::int64_t i0 = q + s * j, sm = s * m;
        V a0r = xr_[i0], a0i = xi_[i0], a1r = xr_[i0 + sm], a1i = xi_[i0 + sm];
        V a2r = xr_[i0 + 2 * sm], a2i = xi_[i0 + 2 * sm], a3r = xr_[i0 + 3 * sm], a3i = xi_[i0 + 3 * sm];
        V t0r = a0r + a2r, t0i = a0i + a2i, t1r = a0r - a2r, t1i = a0i - a2i;
        V t2r = a1r + a3r, t2i = a1i + a3i;
        V t3r = a1i - a3i, t3i = a3r - a1r;  // -i (a1 - a3)
        V y1r = t1r + t3r, y1i = t1i + t3i, y2r = t0r - t2r, y2i = t0i - t2i, y3r = t1r - t3r, y3i = t1i - t3i;
        twiddle(y1r, y1i, wr[0], wi[0]);
        twiddle(y2r, y2i, wr[1], wi[1]);
        twiddle(y3r, y3i, wr[2], wi[2]);
        const std::int64_t o = q + s * 4 * j;
        yr_[o] = t0r + t2r;
        yi_[o] = t0i + t2i;
        yr_[o + s] = y1r;
        yi_[o + s] = y1i;
        yr_[o + 2 * s] = y2r;
        yi_[o + 2 * s] = y2i;
        yr_[o + 3 * s] = y3r;
        yi_[o + 3 * s] = y3i;
      }
    }
  }

  void radix3(const typename C3Plan<T>::Stage& st, const V* xr_, const V* xi_, V* yr_, V* yi_) {
    const std::int64_t m = st.m, s = st.s;
    const T h = static_cast<T>(0.86602540378443864676);  // sqrt(3)/2
    for (std::int64_t j = 0; j < m; ++j) {
      const T* wr = &st.wr[2 * j];
      const T* wi = &st.wi[2 * j];
      for (std::int64_t q = 0; q < s; ++q) {
        const std::int64_t i0 = q + s * j, sm = s * m;
        V a0r = xr_[i0], a0i = xi_[i0], a1r = xr_[i0 + sm], a1i = xi_[i0 + sm];
        V a2r = xr_[i0 + 2 * sm], a2i = xi_[i0 + 2 * sm];
        V sr = a1r + a2r, si = a1i + a2i, dr = a1r - a2r, di = a1i - a2i;
        V cr = a0r - sr * T(0.5), ci = a0i - si * T(0.5);
        // y1 = c - i h d, y2 = c + i h d
        V y1r = cr + di * h, y1i = ci - dr * h, y2r = cr - di * h, y2i = ci + dr * h;
        twiddle(y1r, y1i, wr[0], wi[0]);
        twiddle(y2r, y2i, wr[1], wi[1]);
        const std::int64_t o = q + s * 3 * j;
        yr_[o] = a0r + sr;
        yi_[o] = a0i + si;
        yr_[o + s] = y1r;
        yi_[o + s] = y1i;
        yr_[o + 2 * s] = y2r;
        yi_[o + 2 * s] = y2i;
      }
    }
  }

  // Any other prime: a direct length-p DFT per butterfly.
  void radixp(const typename C3Plan<T>::Stage& st, const V* xr_, const V* xi_, V* yr_, V* yi_) {
    const std::int64_t m = st.m, s = st.s;
    const int p = st.p;
    for (std::int64_t j = 0; j < m; ++j) {
      for (std::int64_t q = 0; q < s; ++q) {
        for (int u = 0; u < p; ++u) {
          V accr_ = xr_[q + s * j], acci_ = xi_[q + s * j];
          for (int t = 1; t < p; ++t) {
            const int e = (t * u) % p;
            V ar_ = xr_[q + s * (j + m * t)], ai_ = xi_[q + s * (j + m * t)];
            accr_ += ar_ * st.or_[e] - ai_ * st.oi[e];
            acci_ += ar_ * st.oi[e] + ai_ * st.or_[e];
          }
          if (u > 0) twiddle(accr_, acci_, st.wr[j * (p - 1) + u - 1], st.wi[j * (p - 1) + u - 1]);
          yr_[q + s * (p * j + u)] = accr_;
          yi_[q + s * (p * j + u)] = acci_;
        }
      }
    }
  }
};

template <class T>
void bind(const C3Plan<T>& plan, const T* z, std::int64_t b, std::int64_t m, T* out, std::int64_t g0, std::int64_t g1,
          std::int64_t m0, std::int64_t m1) {
  Engine<T> e(plan);
  for (std::int64_t g = g0; g < g1; ++g)
    for (std::int64_t mb = m0; mb < m1; mb += Engine<T>::W) e.bind(z, b, m, out, g, mb, std::min(m1, mb + Engine<T>::W));
}

template <class T>
void unbind(const C3Plan<T>& plan, const T* v, std::int64_t batch, std::int64_t m, T* out, std::int64_t g0,
            std::int64_t g1, std::int64_t m0, std::int64_t m1) {
  Engine<T> e(plan);
  for (std::int64_t g = g0; g < g1; ++g)
    for (std::int64_t mb = m0; mb < m1; mb += Engine<T>::W)
      e.unbind(v, batch, m, out, g, mb, std::min(m1, mb + Engine<T>::W));
}

template void bind<float>(const C3Plan<float>&, const float*, std::int64_t, std::int64_t, float*, std::int64_t,
                          std::int64_t, std::int64_t, std::int64_t);
template void bind<double>(const C3Plan<double>&, const double*, std::int64_t, std::int64_t, double*, std::int64_t,
                           std::int64_t, std::int64_t, std::int64_t);
template void unbind<float>(const C3Plan<float>&, const float*, std::int64_t, std::int64_t, float*, std::int64_t,
                            std::int64_t, std::int64_t, std::int64_t);
template void unbind<double>(const C3Plan<double>&, const double*, std::int64_t, std::int64_t, double*, std::int64_t,
                             std::int64_t, std::int64_t, std::int64_t);

}  // namespace seam::compression::detail::SEAM_KNS
