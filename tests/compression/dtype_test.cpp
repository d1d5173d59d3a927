#include <gtest/gtest.h>
#include <torch/torch.h>

#include "seam/compression/dtype.hpp"
#include "seam/compression/errors.hpp"

namespace sc = seam::compression;
using seam::transport::WireDType;

TEST(WireDType, MapsEveryWireTypeBothWays) {
  for (std::uint8_t raw = 0; raw < seam::transport::kWireDTypeCount; ++raw) {
    auto w = static_cast<WireDType>(raw);
    auto t = sc::from_wire(w);
    EXPECT_EQ(sc::to_wire(t), w);
    // The element size on the wire matches LibTorch's.
    EXPECT_EQ(seam::transport::wire_dtype_size(w), c10::elementSize(t));
  }
}

TEST(WireDType, RejectsTypesWithoutWireForm) {
  EXPECT_THROW(sc::to_wire(c10::kComplexFloat), sc::CodecError);
  EXPECT_THROW(sc::to_wire(c10::kBool), sc::CodecError);
}

TEST(TorchSmoke, Fp16RoundTripIsWithinHalfPrecision) {
  torch::manual_seed(1);
  auto x = torch::randn({64, 64});
  auto y = x.to(torch::kHalf).to(torch::kFloat);
  // fp16 has a 10-bit mantissa: relative error <= 2^-11.
  EXPECT_TRUE(torch::all((x - y).abs() <= x.abs() * std::ldexp(1.0, -11) + 1e-7).item<bool>());
}
