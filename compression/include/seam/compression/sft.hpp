#pragma once
// SFT low-rank bottleneck (Shi et al. 2022, arXiv 2211.16703). A split layer's
// first FFN weight W (out x in) is replaced by its rank-r truncated SVD
// W ~ U_r S_r Vh_r: the edge computes t = S_r Vh_r a (r features) and only t
// crosses; the cloud applies U_r and the bias. Link elimination (dropping the
// FFN residual) is the model's job: it is possible because nothing 'in'-wide
// needs to travel.
#include <ATen/core/Tensor.h>

#include <cstdint>

namespace seam::compression {

struct SftFactors {
  at::Tensor edge_weight;   // [r, in]  = S_r Vh_r
  at::Tensor cloud_weight;  // [out, r] = U_r
  at::Tensor cloud_bias;    // [out] (undefined when the layer had none)
};

// Throws CodecError for a non-matrix weight, a bias of the wrong size, or a
// rank outside [1, min(out, in)]. The SVD runs in float64.
SftFactors sft_factorize(const at::Tensor& weight, const at::Tensor& bias, std::int64_t rank);

// Differentiable halves: edge [.., in] -> [.., r]; cloud [.., r] -> [.., out].
at::Tensor sft_edge(const at::Tensor& x, const at::Tensor& edge_weight);
at::Tensor sft_cloud(const at::Tensor& t, const at::Tensor& cloud_weight, const at::Tensor& cloud_bias);

}  // namespace seam::compression
