#pragma once
// Training loops over sessions: split fine-tuning in one process (both halves
// here, an InProcessLink between them), and the edge's loop against any link,
// which replays from the cloud's step after a restart.
#include <string>

#include "seam/session/links.hpp"
#include "seam/session/session.hpp"
#include "seam/training/job.hpp"

namespace seam::session {

// Builds the split model (loading `pretrained` first when given, so SFT
// factorises pretrained weights) and runs both halves in this process through
// an InProcessLink: the exact frames of the network protocol.
training::RunResult run_split_training(const training::ModelConfig& mc, const training::HalfSettings& hs,
                                       const training::Task& task, const training::RunOptions& ro,
                                       const std::string& pretrained = "", const training::Progress& progress = {});

// The edge's loop: connects, then trains until ro.steps steps are applied.
// Batch k is the k-th batch of a Sampler seeded with ro.data_seed, so a
// rolled-back session replays exactly the same data. No evaluation (the edge
// alone cannot evaluate); test_accuracy stays 0.
training::RunResult run_edge(EdgeSession& edge, SessionLink& link, const training::Task& task,
                             const training::RunOptions& ro, const std::string& client_id,
                             const training::Progress& progress = {});

}  // namespace seam::session
