#include "seam/compression/sft.hpp"

#include <ATen/ATen.h>

#include "seam/compression/errors.hpp"

namespace seam::compression {

SftFactors sft_factorize(const at::Tensor& weight, const at::Tensor& bias, std::int64_t rank) {
  if (!weight.defined() || weight.dim() != 2) throw CodecError("sft: weight must be a matrix [out, in]");
  const std::int64_t out = weight.size(0), in = weight.size(1);
  if (rank < 1 || rank > std::min(out, in))
    throw CodecError("sft: rank " + std::to_string(rank) + " outside [1, " + std::to_string(std::min(out, in)) + "]");
  if (bias.defined() && (bias.dim() != 1 || bias.size(0) != out))
    throw CodecError("sft: bias must have " + std::to_string(out) + " elements");
  if (!at::isfinite(weight).all().item<bool>()) throw CodecError("sft: weight contains NaN or Inf");
  at::Tensor w = weight.detach().to(at::kDouble);
  auto [u, s, vh] = at::linalg_svd(w, /*full_matrices=*/false);
  SftFactors f;
  f.edge_weight = (s.narrow(0, 0, rank).unsqueeze(1) * vh.narrow(0, 0, rank)).to(weight.scalar_type()).contiguous();
  f.cloud_weight = u.narrow(1, 0, rank).to(weight.scalar_type()).contiguous();
  if (bias.defined()) f.cloud_bias = bias.detach().clone();
  return f;
}

at::Tensor sft_edge(const at::Tensor& x, const at::Tensor& edge_weight) { return at::linear(x, edge_weight); }

at::Tensor sft_cloud(const at::Tensor& t, const at::Tensor& cloud_weight, const at::Tensor& cloud_bias) {
  return at::linear(t, cloud_weight, cloud_bias.defined() ? c10::optional<at::Tensor>(cloud_bias) : c10::nullopt);
}

}  // namespace seam::compression
