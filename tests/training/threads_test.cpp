#include <gtest/gtest.h>
#include <torch/torch.h>

#include <thread>

#include "seam/training/threads.hpp"

TEST(Threads, ZeroMeansAllCores) {
  int n = seam::training::configure_threads(0);
  EXPECT_EQ(n, static_cast<int>(std::thread::hardware_concurrency()));
  EXPECT_EQ(torch::get_num_threads(), n);
}

TEST(Threads, ExplicitCountAndNegativeRejected) {
  EXPECT_EQ(seam::training::configure_threads(1), 1);
  EXPECT_THROW(seam::training::configure_threads(-1), std::invalid_argument);
  seam::training::configure_threads(0);
}

TEST(Threads, MatmulMatchesFloat64Reference) {
  seam::training::configure_threads(0);
  torch::manual_seed(3);
  auto a = torch::randn({128, 96});
  auto b = torch::randn({96, 80});
  auto ref = torch::matmul(a.to(torch::kDouble), b.to(torch::kDouble));
  auto got = torch::matmul(a, b).to(torch::kDouble);
  EXPECT_LT((got - ref).abs().max().item<double>(), 1e-3);
}
