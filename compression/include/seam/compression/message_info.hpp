#pragma once
// What a codec message says about itself, without decoding it: the shape of
// the tensor it carries (for the fp32 size behind a compression ratio).
#include <cstddef>
#include <cstdint>
#include <vector>

namespace seam::compression {

// The shape recorded in an encoded message (validated like decode; throws
// DecodeError on a malformed message).
std::vector<std::int64_t> message_shape(const std::uint8_t* data, std::size_t size);

}  // namespace seam::compression
