#pragma once
// PTQ of a model half (native or TorchScript): every Linear and Conv2d that a
// forward pass runs is quantized in call order, each calibrated on inputs from
// the model whose earlier layers are already quantized (weights and input
// activations). The weights of the half are overwritten with s * q; the codes,
// scales and activation quantizers come back in a PtqResult, which
// QuantizedExecution uses to run the half with quantized inputs, optionally
// through the wrap-around integer simulator.
//
//   PtqOptions o;  o.spec.method = Method::gpfq;  o.spec.axe = true;  o.spec.acc_bits = 16;
//   auto r = quantize_half(edge, calibration_batches, o, print_progress);
//   { QuantizedExecution run(edge, r, {.acc_bits = 16});  evaluate(edge, &cloud, ...); }
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "seam/ptq/quantize.hpp"
#include "seam/training/model.hpp"

namespace seam::ptq {

// Per-tensor input quantizer: codes = clamp(round(x / scale) + zero, mu, nu).
struct ActQuant {
  int bits = 8;
  bool is_signed = false;
  double scale = 1.0;
  std::int64_t zero = 0;  // 0 when signed
  CodeRange range() const { return act_code_range(bits, is_signed); }
  at::Tensor codes(const at::Tensor& x) const;  // int64
  at::Tensor fake(const at::Tensor& x) const;   // scale * (codes - zero), x's dtype
};

// From the observed input range. mode: "signed" (symmetric, max-abs),
// "unsigned" (asymmetric, min-max with a zero point) or "auto" (signed when
// the negative side reaches past a tenth of the positive one).
ActQuant calibrate_act(double lo, double hi, int bits, const std::string& mode);

struct QuantLayer {
  std::string name;  // the weight's parameter name in the half, e.g. "2.fc1.weight"
  std::string kind;  // linear | conv2d
  at::Tensor q;      // int8 codes, the weight's shape
  at::Tensor scale;  // [out] float64
  ActQuant act;
  LayerQuantSpec spec;      // as used (act_signed from the activation quantizer)
  double output_error = 0;  // ||Xq Wq^T - X W^T||^2 / ||X W^T||^2 on the calibration data
  double seconds = 0;       // calibration passes and quantization of this layer
};

struct PtqResult {
  std::vector<QuantLayer> layers;
};

struct PtqOptions {
  LayerQuantSpec spec;
  std::string act_mode = "auto";  // auto | signed | unsigned
};

struct CalibBatch {
  at::Tensor x;
  training::BatchContext ctx;
};

struct PtqProgress {
  std::size_t index = 0, count = 0;
  const QuantLayer* layer = nullptr;  // null: starting `name`
  std::string name;
};

// The weight names of the Linear and Conv2d layers one forward pass runs, in call order.
std::vector<std::string> find_layers(training::ModelHalf& half, const CalibBatch& sample);

// Quantizes every layer find_layers lists. Throws std::invalid_argument for a
// bad spec (naming the setting, and the layer) or empty calibration data.
PtqResult quantize_half(training::ModelHalf& half, const std::vector<CalibBatch>& calib, const PtqOptions& opt,
                        const std::function<void(const PtqProgress&)>& progress = {});

// Writes s * q into the half's weights (after loading a float checkpoint).
void apply_weights(training::ModelHalf& half, const PtqResult& r);

struct ExecutionOptions {
  bool simulate = false;      // run quantized layers through the integer simulator
  int acc_bits = 0;           // simulated register width; 0: each layer's own P (none: exact int64)
  std::int64_t tile = -1;     // -1: each layer's own T
};

struct ExecutionStats {
  std::int64_t dot_products = 0;  // simulated outputs
  std::int64_t overflowed = 0;    // of those, results the wrap-around changed
};

// While alive, forward passes on this thread feed the quantized layers of
// `half` quantized inputs (and, with simulate, compute them in integers).
class QuantizedExecution {
 public:
  QuantizedExecution(training::ModelHalf& half, const PtqResult& r, ExecutionOptions o = {});
  ~QuantizedExecution();
  QuantizedExecution(const QuantizedExecution&) = delete;
  QuantizedExecution& operator=(const QuantizedExecution&) = delete;
  // Throws what a quantized layer threw during the forward passes so far
  // (LibTorch's observer cannot pass it through the forward itself).
  ExecutionStats stats() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// The PTQ side file beside a quantized checkpoint (torch.save-compatible
// pickle of a dict). load_ptq throws std::runtime_error naming the file.
void save_ptq(const std::string& path, const PtqResult& r);
PtqResult load_ptq(const std::string& path);

}  // namespace seam::ptq
