#pragma once
// Shared by the session and service benchmarks: a seeded batch and a median.
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "seam/training/job.hpp"

namespace seam::bench {

// Batch k of 32 Fashion-MNIST-shaped images: a function of k alone.
inline training::TaskBatch batch_of(std::uint64_t k) {
  auto g = at::make_generator<at::CPUGeneratorImpl>(1000 + k);
  training::TaskBatch b;
  b.x = at::randn({32, 1, 28, 28}, g);
  b.labels = at::randint(0, 10, {32}, g, at::kLong);
  for (std::int64_t i = 0; i < 32; ++i) b.ids.push_back((static_cast<std::int64_t>(k) * 32 + i) % 1024);
  return b;
}

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace seam::bench
