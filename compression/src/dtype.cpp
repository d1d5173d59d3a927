#include "seam/compression/dtype.hpp"

#include "seam/compression/errors.hpp"

namespace seam::compression {

using transport::WireDType;

WireDType to_wire(c10::ScalarType t) {
  switch (t) {
    case c10::kByte: return WireDType::u8;
    case c10::kChar: return WireDType::i8;
    case c10::kInt: return WireDType::i32;
    case c10::kLong: return WireDType::i64;
    case c10::kHalf: return WireDType::f16;
    case c10::kBFloat16: return WireDType::bf16;
    case c10::kFloat: return WireDType::f32;
    case c10::kDouble: return WireDType::f64;
    default: break;
  }
  throw CodecError(std::string("tensor dtype ") + c10::toString(t) + " has no wire form");
}

c10::ScalarType from_wire(WireDType t) {
  switch (t) {
    case WireDType::u8: return c10::kByte;
    case WireDType::i8: return c10::kChar;
    case WireDType::i32: return c10::kInt;
    case WireDType::i64: return c10::kLong;
    case WireDType::f16: return c10::kHalf;
    case WireDType::bf16: return c10::kBFloat16;
    case WireDType::f32: return c10::kFloat;
    case WireDType::f64: return c10::kDouble;
  }
  throw DecodeError("invalid wire dtype");
}

}  // namespace seam::compression
