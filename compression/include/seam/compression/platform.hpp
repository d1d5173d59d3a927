#pragma once
// Facts about the numeric platform that programs report to users.
#include <string>

namespace seam::compression {

// OpenBLAS 0.3.21 (Debian 12) does not recognise some newer CPUs and falls
// back to its Prescott (SSE3) kernels: matrix products then run ~5x slower
// (4096x768x768 sgemm: 375 ms vs 73 ms with OPENBLAS_CORETYPE=SkylakeX, one
// thread, measured here). Returns one line of advice when that happened on a
// CPU with AVX2 or AVX-512, else "". scripts/blas-env.sh sets the variable.
std::string blas_kernel_advice();

}  // namespace seam::compression
