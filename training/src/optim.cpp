#include "seam/training/optim.hpp"

#include <torch/torch.h>

#include <cmath>
#include <stdexcept>

#include "model_impl.hpp"

namespace seam::training {

struct Optimizer::Impl {
  OptimConfig c;
  std::vector<at::Tensor> params;
  std::unique_ptr<torch::optim::Optimizer> opt;
};

Optimizer::Optimizer(const ModelHalf& half, const OptimConfig& c) : impl_(std::make_unique<Impl>()) {
  if (c.kind != "adamw" && c.kind != "sgd") throw std::invalid_argument("optimizer must be adamw or sgd, got '" + c.kind + "'");
  if (c.schedule != "cosine" && c.schedule != "linear" && c.schedule != "constant")
    throw std::invalid_argument("schedule must be cosine, linear or constant, got '" + c.schedule + "'");
  if (!(c.lr > 0)) throw std::invalid_argument("learning rate must be > 0");
  impl_->c = c;
  std::vector<at::Tensor> decay, no_decay;
  for (auto& [name, p] : half.named_parameters()) {
    if (!p.requires_grad()) continue;
    (p.dim() >= 2 ? decay : no_decay).push_back(p);
    impl_->params.push_back(p);
  }
  std::vector<torch::optim::OptimizerParamGroup> groups;
  if (c.kind == "adamw") {
    auto o = torch::optim::AdamWOptions(c.lr).betas({c.beta1, c.beta2}).eps(c.eps);
    groups.emplace_back(decay, std::make_unique<torch::optim::AdamWOptions>(o.weight_decay(c.weight_decay)));
    groups.emplace_back(no_decay, std::make_unique<torch::optim::AdamWOptions>(o.weight_decay(0)));
    impl_->opt = std::make_unique<torch::optim::AdamW>(groups, o);
  } else {
    auto o = torch::optim::SGDOptions(c.lr).momentum(c.momentum);
    groups.emplace_back(decay, std::make_unique<torch::optim::SGDOptions>(o.weight_decay(c.weight_decay)));
    groups.emplace_back(no_decay, std::make_unique<torch::optim::SGDOptions>(o.weight_decay(0)));
    impl_->opt = std::make_unique<torch::optim::SGD>(groups, o);
  }
}

Optimizer::~Optimizer() = default;

void Optimizer::zero_grad() { impl_->opt->zero_grad(); }

double Optimizer::lr_at(std::int64_t step) const {
  const auto& c = impl_->c;
  if (c.warmup_steps > 0 && step < c.warmup_steps) return c.lr * double(step + 1) / double(c.warmup_steps);
  if (c.schedule == "constant" || c.total_steps <= c.warmup_steps) return c.lr;
  double p = std::min(1.0, double(step - c.warmup_steps) / double(c.total_steps - c.warmup_steps));
  if (c.schedule == "linear") return c.lr * (1.0 - p);
  return c.lr * 0.5 * (1.0 + std::cos(M_PI * p));
}

void Optimizer::step(std::int64_t step) {
  const double lr = lr_at(step);
  for (auto& g : impl_->opt->param_groups()) {
    if (impl_->c.kind == "adamw") static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
    else static_cast<torch::optim::SGDOptions&>(g.options()).lr(lr);
  }
  if (impl_->c.clip_norm > 0) torch::nn::utils::clip_grad_norm_(impl_->params, impl_->c.clip_norm);
  impl_->opt->step();
}

void Optimizer::save(torch::serialize::OutputArchive& ar) const { impl_->opt->save(ar); }
void Optimizer::load(torch::serialize::InputArchive& ar) { impl_->opt->load(ar); }

}  // namespace seam::training
