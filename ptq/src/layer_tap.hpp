#pragma once
// Internal: sees every Linear and Conv2d call of a forward pass, native or
// TorchScript, without changing the model. LibTorch's RecordFunction reports
// each operator with its inputs; a call is a layer when its weight argument
// shares storage with one of the listed weights. Observation is thread-local
// and lasts as long as a TapScope.
#include <torch/torch.h>

#include <cstddef>
#include <exception>
#include <string>
#include <vector>

namespace seam::ptq::detail {

struct LayerCall {
  std::string op;           // aten::linear | aten::matmul | aten::addmm | aten::conv2d
  at::Tensor input;         // as the layer sees it (not to be modified)
  at::Tensor weight;        // the listed weight
  at::Tensor bias;          // undefined when the op does not add one
  std::vector<std::int64_t> stride, padding, dilation;  // conv2d
  std::int64_t groups = 1;
  // The op's output for `x` instead of `input` (the same weights and bias).
  at::Tensor run(const at::Tensor& x) const;
  // Inputs as rows of the flattened weight: [n, in] (conv2d: im2col patches).
  at::Tensor columns(const at::Tensor& x) const;
};

class LayerTap {
 public:
  virtual ~LayerTap() = default;
  virtual void before(std::size_t /*index*/, const LayerCall& /*call*/) {}
  // `output` may be overwritten in place: the model continues with it.
  virtual void after(std::size_t /*index*/, const LayerCall& /*call*/, const at::Tensor& /*output*/) {}
};

class TapScope {
 public:
  TapScope(const std::vector<at::Tensor>& weights, LayerTap& tap);
  ~TapScope();
  TapScope(const TapScope&) = delete;
  TapScope& operator=(const TapScope&) = delete;
  // Calls that matched a weight but could not be handled (e.g. string padding).
  const std::vector<std::string>& unsupported() const;
  // LibTorch logs and swallows exceptions thrown in observers, so the tap's
  // are kept here: throws the first one (and forgets it).
  void rethrow();
  struct State;  // the thread-local observer's view of this scope

 private:
  State* previous_;
  std::unique_ptr<State> state_;
  std::uint64_t handle_;
};

}  // namespace seam::ptq::detail
