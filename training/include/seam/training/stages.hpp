#pragma once
// Pipeline stages (issue 13): a contiguous range of a model's blocks.
#include <cstdint>
#include <string>

#include "seam/training/model.hpp"

namespace seam::training {

// Blocks [begin, end) of the unsplit model as one half: the weights of
// build_full_model (same seed), or a pre-training checkpoint's when
// `pretrained` is given; for TorchScript, the file's children [begin, end).
// Blocks keep their names in the whole model ("3.attn.qkv.weight"), so a
// full model's state_dict loads into any stage. Throws std::invalid_argument
// naming the range and the model's block count when the range is empty or out of it.
ModelHalf build_model_range(const ModelConfig& c, std::int64_t begin, std::int64_t end,
                            const std::string& pretrained = "");

}  // namespace seam::training
