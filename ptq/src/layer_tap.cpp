#include "layer_tap.hpp"

#include <ATen/record_function.h>

#include <unordered_map>
#include <utility>

namespace seam::ptq::detail {

at::Tensor LayerCall::run(const at::Tensor& x) const {
  if (op == "aten::conv2d") return at::conv2d(x, weight, bias, stride, padding, dilation, groups);
  if (op == "aten::matmul") return x.matmul(weight.t());
  return at::linear(x, weight, bias);
}

at::Tensor LayerCall::columns(const at::Tensor& x) const {
  if (op != "aten::conv2d") return x.reshape({-1, weight.size(1)});
  // [B, C*kh*kw, L] -> [B*L, C*kh*kw], in the order of weight.view(out, -1).
  auto cols = at::im2col(x, {weight.size(2), weight.size(3)}, dilation, padding, stride);
  return cols.transpose(1, 2).reshape({-1, cols.size(1)});
}

struct TapScope::State {
  std::unordered_map<const void*, std::size_t> index;
  std::vector<at::Tensor> weights;
  LayerTap* tap = nullptr;
  bool inside = false;  // ops nested in a matched one (linear -> matmul) are not layers again
  std::vector<std::string> unsupported;
  std::exception_ptr error;
};

namespace {

thread_local TapScope::State* tl_state = nullptr;

struct CallContext : at::ObserverContext {
  std::size_t index = 0;
  LayerCall call;
};

std::vector<std::int64_t> int_list(const c10::IValue& v) { return v.toIntVector(); }

std::unique_ptr<at::ObserverContext> on_start(const at::RecordFunction& fn) {
  auto* st = tl_state;
  if (!st || st->inside) return nullptr;
  const std::string name = fn.name();
  int in_slot = 0, w_slot = 1, b_slot = -1;
  bool transposed = false;
  if (name == "aten::linear" || name == "aten::conv2d") {
    b_slot = 2;
  } else if (name == "aten::matmul") {
    transposed = true;
  } else if (name == "aten::addmm") {
    in_slot = 1, w_slot = 2, b_slot = 0, transposed = true;
  } else {
    return nullptr;
  }
  const auto inputs = fn.inputs();
  if (inputs.size() <= static_cast<std::size_t>(w_slot) || !inputs[w_slot].isTensor()) return nullptr;
  const auto& w = inputs[w_slot].toTensor();
  if (!w.defined()) return nullptr;
  auto it = st->index.find(w.data_ptr());
  if (it == st->index.end()) return nullptr;
  const auto& weight = st->weights[it->second];
  // The weight itself (linear, conv2d) or its transpose (matmul, addmm).
  if (transposed ? !(w.dim() == 2 && w.size(0) == weight.size(1) && w.size(1) == weight.size(0) &&
                     w.stride(0) == weight.stride(1))
                 : !w.is_same(weight) && w.sizes() != weight.sizes())
    return nullptr;
  auto ctx = std::make_unique<CallContext>();
  ctx->index = it->second;
  auto& c = ctx->call;
  c.op = name;
  c.input = inputs[in_slot].toTensor();
  c.weight = weight;
  if (b_slot >= 0 && inputs[b_slot].isTensor()) c.bias = inputs[b_slot].toTensor();
  if (name == "aten::conv2d") {
    if (!inputs[4].isIntList() || inputs[6].toInt() != 1 || weight.dim() != 4) {
      st->unsupported.push_back("conv2d with string padding or groups > 1");
      return nullptr;
    }
    c.stride = int_list(inputs[3]);
    c.padding = int_list(inputs[4]);
    c.dilation = int_list(inputs[5]);
  }
  try {
    at::RecordFunctionGuard off(false);  // the tap's own ops are not observed
    st->tap->before(ctx->index, c);
  } catch (...) {
    if (!st->error) st->error = std::current_exception();
    return nullptr;
  }
  st->inside = true;
  return ctx;
}

void on_end(const at::RecordFunction& fn, at::ObserverContext* raw) {
  auto* st = tl_state;
  if (!st || !raw) return;
  auto* ctx = static_cast<CallContext*>(raw);
  st->inside = false;
  at::RecordFunctionGuard off(false);
  const auto& outs = fn.outputs();
  if (outs.empty() || !outs[0].isTensor()) return;
  try {
    st->tap->after(ctx->index, ctx->call, outs[0].toTensor());
  } catch (...) {
    if (!st->error) st->error = std::current_exception();
  }
}

}  // namespace

TapScope::TapScope(const std::vector<at::Tensor>& weights, LayerTap& tap)
    : previous_(tl_state), state_(std::make_unique<State>()) {
  state_->weights = weights;
  state_->tap = &tap;
  for (std::size_t i = 0; i < weights.size(); ++i) state_->index[weights[i].data_ptr()] = i;
  tl_state = state_.get();
  handle_ = at::addThreadLocalCallback(at::RecordFunctionCallback(on_start, on_end)
                                           .needsInputs(true)
                                           .needsOutputs(true)
                                           .scopes({at::RecordScope::FUNCTION}));
}

TapScope::~TapScope() {
  at::removeCallback(handle_);
  tl_state = previous_;
}

const std::vector<std::string>& TapScope::unsupported() const { return state_->unsupported; }

void TapScope::rethrow() {
  if (auto e = std::exchange(state_->error, nullptr)) std::rethrow_exception(e);
}

}  // namespace seam::ptq::detail
