#pragma once
// lowrank's skinny products, A [m x h] times a thin matrix of k columns, in
// one streaming pass over A per block of up to 4 vectors' worth of columns,
// without packing A (BLAS packs A first, which costs as much as the product
// at these shapes). Row-major, contiguous float.
#include <cstdint>

#include "simd_kernels.hpp"

namespace seam::compression::detail {

// y [m x k] = a [m x h] * x [h x k]
void lowrank_a_x(const float* a, std::int64_t m, std::int64_t h, const float* x, std::int64_t k, float* y);
// z [h x k] = a^T * q, with a [m x h] and q [m x k]
void lowrank_at_q(const float* a, std::int64_t m, std::int64_t h, const float* q, std::int64_t k, float* z);

// In place: the k columns of y [n x k] (row-major) become orthonormal, by
// classical Gram-Schmidt with re-orthogonalisation. A column that is
// (numerically exactly) dependent on the earlier ones becomes zero.
void lowrank_orthonormalize(float* y, std::int64_t n, std::int64_t k);

}  // namespace seam::compression::detail
