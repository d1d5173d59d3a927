#pragma once
// The planner's profiler: each block of a model measured on this machine at
// one micro-batch size (forward time in inference mode on the calling
// thread's LibTorch settings, parameter and activation bytes, the size of its
// output under a codec).
#include <cstdint>
#include <string>

#include "seam/pipeline/planner.hpp"
#include "seam/training/model.hpp"

namespace seam::pipeline {

struct ProfileOptions {
  std::int64_t micro_batch = 8;
  std::string codec = "none";  // the hop codec the output sizes are for (stateless)
  int warmup = 1;
  int repeats = 5;             // compute_s is the median of these
  std::int64_t seq_len = 0;    // text models: tokens per sample (0: the config's max_len)
  std::uint64_t seed = 1;      // the random inputs (an explicit generator)
};

// `checkpoint`: weights and config (empty: `c` with fresh weights). Inputs are
// random images or byte tokens of the model's shape: timing does not depend
// on their values.
ModelProfile profile_model(const training::ModelConfig& c, const std::string& checkpoint, const ProfileOptions& o);

}  // namespace seam::pipeline
