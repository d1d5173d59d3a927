#include "seam/ptq/model_ptq.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <limits>
#include <stdexcept>

#include "layer_tap.hpp"
#include "seam/ptq/int_sim.hpp"

namespace seam::ptq {

using detail::LayerCall;
using detail::LayerTap;
using detail::TapScope;

at::Tensor ActQuant::codes(const at::Tensor& x) const {
  const auto r = range();
  return (x.to(torch::kFloat64) / scale).round().add(static_cast<double>(zero)).clamp(r.mu, r.nu).to(torch::kInt64);
}

at::Tensor ActQuant::fake(const at::Tensor& x) const {
  return ((codes(x) - zero).to(torch::kFloat64) * scale).to(x.scalar_type());
}

ActQuant calibrate_act(double lo, double hi, int bits, const std::string& mode) {
  if (mode != "auto" && mode != "signed" && mode != "unsigned")
    throw std::invalid_argument("ptq: activation mode '" + mode + "' (auto, signed, unsigned)");
  if (bits < 2 || bits > 16) throw std::invalid_argument("ptq: activation bits N=" + std::to_string(bits) + " out of range 2..16");
  ActQuant a;
  a.bits = bits;
  a.is_signed = mode == "signed" || (mode == "auto" && lo < -0.1 * std::max(hi, 0.0));
  const auto r = a.range();
  if (a.is_signed) {
    const double m = std::max(std::abs(lo), std::abs(hi));
    a.scale = m > 0 ? m / static_cast<double>(r.nu) : 1.0;
  } else {  // the range always holds 0, so zero padding is exact
    lo = std::min(lo, 0.0), hi = std::max(hi, 0.0);
    a.scale = hi > lo ? (hi - lo) / static_cast<double>(r.nu) : 1.0;
    a.zero = std::clamp<std::int64_t>(std::llround(-lo / a.scale), 0, r.nu);
  }
  return a;
}

namespace {

struct Candidates {
  std::vector<std::string> names;
  std::vector<at::Tensor> weights;
};

Candidates candidates(const training::ModelHalf& half) {
  Candidates c;
  for (auto& [name, t] : half.named_parameters()) {
    const bool weight = name.size() >= 6 && name.compare(name.size() - 6, 6, "weight") == 0;
    if (weight && (t.dim() == 2 || t.dim() == 4)) {
      c.names.push_back(name);
      c.weights.push_back(t);
    }
  }
  return c;
}

std::size_t index_of(const Candidates& c, const std::string& name) {
  auto it = std::find(c.names.begin(), c.names.end(), name);
  if (it == c.names.end()) throw std::runtime_error("ptq: layer '" + name + "' is not a weight of this model half");
  return static_cast<std::size_t>(it - c.names.begin());
}

struct OrderTap : LayerTap {
  std::vector<std::size_t> order;
  std::vector<std::string> kinds;
  void before(std::size_t i, const LayerCall& c) override {
    if (std::find(order.begin(), order.end(), i) != order.end()) return;
    order.push_back(i);
    kinds.push_back(c.op == "aten::conv2d" ? "conv2d" : "linear");
  }
};

// Feeds quantized layers quantized inputs (optionally through the integer
// simulator), and captures one layer's raw input columns.
struct QuantTap : LayerTap {
  std::vector<const QuantLayer*> quant;
  ExecutionOptions opt;
  ExecutionStats stats;
  std::size_t capture = std::numeric_limits<std::size_t>::max();
  std::vector<at::Tensor> captured;

  void before(std::size_t i, const LayerCall& c) override {
    if (i == capture) captured.push_back(c.columns(c.input).to(torch::kFloat32).clone());
  }
  void after(std::size_t i, const LayerCall& c, const at::Tensor& output) override {
    const auto* layer = i < quant.size() ? quant[i] : nullptr;
    if (!layer) return;
    output.copy_(opt.simulate ? simulate(*layer, c, output) : c.run(layer->act.fake(c.input)));
  }
  at::Tensor simulate(const QuantLayer& l, const LayerCall& c, const at::Tensor& output) {
    const auto codes = l.act.codes(c.columns(l.act.fake(c.input)));
    const auto q = l.q.reshape({l.q.size(0), -1}).to(torch::kInt64);
    const int bits = opt.acc_bits > 0 ? opt.acc_bits : l.spec.acc_bits;
    std::int64_t tile = opt.tile >= 0 ? opt.tile : l.spec.tile;
    if (tile >= q.size(1)) tile = 0;
    SimResult acc = bits > 0 ? wrap_matmul(codes, q, bits, tile) : SimResult{int_matmul(codes, q), 0};
    stats.dot_products += acc.out.numel();
    stats.overflowed += acc.overflowed;
    auto y = (acc.out - l.act.zero * q.sum(1).unsqueeze(0)).to(torch::kFloat64) * (l.act.scale * l.scale).unsqueeze(0);
    if (c.bias.defined()) y = y + c.bias.to(torch::kFloat64);
    if (c.op == "aten::conv2d")  // [B*L, out] -> [B, out, H, W]
      y = y.reshape({output.size(0), -1, y.size(1)}).permute({0, 2, 1});
    return y.reshape(output.sizes()).to(output.scalar_type());
  }
};

std::vector<at::Tensor> capture_inputs(training::ModelHalf& half, const Candidates& c, QuantTap& tap,
                                       std::size_t index, const std::vector<CalibBatch>& calib) {
  tap.capture = index;
  tap.captured.clear();
  TapScope scope(c.weights, tap);
  for (const auto& b : calib) {
    half.forward(b.x, b.ctx);
    scope.rethrow();
  }
  if (tap.captured.empty()) throw std::runtime_error("ptq: layer '" + c.names[index] + "' did not run on the calibration data");
  return std::move(tap.captured);
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

std::vector<std::string> find_layers(training::ModelHalf& half, const CalibBatch& sample) {
  const auto c = candidates(half);
  OrderTap tap;
  {
    torch::NoGradGuard ng;
    TapScope scope(c.weights, tap);
    half.forward(sample.x, sample.ctx);
    scope.rethrow();
  }
  std::vector<std::string> names;
  for (auto i : tap.order) names.push_back(c.names[i]);
  return names;
}

PtqResult quantize_half(training::ModelHalf& half, const std::vector<CalibBatch>& calib, const PtqOptions& opt,
                        const std::function<void(const PtqProgress&)>& progress) {
  if (calib.empty()) throw std::invalid_argument("ptq: no calibration batches");
  torch::NoGradGuard ng;
  half.train(false);
  const auto c = candidates(half);
  OrderTap order;
  {
    TapScope scope(c.weights, order);
    half.forward(calib.front().x, calib.front().ctx);
    scope.rethrow();
  }
  std::vector<at::Tensor> originals;
  for (auto i : order.order) originals.push_back(c.weights[i].clone());
  PtqResult result;
  result.layers.reserve(order.order.size());  // QuantTap keeps pointers into it
  QuantTap quantized;
  quantized.quant.assign(c.weights.size(), nullptr);
  for (std::size_t k = 0; k < order.order.size(); ++k) {
    const auto idx = order.order[k];
    const auto& name = c.names[idx];
    const auto t0 = std::chrono::steady_clock::now();
    if (progress) progress({k, order.order.size(), nullptr, name});
    // Float model inputs (earlier layers back to float for this pass).
    for (std::size_t j = 0; j < k; ++j) c.weights[order.order[j]].copy_(originals[j]);
    QuantTap plain;
    auto xf = capture_inputs(half, c, plain, idx, calib);
    for (std::size_t j = 0; j < k; ++j) apply_weights(half, PtqResult{{result.layers[j]}});
    // Inputs of the partly quantized model; they set this layer's activation quantizer.
    auto raw = capture_inputs(half, c, quantized, idx, calib);
    double lo = std::numeric_limits<double>::infinity(), hi = -lo;
    for (const auto& x : raw) {
      lo = std::min(lo, x.min().item<double>());
      hi = std::max(hi, x.max().item<double>());
    }
    QuantLayer layer;
    layer.name = name;
    layer.kind = order.kinds[k];
    layer.act = calibrate_act(lo, hi, opt.spec.act_bits, opt.act_mode);
    layer.spec = opt.spec;
    layer.spec.act_signed = layer.act.is_signed;
    auto& weight = c.weights[idx];
    const auto w2 = originals[k].reshape({weight.size(0), -1});
    if (layer.spec.tile >= w2.size(1)) layer.spec.tile = 0;  // the whole row is one tile
    try {
      check_spec(layer.spec, w2.size(1));
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(std::string(e.what()) + " (layer " + name + ")");
    }
    LayerStats stats(w2.size(1));
    std::vector<at::Tensor> xq;
    for (std::size_t b = 0; b < raw.size(); ++b) {
      xq.push_back(layer.act.fake(raw[b]));
      stats.add(xq.back(), xf[b]);
    }
    auto qw = quantize_weight(w2, &stats, layer.spec);
    const auto wf = w2.to(torch::kFloat64), wq = qw.dequant();
    double num = 0, den = 0;
    for (std::size_t b = 0; b < raw.size(); ++b) {
      auto yf = xf[b].to(torch::kFloat64).mm(wf.t());
      num += (xq[b].to(torch::kFloat64).mm(wq.t()) - yf).pow(2).sum().item<double>();
      den += yf.pow(2).sum().item<double>();
    }
    layer.output_error = den > 0 ? num / den : 0.0;
    layer.q = qw.q.to(torch::kInt8).reshape(weight.sizes());
    layer.scale = qw.scale;
    layer.seconds = seconds_since(t0);
    result.layers.push_back(layer);
    apply_weights(half, PtqResult{{layer}});
    quantized.quant[idx] = &result.layers.back();
    if (progress) progress({k, order.order.size(), &result.layers.back(), name});
  }
  return result;
}

void apply_weights(training::ModelHalf& half, const PtqResult& r) {
  torch::NoGradGuard ng;
  const auto c = candidates(half);
  for (const auto& l : r.layers) {
    auto& w = c.weights[index_of(c, l.name)];
    if (w.sizes() != l.q.sizes())
      throw std::runtime_error("ptq: layer '" + l.name + "' has shape " + c10::str(w.sizes()) + ", the codes " +
                               c10::str(l.q.sizes()));
    auto s = l.scale.reshape({l.q.size(0)});
    for (std::int64_t d = 1; d < l.q.dim(); ++d) s = s.unsqueeze(-1);
    w.copy_(l.q.to(torch::kFloat64) * s);
  }
}

struct QuantizedExecution::State {
  PtqResult result;
  Candidates cands;
  QuantTap tap;
  std::unique_ptr<TapScope> scope;
};

QuantizedExecution::QuantizedExecution(training::ModelHalf& half, const PtqResult& r, ExecutionOptions o)
    : state_(std::make_unique<State>()) {
  state_->result = r;
  state_->cands = candidates(half);
  state_->tap.opt = o;
  state_->tap.quant.assign(state_->cands.weights.size(), nullptr);
  for (const auto& l : state_->result.layers) state_->tap.quant[index_of(state_->cands, l.name)] = &l;
  state_->scope = std::make_unique<TapScope>(state_->cands.weights, state_->tap);
}

QuantizedExecution::~QuantizedExecution() = default;

ExecutionStats QuantizedExecution::stats() const {
  state_->scope->rethrow();
  return state_->tap.stats;
}

void save_ptq(const std::string& path, const PtqResult& r) {
  c10::impl::GenericList layers(c10::AnyType::get());
  for (const auto& l : r.layers) {
    c10::impl::GenericDict d(c10::StringType::get(), c10::AnyType::get());
    d.insert("name", l.name);
    d.insert("kind", l.kind);
    d.insert("q", l.q);
    d.insert("scale", l.scale);
    d.insert("act_bits", static_cast<std::int64_t>(l.act.bits));
    d.insert("act_signed", l.act.is_signed);
    d.insert("act_scale", l.act.scale);
    d.insert("act_zero", l.act.zero);
    d.insert("method", method_name(l.spec.method));
    d.insert("axe", l.spec.axe);
    d.insert("weight_bits", static_cast<std::int64_t>(l.spec.weight_bits));
    d.insert("acc_bits", static_cast<std::int64_t>(l.spec.acc_bits));
    d.insert("tile", l.spec.tile);
    d.insert("act_order", l.spec.act_order);
    d.insert("output_error", l.output_error);
    d.insert("seconds", l.seconds);
    layers.push_back(c10::IValue(d));
  }
  c10::impl::GenericDict top(c10::StringType::get(), c10::AnyType::get());
  top.insert("format", std::string("seam-ptq-1"));
  top.insert("layers", layers);
  const auto bytes = torch::pickle_save(c10::IValue(top));
  const auto tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!f) throw std::runtime_error("ptq: cannot write '" + tmp + "'");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw std::runtime_error("ptq: cannot rename to '" + path + "'");
}

PtqResult load_ptq(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open PTQ file '" + path + "'");
  std::vector<char> bytes((std::istreambuf_iterator<char>(f)), {});
  PtqResult r;
  try {
    auto top = torch::pickle_load(bytes).toGenericDict();
    if (top.at("format").toStringRef() != "seam-ptq-1") throw std::runtime_error("unknown format");
    for (const auto& v : top.at("layers").toList()) {
      auto d = v.get().toGenericDict();
      QuantLayer l;
      l.name = d.at("name").toStringRef();
      l.kind = d.at("kind").toStringRef();
      l.q = d.at("q").toTensor();
      l.scale = d.at("scale").toTensor();
      l.act.bits = static_cast<int>(d.at("act_bits").toInt());
      l.act.is_signed = d.at("act_signed").toBool();
      l.act.scale = d.at("act_scale").toDouble();
      l.act.zero = d.at("act_zero").toInt();
      l.spec.method = parse_method(d.at("method").toStringRef());
      l.spec.axe = d.at("axe").toBool();
      l.spec.weight_bits = static_cast<int>(d.at("weight_bits").toInt());
      l.spec.act_bits = l.act.bits;
      l.spec.act_signed = l.act.is_signed;
      l.spec.acc_bits = static_cast<int>(d.at("acc_bits").toInt());
      l.spec.tile = d.at("tile").toInt();
      l.spec.act_order = d.at("act_order").toBool();
      l.output_error = d.at("output_error").toDouble();
      l.seconds = d.at("seconds").toDouble();
      if (l.q.scalar_type() != torch::kInt8 || l.scale.dim() != 1 || l.scale.size(0) != l.q.size(0))
        throw std::runtime_error("layer '" + l.name + "': codes must be int8 with one scale per output channel");
      r.layers.push_back(std::move(l));
    }
  } catch (const c10::Error& e) {
    throw std::runtime_error("cannot read PTQ file '" + path + "': " + e.what_without_backtrace());
  } catch (const std::runtime_error& e) {
    throw std::runtime_error("cannot read PTQ file '" + path + "': " + e.what());
  }
  return r;
}

}  // namespace seam::ptq
