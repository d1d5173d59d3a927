#pragma once
// A dataset the app brings as tensors: a file written by Python with
//   torch.save({"x": X, "y": Y}, path)       # optional "x_test", "y_test"
// X: float32 [N, ...] (images) or int64 [N, L] (token ids); Y: int64 [N].
// Sample ids are row indices. Refused with the file and the key named.
#include <memory>
#include <string>

#include "seam/training/job.hpp"

namespace seam::edge {

std::unique_ptr<training::Task> make_tensor_task(const std::string& path);

}  // namespace seam::edge
