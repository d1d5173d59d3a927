// Golden byte vectors pin the encoded format (docs/codecs.md). A change here is
// a wire-format change: bump the stage version instead of editing the vectors.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "seam/compression/codec.hpp"

namespace sc = seam::compression;

namespace {

std::string hex(const std::vector<std::uint8_t>& b) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (auto c : b) {
    s += d[c >> 4];
    s += d[c & 15];
  }
  return s;
}

torch::Tensor golden_input() {
  return torch::tensor({-1.5f, -0.25f, 0.0f, 0.5f, 1.0f, 2.0f}, torch::kFloat).reshape({2, 3});
}

struct Golden {
  const char* spec;
  const char* bytes;
};

const Golden kGolden[] = {
#include "codec_golden_vectors.inc"
};

TEST(CodecGolden, EncodedBytesMatchPinnedVectors) {
  for (const auto& g : kGolden) {
    sc::CodecContext ctx(0);
    auto b = sc::make_codec(g.spec)->encode(golden_input(), ctx);
    EXPECT_EQ(hex(b), g.bytes) << g.spec;
  }
}

TEST(CodecGolden, PinnedVectorsDecode) {
  for (const auto& g : kGolden) {
    std::string h = g.bytes;
    std::vector<std::uint8_t> b(h.size() / 2);
    for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<std::uint8_t>(std::stoi(h.substr(2 * i, 2), nullptr, 16));
    sc::CodecContext ctx(0);
    auto y = sc::decode_message(b.data(), b.size(), ctx);
    EXPECT_EQ(y.sizes(), golden_input().sizes()) << g.spec;
    EXPECT_LT((y - golden_input()).abs().max().item<float>(), 0.6f) << g.spec;
  }
}

}  // namespace
