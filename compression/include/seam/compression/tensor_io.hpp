#pragma once
#include <ATen/core/Tensor.h>

#include <string>

namespace seam::compression {

// Loads a tensor saved from Python with torch.save(t, path) (zip format), or a
// NumPy .npy file (little-endian f2/f4/f8, C order). Throws CodecError naming
// the file and what was wrong.
at::Tensor load_tensor_file(const std::string& path);

}  // namespace seam::compression
