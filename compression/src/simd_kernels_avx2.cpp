// The SIMD kernels built for the avx2 instruction set.
#define SEAM_KNS avx2
#define SEAM_VEC_BYTES 32
#include "c3_kernel_impl.hpp"
#include "lowrank_kernel_impl.hpp"
