// The SIMD kernels' instruction-set choice (made at run time), C3's FFT plan,
// and the dispatch to the variant built for that instruction set.
#include "c3_kernel.hpp"
#include "lowrank_kernel.hpp"

#include <atomic>
#include <cmath>
#include <cstring>

namespace seam::compression::detail {

#define SEAM_DECLARE_KERNELS(ns)                                                                                      \
  namespace ns {                                                                                                      \
  template <class T>                                                                                                  \
  void bind(const C3Plan<T>&, const T*, std::int64_t, std::int64_t, T*, std::int64_t, std::int64_t, std::int64_t,     \
            std::int64_t);                                                                                            \
  template <class T>                                                                                                  \
  void unbind(const C3Plan<T>&, const T*, std::int64_t, std::int64_t, T*, std::int64_t, std::int64_t, std::int64_t,   \
              std::int64_t);                                                                                          \
  void lowrank_a_x(const float*, std::int64_t, std::int64_t, const float*, std::int64_t, float*);                     \
  void lowrank_at_q(const float*, std::int64_t, std::int64_t, const float*, std::int64_t, float*);                    \
  void lowrank_orthonormalize(float*, std::int64_t, std::int64_t);                                                    \
  }
SEAM_DECLARE_KERNELS(generic)
#if SEAM_SIMD_X86
SEAM_DECLARE_KERNELS(avx2)
SEAM_DECLARE_KERNELS(avx512)
#endif

namespace {

enum class Isa { generic, avx2, avx512 };

Isa detect() {
#if SEAM_SIMD_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return Isa::avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::avx2;
#endif
  return Isa::generic;
}

std::atomic<int>& chosen() {
  static std::atomic<int> c{static_cast<int>(detect())};
  return c;
}

Isa isa() { return static_cast<Isa>(chosen().load(std::memory_order_relaxed)); }

}  // namespace

#if SEAM_SIMD_X86
#define SEAM_DISPATCH(fn, ...)                                 \
  switch (isa()) {                                             \
    case Isa::avx512: return avx512::fn(__VA_ARGS__);          \
    case Isa::avx2: return avx2::fn(__VA_ARGS__);              \
    default: return generic::fn(__VA_ARGS__);                  \
  }
#else
#define SEAM_DISPATCH(fn, ...) return generic::fn(__VA_ARGS__);
#endif

const char* simd_isa() {
  switch (isa()) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    case Isa::generic: break;
  }
  return "generic";
}

bool set_simd_isa(const char* name) {
  const Isa best = detect();
  Isa want;
  if (!std::strcmp(name, "generic")) want = Isa::generic;
  else if (!std::strcmp(name, "avx2")) want = Isa::avx2;
  else if (!std::strcmp(name, "avx512")) want = Isa::avx512;
  else return false;
  if (static_cast<int>(want) > static_cast<int>(best)) return false;
  chosen().store(static_cast<int>(want));
  return true;
}

template <class T>
std::shared_ptr<const C3Plan<T>> make_c3_plan(std::int64_t d, int r, const double* spec_re, const double* spec_im) {
  auto p = std::make_shared<C3Plan<T>>();
  p->d = d;
  p->n = d / 2;
  p->r = r;
  const double two_pi = 2 * M_PI;
  // Factor n: radix 4 first, then 2, 3, then any other prime.
  std::vector<int> radices;
  std::int64_t rest = p->n;
  while (rest % 4 == 0) radices.push_back(4), rest /= 4;
  while (rest % 2 == 0) radices.push_back(2), rest /= 2;
  for (std::int64_t f = 3; rest > 1; f += 2)
    while (rest % f == 0) radices.push_back(static_cast<int>(f)), rest /= f;
  std::int64_t len = p->n, s = 1;
  for (int radix : radices) {
    typename C3Plan<T>::Stage st;
    st.p = radix;
    st.m = len / radix;
    st.s = s;
    for (std::int64_t j = 0; j < st.m; ++j)
      for (int u = 1; u < radix; ++u) {
        double a = -two_pi * double(j * u) / double(len);
        st.wr.push_back(static_cast<T>(std::cos(a)));
        st.wi.push_back(static_cast<T>(std::sin(a)));
      }
    for (int e = 0; e < radix; ++e) {
      st.or_.push_back(static_cast<T>(std::cos(two_pi * e / radix)));
      st.oi.push_back(static_cast<T>(-std::sin(two_pi * e / radix)));
    }
    p->stages.push_back(std::move(st));
    len /= radix;
    s *= radix;
  }
  for (std::int64_t k = 0; k <= p->n; ++k) {
    p->rot_r.push_back(static_cast<T>(std::cos(two_pi * double(k) / double(d))));
    p->rot_i.push_back(static_cast<T>(-std::sin(two_pi * double(k) / double(d))));
  }
  const double scale = 1.0 / (2.0 * double(d));
  for (std::int64_t i = 0; i < std::int64_t(r) * (p->n + 1); ++i) {
    p->key_r.push_back(static_cast<T>(spec_re[i] * scale));
    p->key_i.push_back(static_cast<T>(spec_im[i] * scale));
  }
  return p;
}

template <class T>
void c3_bind(const C3Plan<T>& plan, const T* z, std::int64_t b, std::int64_t m, T* out, std::int64_t g0,
             std::int64_t g1, std::int64_t m0, std::int64_t m1) {
  SEAM_DISPATCH(bind, plan, z, b, m, out, g0, g1, m0, m1)
}

template <class T>
void c3_unbind(const C3Plan<T>& plan, const T* v, std::int64_t batch, std::int64_t m, T* out, std::int64_t g0,
               std::int64_t g1, std::int64_t m0, std::int64_t m1) {
  SEAM_DISPATCH(unbind, plan, v, batch, m, out, g0, g1, m0, m1)
}

void lowrank_a_x(const float* a, std::int64_t m, std::int64_t h, const float* x, std::int64_t k, float* y) {
  SEAM_DISPATCH(lowrank_a_x, a, m, h, x, k, y)
}
void lowrank_at_q(const float* a, std::int64_t m, std::int64_t h, const float* q, std::int64_t k, float* z) {
  SEAM_DISPATCH(lowrank_at_q, a, m, h, q, k, z)
}
void lowrank_orthonormalize(float* y, std::int64_t n, std::int64_t k) { SEAM_DISPATCH(lowrank_orthonormalize, y, n, k) }

#define SEAM_INSTANTIATE(T)                                                                                          \
  template std::shared_ptr<const C3Plan<T>> make_c3_plan<T>(std::int64_t, int, const double*, const double*);       \
  template void c3_bind<T>(const C3Plan<T>&, const T*, std::int64_t, std::int64_t, T*, std::int64_t, std::int64_t,   \
                           std::int64_t, std::int64_t);                                                             \
  template void c3_unbind<T>(const C3Plan<T>&, const T*, std::int64_t, std::int64_t, T*, std::int64_t, std::int64_t, \
                             std::int64_t, std::int64_t);
SEAM_INSTANTIATE(float)
SEAM_INSTANTIATE(double)

}  // namespace seam::compression::detail
