#include "seam/transport/wire_types.hpp"

namespace seam::transport {

std::size_t wire_dtype_size(WireDType t) {
  switch (t) {
    case WireDType::u8:
    case WireDType::i8: return 1;
    case WireDType::f16:
    case WireDType::bf16: return 2;
    case WireDType::i32: return 4;
    case WireDType::f32: return 4;
    case WireDType::i64:
    case WireDType::f64: return 8;
  }
  return 0;
}

const char* wire_dtype_name(WireDType t) {
  switch (t) {
    case WireDType::u8: return "u8";
    case WireDType::i8: return "i8";
    case WireDType::i32: return "i32";
    case WireDType::i64: return "i64";
    case WireDType::f16: return "f16";
    case WireDType::bf16: return "bf16";
    case WireDType::f32: return "f32";
    case WireDType::f64: return "f64";
  }
  return "invalid";
}

bool wire_dtype_valid(std::uint8_t raw) { return raw < kWireDTypeCount; }

}  // namespace seam::transport
