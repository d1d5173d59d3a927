// The SIMD kernels built for the generic instruction set.
#define SEAM_KNS generic
#define SEAM_VEC_BYTES 16
#include "c3_kernel_impl.hpp"
#include "lowrank_kernel_impl.hpp"
