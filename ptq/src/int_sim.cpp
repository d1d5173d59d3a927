#include "seam/ptq/int_sim.hpp"

#include <torch/torch.h>

#include <stdexcept>
#include <string>

#include "seam/ptq/quantize.hpp"

namespace seam::ptq {

at::Tensor wrap_to_bits(const at::Tensor& v, int bits) {
  if (bits < 2 || bits > 63) throw std::invalid_argument("wrap_to_bits: bits must be in 2..63");
  const std::int64_t half = std::int64_t{1} << (bits - 1), mod = half * 2;
  // ((v + half) mod 2^bits) - half, with a floor modulo for negative values.
  auto s = v.to(torch::kInt64) + half;
  return s - torch::floor_divide(s, mod) * mod - half;
}

at::Tensor int_matmul(const at::Tensor& codes, const at::Tensor& q) {
  if (codes.dim() != 2 || q.dim() != 2 || codes.size(1) != q.size(1))
    throw std::invalid_argument("int_matmul: codes [n, K] and weights [out, K] needed");
  const auto c = codes.to(torch::kInt64), w = q.to(torch::kInt64);
  const double bound = static_cast<double>(c.abs().max().item<std::int64_t>()) *
                       static_cast<double>(w.abs().max().item<std::int64_t>()) * static_cast<double>(c.size(1));
  if (bound < 9.0e15)  // every partial sum below 2^53: float64 is exact
    return c.to(torch::kFloat64).mm(w.to(torch::kFloat64).t()).round().to(torch::kInt64);
  return (c.unsqueeze(1) * w.unsqueeze(0)).sum(-1);
}

namespace {

std::int64_t tile_of(std::int64_t k, std::int64_t tile) {
  if (tile < 0 || (tile > 0 && k % tile != 0))
    throw std::invalid_argument("integer simulation: tile size T=" + std::to_string(tile) +
                                " does not divide the layer's " + std::to_string(k) + " inputs");
  return tile > 0 ? tile : k;
}

}  // namespace

SimResult simulate_accumulation(const at::Tensor& codes, const at::Tensor& q, int acc_bits, std::int64_t tile) {
  const auto k = codes.size(1), t = tile_of(k, tile);
  const int outer = outer_acc_bits(acc_bits, k, t);
  const std::int64_t lo = -(std::int64_t{1} << (acc_bits - 1)), hi = -lo - 1;
  const std::int64_t olo = -(std::int64_t{1} << (outer - 1)), ohi = -olo - 1;
  const auto c = codes.to(torch::kInt64), w = q.to(torch::kInt64);
  auto total = torch::zeros({c.size(0), w.size(0)}, torch::kInt64);
  auto reg = torch::zeros_like(total);
  auto hit = torch::zeros_like(total, torch::kBool);
  for (std::int64_t i = 0; i < k; ++i) {
    reg = reg + c.select(1, i).unsqueeze(1) * w.select(1, i).unsqueeze(0);
    hit |= (reg < lo) | (reg > hi);
    reg = wrap_to_bits(reg, acc_bits);
    if ((i + 1) % t == 0) {  // the inner register empties into the outer one
      if (t == k) {
        total = reg;
      } else {
        total = total + reg;
        hit |= (total < olo) | (total > ohi);
        total = wrap_to_bits(total, outer);
      }
      reg = torch::zeros_like(reg);
    }
  }
  return {total, hit.sum().item<std::int64_t>()};
}

SimResult wrap_matmul(const at::Tensor& codes, const at::Tensor& q, int acc_bits, std::int64_t tile) {
  const auto k = codes.size(1), t = tile_of(k, tile), n = codes.size(0), out = q.size(0);
  const auto exact = int_matmul(codes, q);
  at::Tensor result;
  if (t == k) {
    result = wrap_to_bits(exact, acc_bits);
  } else {
    const auto tiles = k / t;
    // [tiles, n, T] x [tiles, T, out]: one exact product per tile.
    auto ct = codes.to(torch::kFloat64).reshape({n, tiles, t}).permute({1, 0, 2});
    auto qt = q.to(torch::kFloat64).reshape({out, tiles, t}).permute({1, 2, 0});
    auto partial = ct.bmm(qt).round().to(torch::kInt64);
    result = wrap_to_bits(wrap_to_bits(partial, acc_bits).sum(0), outer_acc_bits(acc_bits, k, t));
  }
  return {result, result.ne(exact).sum().item<std::int64_t>()};
}

}  // namespace seam::ptq
