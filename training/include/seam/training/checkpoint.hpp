#pragma once
// Checkpoints: both halves (either may be absent: the edge and the cloud each
// save their own), their optimizers, the step, the config and
// the model fingerprint. Writes are atomic: temp file, fsync, rename, fsync of
// the directory; a crash mid-write leaves the previous checkpoint intact.
#include <cstdint>
#include <stdexcept>
#include <string>

#include "seam/training/model.hpp"
#include "seam/training/optim.hpp"

namespace seam::training {

class CheckpointError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct CheckpointParts {
  const ModelConfig* config = nullptr;
  ModelHalf* edge = nullptr;
  ModelHalf* cloud = nullptr;
  Optimizer* edge_optim = nullptr;
  Optimizer* cloud_optim = nullptr;
  std::int64_t step = 0;
  std::string fingerprint;
};

// For tests: make save fail after the temp file is written, before the rename.
struct SaveFaults {
  bool fail_before_rename = false;
};

void save_checkpoint(const std::string& path, const CheckpointParts& parts, SaveFaults faults = {});

// Loads into the given halves and optimizers (those present in `parts`).
// Refuses, with CheckpointError naming both, a checkpoint whose fingerprint
// differs from parts.fingerprint, or one that lacks a requested half.
// Returns the saved step. (No RNG state: models and codecs draw from explicit
// generators seeded from the config, never from LibTorch's global one.)
std::int64_t load_checkpoint(const std::string& path, CheckpointParts& parts);

// The config and fingerprint stored in a checkpoint, without loading weights.
ModelConfig checkpoint_config(const std::string& path);

// Serialises a config as "key=value" lines (also used by the programs).
std::string config_to_string(const ModelConfig& c);
ModelConfig config_from_string(const std::string& s);

}  // namespace seam::training
