// C3 kernels built for the avx512 instruction set (see c3_kernel_impl.hpp).
#define SEAM_KNS avx512
#define SEAM_VEC_BYTES 64
#include "c3_kernel_impl.hpp"
