#pragma once
// Internal: the block modules behind ModelHalf.
#include <torch/torch.h>

#include "seam/training/model.hpp"

namespace seam::training {

struct Block : torch::nn::Module {
  virtual at::Tensor run(const at::Tensor& x, const BatchContext& ctx) = 0;
};

struct ModelHalf::Impl {
  std::shared_ptr<torch::nn::Module> root = std::make_shared<torch::nn::Module>("half");
  std::vector<std::shared_ptr<Block>> blocks;
  std::vector<std::string> names;
  void add(const std::string& name, std::shared_ptr<Block> b) {
    root->register_module(name, b);
    blocks.push_back(std::move(b));
    names.push_back(name);
  }
};

}  // namespace seam::training
