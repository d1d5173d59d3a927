#pragma once
// Plain wire structs shared with compression/ (which may include this header and
// nothing else of transport). No LibTorch, no Asio.
#include <cstddef>
#include <cstdint>
#include <string>

namespace seam::transport {

// Element type of a tensor section on the wire. Values are part of the format.
enum class WireDType : std::uint8_t {
  u8 = 0,
  i8 = 1,
  i32 = 2,
  i64 = 3,
  f16 = 4,
  bf16 = 5,
  f32 = 6,
  f64 = 7,
};

inline constexpr std::uint8_t kWireDTypeCount = 8;

std::size_t wire_dtype_size(WireDType t);
const char* wire_dtype_name(WireDType t);
// False for a byte that names no dtype (input from the network is checked with this).
bool wire_dtype_valid(std::uint8_t raw);

}  // namespace seam::transport
