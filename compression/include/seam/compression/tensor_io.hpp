#pragma once
#include <ATen/core/Tensor.h>

#include <string>

namespace seam::compression {

// Loads a tensor saved from Python with torch.save(t, path) (zip format), or a
// NumPy .npy file (little-endian, C order). The format comes from the file's
// magic bytes, not its name. Floating tensors only, in both formats: float16,
// bfloat16 and float32 keep their dtype, float64 becomes float32; integer, bool
// and complex tensors are refused. Sizes are checked against the file before
// anything is allocated. Throws CodecError naming the file and what was wrong.
at::Tensor load_tensor_file(const std::string& path);

}  // namespace seam::compression
