// The SIMD kernels built for the avx512 instruction set.
#define SEAM_KNS avx512
#define SEAM_VEC_BYTES 64
#include "c3_kernel_impl.hpp"
#include "lowrank_kernel_impl.hpp"
