#pragma once
// Integer reference execution: a bit-exact simulation of an integer matmul
// whose accumulator is a P-bit two's-complement register that wraps around on
// overflow, single-stage or multi-stage (tiles of T inputs into a P-bit inner
// register, tile results into an outer one of P + ceil(log2(K/T)) bits).
// It is a simulation for counting overflow, not a claim about any hardware.
#include <ATen/core/Tensor.h>

#include <cstdint>

namespace seam::ptq {

// Two's-complement wrap of int64 values to `bits` (2..63).
at::Tensor wrap_to_bits(const at::Tensor& v, int bits);

// Exact integer product: codes [n, K] by weights q [out, K] -> [n, out] int64.
at::Tensor int_matmul(const at::Tensor& codes, const at::Tensor& q);

struct SimResult {
  at::Tensor out;              // [n, out] int64: what the register holds at the end
  std::int64_t overflowed = 0;  // dot products whose register left its range at least once (sequential)
                                // or whose result differs from the exact sum (fast)
};

// Adds one product at a time, wrapping after each add and noting every
// overflow. Slow (a loop over K); for tests and small layers.
SimResult simulate_accumulation(const at::Tensor& codes, const at::Tensor& q, int acc_bits, std::int64_t tile = 0);

// The same final values in one matmul per tile: wrap-around addition is
// addition modulo 2^P, so a register's final value is its exact sum wrapped
// once. `overflowed` counts results that differ from the exact int64 sum.
SimResult wrap_matmul(const at::Tensor& codes, const at::Tensor& q, int acc_bits, std::int64_t tile = 0);

}  // namespace seam::ptq
