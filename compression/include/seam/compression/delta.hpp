#pragma once
// Introspection of AC-SGD delta buffers held in a CodecContext.
#include <ATen/core/Tensor.h>

#include <cstdint>

#include "seam/compression/codec.hpp"

namespace seam::compression {

// A copy of m(sample_id) (fp16, flat) kept by the delta stage at position
// `stage_index` of the chain; an undefined tensor when that sample is unseen.
at::Tensor delta_buffer(CodecContext& ctx, int stage_index, std::int64_t sample_id);

// Number of samples with a buffer.
std::size_t delta_buffer_count(CodecContext& ctx, int stage_index);

}  // namespace seam::compression
