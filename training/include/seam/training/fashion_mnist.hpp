#pragma once
// Fashion-MNIST from Debian's dataset-fashion-mnist package (idx .gz files).
#include <ATen/core/Tensor.h>

#include <string>

namespace seam::training {

inline constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";

struct ImageSet {
  at::Tensor images;  // [N, 1, 28, 28] float32 in [0, 1]
  at::Tensor labels;  // [N] int64 in [0, 10)
  at::Tensor ids;     // [N] int64 stable sample ids (the row index in the file)
};

// split: "train" (60k) or "test" (10k). Throws std::runtime_error naming the
// file on a missing file, a bad magic or a size mismatch.
ImageSet load_fashion_mnist(const std::string& split, const std::string& dir = kFashionMnistDir);

}  // namespace seam::training
