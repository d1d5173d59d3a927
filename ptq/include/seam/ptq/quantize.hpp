#pragma once
// Layer-wise post-training weight quantization with an optional accumulator
// guarantee (AXE, Colbert et al. 2024, arXiv 2409.17092).
//
// One layer's weight W is [out, in] (a Conv2d's is flattened to [out, C*kh*kw]).
// Each output channel gets a max-abs scale s and M-bit integer weights q, so
// W ~ s * q. Inputs are N-bit codes in [mu, nu]. With AXE, for a P-bit
// accumulator and every output row and tile of T inputs,
//     nu * sum(q+) + mu * sum(q-) <=   2^(P-1) - 1
//     mu * sum(q+) + nu * sum(q-) >= -(2^(P-1) - 1)
// hold by construction, so a P-bit accumulator cannot overflow for any input.
//
//   auto stats = LayerStats(in);            // calibration, batch by batch
//   stats.add(x_quantized, x_float);        // [n, in] each
//   LayerQuantSpec spec;                    // method, bits, accumulator
//   spec.method = Method::optq; spec.axe = true; spec.acc_bits = 16;
//   QuantizedWeight qw = quantize_weight(W, stats, spec);
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace seam::ptq {

enum class Method {
  rtn,      // round to nearest, no error feedback
  ep_init,  // project each tile onto the l1 budget, then round to nearest
  optq,     // OPTQ/GPTQ (Frantar et al. 2022): Hessian error feedback
  gpfq,     // GPFQ (Lybrand & Saab 2021): greedy path following
};

std::string method_name(Method m);
// "rtn" | "ep-init" | "optq" | "gpfq"; throws std::invalid_argument otherwise.
Method parse_method(const std::string& s);

struct LayerQuantSpec {
  Method method = Method::optq;
  bool axe = false;          // accumulator-aware soft + hard constraints (needs acc_bits)
  int weight_bits = 8;       // M, 2..8
  int act_bits = 8;          // N, 2..16
  bool act_signed = false;   // input codes signed [-2^(N-1), 2^(N-1)-1] or unsigned [0, 2^N-1]
  int acc_bits = 0;          // P; 0 = no accumulator constraint
  std::int64_t tile = 0;     // T inputs per inner accumulation; 0 = one stage over the row
  bool act_order = false;    // OPTQ: columns by decreasing Hessian diagonal
  double damp = 0.01;        // OPTQ: fraction of the mean Hessian diagonal added to it
  std::int64_t block = 128;  // OPTQ: columns per lazy-update block
  bool pow2_scale = false;   // scales rounded up to powers of two (shift-only rescaling)
  // With acc_bits: each row's scale grows until its largest per-sign tile sum
  // fits the budget, so the constraint coarsens the grid instead of shrinking
  // the weights (not in the AXE paper; a Seam option, off by default).
  bool budget_scale = false;
};

// Throws std::invalid_argument naming the setting: M or N out of range, an
// accumulator too narrow for even one nonzero weight, a tile that does not
// divide `in_features`, AXE or EP-init without accumulator bits.
void check_spec(const LayerQuantSpec& s, std::int64_t in_features);

struct CodeRange {
  std::int64_t mu = 0, nu = 0;  // smallest and largest input code
};
CodeRange act_code_range(int act_bits, bool is_signed);

// (2^P - 2) / (2^N - 1): the l1 norm of a row (or tile) of integer weights
// that both worst-case inequalities imply.
double l1_limit(int acc_bits, int act_bits);

// Largest sum of positive weights (and, separately, of negative magnitudes)
// that keeps both inequalities: floor(A / (nu - mu)) for A = 2^(P-1) - 1, or
// floor(A / nu) for unsigned inputs.
std::int64_t sign_budget(int acc_bits, CodeRange r);

// Outer accumulator width for K inputs in tiles of T: P + ceil(log2(K / T)).
int outer_acc_bits(int acc_bits, std::int64_t in_features, std::int64_t tile);

// Duchi et al. (2008): the threshold lambda >= 0 with sum(max(|v| - lambda, 0)) = z,
// or 0 when the l1 norm of v is already within z.
double l1_threshold(const std::vector<double>& v, double z);

// AXE's soft threshold for one tile of scaled weights: l1_threshold of the
// zero-centred tile.
double axe_tile_threshold(const std::vector<double>& scaled_tile, double z);

// Sums over calibration batches. xq: inputs from the partly quantized model
// (activations quantized), xf: the float model's inputs (GPFQ only), both [n, in].
class LayerStats {
 public:
  explicit LayerStats(std::int64_t in_features);
  void add(const at::Tensor& xq, const at::Tensor& xf = {});
  std::int64_t samples() const { return n_; }
  at::Tensor xqxq() const { return qq_; }  // sum of xq^T xq, [in, in] float64
  at::Tensor xqxf() const { return qf_; }  // sum of xq^T xf (undefined without xf)

 private:
  at::Tensor qq_, qf_;
  std::int64_t n_ = 0, in_;
};

struct QuantizedWeight {
  at::Tensor q;      // [out, in] int64 codes in [-2^(M-1), 2^(M-1) - 1]
  at::Tensor scale;  // [out] float64
  at::Tensor dequant() const;  // [out, in] float64, s * q
};

// Quantizes W ([out, in], any float dtype) with the spec's method. Stats are
// needed by optq (xqxq) and gpfq (xqxq and xqxf); rtn and ep_init ignore them.
QuantizedWeight quantize_weight(const at::Tensor& w, const LayerStats* stats, const LayerQuantSpec& spec);

// Worst-case accumulator sums of each row (and tile): [out, tiles] int64 of
// max and min of sum_k q_k x_k over inputs in [mu, nu].
struct WorstCase {
  at::Tensor upper, lower;
};
WorstCase worst_case_sums(const at::Tensor& q, CodeRange r, std::int64_t tile);

}  // namespace seam::ptq
