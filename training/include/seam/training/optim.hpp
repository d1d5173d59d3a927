#pragma once
// Optimizers for one half: AdamW or SGD with momentum, weight decay only on
// matrices (biases, norms and other vectors excluded), linear warm-up then
// cosine or linear decay, optional gradient-norm clipping (per half: a split
// run has no global norm without another round trip).
#include <cstdint>
#include <memory>
#include <string>

#include "seam/training/model.hpp"

namespace torch::serialize {
class OutputArchive;
class InputArchive;
}  // namespace torch::serialize

namespace seam::training {

struct OptimConfig {
  std::string kind = "adamw";  // adamw | sgd
  double lr = 1e-3;
  double weight_decay = 0.01;
  double momentum = 0.9;       // sgd
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;  // adamw
  std::int64_t warmup_steps = 0;
  std::int64_t total_steps = 0;  // 0 = constant after warm-up
  std::string schedule = "cosine";  // cosine | linear | constant
  double clip_norm = 0;             // 0 = off
};

class Optimizer {
 public:
  Optimizer(const ModelHalf& half, const OptimConfig& c);  // throws std::invalid_argument on bad config
  ~Optimizer();
  void zero_grad();
  // Sets the learning rate for `step` (0-based), clips, and updates.
  void step(std::int64_t step);
  double lr_at(std::int64_t step) const;
  void save(torch::serialize::OutputArchive& ar) const;
  void load(torch::serialize::InputArchive& ar);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace seam::training
