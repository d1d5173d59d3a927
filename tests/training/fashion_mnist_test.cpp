#include <gtest/gtest.h>
#include <torch/torch.h>

#include "seam/training/fashion_mnist.hpp"

TEST(FashionMnist, LoadsTheDebianPackageFiles) {
  auto te = seam::training::load_fashion_mnist("test");
  ASSERT_EQ(te.images.sizes(), (std::vector<int64_t>{10000, 1, 28, 28}));
  ASSERT_EQ(te.labels.size(0), 10000);
  EXPECT_GE(te.images.min().item<float>(), 0.0f);
  EXPECT_LE(te.images.max().item<float>(), 1.0f);
  // The test split is balanced: 1000 images per class.
  auto counts = torch::bincount(te.labels, {}, 10);
  EXPECT_TRUE(torch::equal(counts, torch::full({10}, 1000, torch::kLong)));
  EXPECT_TRUE(torch::equal(te.ids, torch::arange(10000, torch::kLong)));
}

TEST(FashionMnist, ClearErrorsForBadSplitOrMissingFiles) {
  EXPECT_THROW(seam::training::load_fashion_mnist("validation"), std::runtime_error);
  try {
    seam::training::load_fashion_mnist("test", "/nonexistent");
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/t10k-images-idx3-ubyte.gz"), std::string::npos);
  }
}
