// C3 kernels built for the generic instruction set (see c3_kernel_impl.hpp).
#define SEAM_KNS generic
#define SEAM_VEC_BYTES 16
#include "c3_kernel_impl.hpp"
