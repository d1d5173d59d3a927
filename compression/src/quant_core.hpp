#pragma once
// Uniform b-bit quantization shared by the `quant` and `delta` stages.
//
// Levels: asym uses 2^b codes over [lo, hi]; sym uses 2^b-1 codes over [-c, c]
// (2 codes for b=1) so zero is exact. Both decode as lo + code*step.
// Bytes of one quantized tensor: group parameters, then the codes packed densely
// (n*b bits rounded up to whole bytes).
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "stage.hpp"

namespace seam::compression::detail {

enum class ScaleMode { tensor, row, channel };
enum class RangeMode { asym, sym };
enum class Rounding { nearest, stochastic };
enum class ClipMode { none, aciq, dsaciq };
enum class Prior { laplace, gauss };

struct QuantConfig {
  int bits = 8;
  ScaleMode scale = ScaleMode::tensor;
  RangeMode mode = RangeMode::asym;
  Rounding round = Rounding::nearest;
  ClipMode clip = ClipMode::none;
  Prior prior = Prior::laplace;
  bool fp16_scales = false;
};

// The parameters quant and delta share, with their defaults.
std::vector<ParamSpec> quant_param_specs(const QuantConfig& defaults);
QuantConfig quant_config_from(const Params& p);

// x: fp32 contiguous, any shape (viewed as [N, C], C = last dim).
void quantize_append(const at::Tensor& x, const QuantConfig& c, std::uint64_t seed, std::vector<std::uint8_t>& out);

// Exact byte count quantize_append produces for this shape.
std::size_t quantized_size(const std::vector<std::int64_t>& shape, const QuantConfig& c);

// Throws DecodeError unless n == quantized_size(shape, c).
at::Tensor dequantize(const std::uint8_t* p, std::size_t n, const std::vector<std::int64_t>& shape,
                      const QuantConfig& c);

// MSE-optimal clip, in units of the Laplace scale b or the Gaussian sigma, for
// b-bit uniform quantization (Banner et al. 2019, ACIQ), solved numerically.
double aciq_alpha(int bits, Prior prior);

}  // namespace seam::compression::detail
