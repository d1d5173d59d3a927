#include "seam/compression/platform.hpp"

#include <dlfcn.h>
#include <strings.h>

namespace seam::compression {

std::string blas_kernel_advice() {
  using CoreName = char* (*)();
  // Looked up at run time: LibTorch may sit on another BLAS, or none.
  auto fn = reinterpret_cast<CoreName>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  if (!fn) return "";
  const char* core = fn();
  if (!core || strcasecmp(core, "prescott") != 0) return "";
  const char* want = nullptr;
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) want = "SkylakeX";
  else if (__builtin_cpu_supports("avx2")) want = "Haswell";
#endif
  if (!want) return "";
  return std::string("note: OpenBLAS chose its Prescott kernels for this CPU, so large matrix products run up to ~5x slower; "
                     "set OPENBLAS_CORETYPE=") +
         want + " before starting (scripts/*.sh do)";
}

}  // namespace seam::compression
