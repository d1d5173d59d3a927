#include "seam/training/threads.hpp"

#include <torch/torch.h>

#include <stdexcept>
#include <string>
#include <thread>

namespace seam::training {

int configure_threads(int requested) {
  if (requested < 0) {
    throw std::invalid_argument("threads must be >= 0 (0 = all cores), got " + std::to_string(requested));
  }
  int n = requested;
  if (n == 0) {
    n = static_cast<int>(std::thread::hardware_concurrency());
    if (n <= 0) n = 1;
  }
  torch::set_num_threads(n);
  return torch::get_num_threads();
}

}  // namespace seam::training
