#pragma once
// The edge half alone: the blocks before the split (with the SFT bottleneck's
// edge side and C3 binding), built without ever building a cloud block.
// Weights are placeholders for a prepared job's edge_init.pt to fill.
#include "seam/training/model.hpp"

namespace seam::training {

ModelHalf build_edge_half(const ModelConfig& c);

}  // namespace seam::training
