#pragma once
// Internal: the block modules behind ModelHalf.
#include <torch/script.h>
#include <torch/torch.h>

#include "seam/training/model.hpp"

namespace seam::training {

struct Block : torch::nn::Module {
  virtual at::Tensor run(const at::Tensor& x, const BatchContext& ctx) = 0;
};

// A TorchScript submodule as a block; its parameters live in the script module.
struct ScriptBlock : Block {
  explicit ScriptBlock(torch::jit::Module m) : module(std::move(m)) {}
  at::Tensor run(const at::Tensor& x, const BatchContext&) override { return module.forward({x}).toTensor(); }
  torch::jit::Module module;
};

struct ModelHalf::Impl {
  std::shared_ptr<torch::nn::Module> root = std::make_shared<torch::nn::Module>("half");
  std::vector<std::shared_ptr<Block>> blocks;
  std::vector<std::string> names;
  std::vector<std::pair<std::string, ScriptBlock*>> scripts;  // name -> block with script parameters
  // `name` may be dotted ("blocks.0", as Python names it); the module registry
  // cannot take dots, so it gets a sanitised key while parameters keep `name`.
  void add_script(const std::string& name, std::shared_ptr<ScriptBlock> b) {
    scripts.emplace_back(name, b.get());
    std::string key = name;
    for (auto& ch : key)
      if (ch == '.') ch = '_';
    root->register_module(key, b);
    blocks.push_back(std::move(b));
    names.push_back(name);
  }
  void add(const std::string& name, std::shared_ptr<Block> b) {
    root->register_module(name, b);
    blocks.push_back(std::move(b));
    names.push_back(name);
  }
};

}  // namespace seam::training
