// One parameterised suite over every codec and several chains, each with a
// declared error budget.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <random>

#include "seam/compression/codec.hpp"
#include "seam/compression/errors.hpp"

namespace sc = seam::compression;

namespace {

struct CodecCase {
  std::string spec;
  double nmse_budget;  // 0 = lossless (bit-exact)
  double min_ratio;    // fp32 bytes / encoded bytes must reach this
};

std::ostream& operator<<(std::ostream& os, const CodecCase& c) { return os << c.spec; }

// Structured activation-like data: rank-4 signal plus small noise, [B, L, H].
torch::Tensor sample_input(torch::ScalarType dt = torch::kFloat) {
  auto g = torch::make_generator<at::CPUGeneratorImpl>(7);
  auto u = torch::randn({4, 16, 4}, g), v = torch::randn({4, 4, 48}, g);
  auto x = torch::matmul(u, v) + 0.01 * torch::randn({4, 16, 48}, g);
  return x.to(dt);
}

double nmse(const torch::Tensor& x, const torch::Tensor& y) {
  auto xd = x.to(torch::kDouble), yd = y.to(torch::kDouble);
  return ((xd - yd).pow(2).sum() / xd.pow(2).sum()).item<double>();
}

std::vector<std::int64_t> ids(int n, int base = 0) {
  std::vector<std::int64_t> v(n);
  for (int i = 0; i < n; ++i) v[i] = base + i;
  return v;
}

class CodecSuite : public ::testing::TestWithParam<CodecCase> {};

TEST_P(CodecSuite, ShapeAndDtypeSurviveWithinBudget) {
  const auto& c = GetParam();
  auto codec = sc::make_codec(c.spec);
  for (auto dt : {torch::kFloat, torch::kHalf, torch::kBFloat16}) {
    auto x = sample_input(dt);
    sc::CodecContext enc(11), dec(11);
    enc.sample_ids = dec.sample_ids = ids(4);
    auto bytes = codec->encode(x, enc);
    auto y = codec->decode(bytes.data(), bytes.size(), dec);
    EXPECT_EQ(y.sizes(), x.sizes()) << c.spec;
    EXPECT_EQ(y.scalar_type(), x.scalar_type()) << c.spec;
    if (c.nmse_budget == 0) {
      EXPECT_TRUE(torch::equal(y, x)) << c.spec << " must be lossless";
    } else {
      // Budgets are declared for fp32; narrow inputs only add their own rounding.
      EXPECT_LT(nmse(x, y), c.nmse_budget + 1e-4) << c.spec;
    }
    if (dt == torch::kFloat) {
      std::printf("[codec] %-50s nmse=%.3g ratio=%.3f\n", c.spec.c_str(), nmse(x, y), double(x.numel() * 4) / bytes.size());
      double ratio = double(x.numel() * 4) / bytes.size();
      EXPECT_GE(ratio, c.min_ratio) << c.spec;
    }
  }
}

TEST_P(CodecSuite, SecondCallStaysWithinBudget) {
  // Stateful stages (delta, warm starts) must also hold their budget after warm-up.
  const auto& c = GetParam();
  auto codec = sc::make_codec(c.spec);
  sc::CodecContext enc(3), dec(3);
  enc.sample_ids = dec.sample_ids = ids(4);
  auto x = sample_input();
  for (int step = 0; step < 3; ++step) {
    enc.step = dec.step = step;
    auto xs = x + 0.001 * step;
    auto b = codec->encode(xs, enc);
    auto y = codec->decode(b.data(), b.size(), dec);
    if (c.nmse_budget == 0)
      EXPECT_TRUE(torch::equal(y, xs));
    else
      EXPECT_LT(nmse(xs, y), c.nmse_budget) << c.spec << " step " << step;
  }
}

TEST_P(CodecSuite, SizeIsExactlyTheMessage) {
  // The encoded vector is the whole message: one byte less or more does not decode.
  const auto& c = GetParam();
  auto codec = sc::make_codec(c.spec);
  sc::CodecContext enc(1);
  enc.sample_ids = ids(4);
  auto bytes = codec->encode(sample_input(), enc);
  EXPECT_EQ(sc::message_spec(bytes.data(), bytes.size()), codec->spec());
  EXPECT_THROW(sc::message_spec(bytes.data(), bytes.size() - 1), sc::DecodeError);
  auto longer = bytes;
  longer.push_back(0);
  EXPECT_THROW(sc::message_spec(longer.data(), longer.size()), sc::DecodeError);
}

TEST_P(CodecSuite, DeterministicForFixedSeedAndDecodableFromMessageAlone) {
  const auto& c = GetParam();
  auto x = sample_input();
  std::vector<std::uint8_t> first;
  for (int rep = 0; rep < 2; ++rep) {
    auto codec = sc::make_codec(c.spec);
    sc::CodecContext enc(99);
    enc.sample_ids = ids(4);
    auto b = codec->encode(x, enc);
    if (rep == 0) first = b;
    else EXPECT_EQ(b, first) << c.spec;
  }
  sc::CodecContext d1(99), d2(99);
  d1.sample_ids = d2.sample_ids = ids(4);
  auto a = sc::make_codec(c.spec)->decode(first.data(), first.size(), d1);
  auto b = sc::decode_message(first.data(), first.size(), d2);
  EXPECT_TRUE(torch::equal(a, b));
}

TEST_P(CodecSuite, CorruptOrTruncatedInputNeverCrashes) {
  const auto& c = GetParam();
  auto codec = sc::make_codec(c.spec);
  sc::CodecContext enc(5);
  enc.sample_ids = ids(4);
  auto bytes = codec->encode(sample_input(), enc);
  // Every truncation is refused with DecodeError.
  for (std::size_t n = 0; n < bytes.size(); n += std::max<std::size_t>(1, bytes.size() / 97)) {
    sc::CodecContext dec(5);
    dec.sample_ids = ids(4);
    EXPECT_THROW(sc::decode_message(bytes.data(), n, dec), sc::DecodeError) << c.spec << " len " << n;
  }
  // Random byte flips: a clear error, or a tensor of the declared shape. Never a crash.
  std::mt19937 rng(17);
  for (int t = 0; t < 300; ++t) {
    auto bad = bytes;
    int flips = 1 + int(rng() % 4);
    for (int f = 0; f < flips; ++f) bad[rng() % bad.size()] ^= static_cast<std::uint8_t>(1 + rng() % 255);
    sc::CodecContext dec(5);
    dec.sample_ids = ids(4);
    try {
      auto y = sc::decode_message(bad.data(), bad.size(), dec);
      EXPECT_LE(y.numel(), int64_t{1} << 32);
    } catch (const sc::CodecError&) {
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllCodecs, CodecSuite,
    // Budgets: ~1.5x the NMSE measured on this data, ratios ~0.95x the measured ratio
    // (the 12 KiB input makes the ~90-byte self-describing header visible).
    ::testing::Values(CodecCase{"none", 0, 0.99}, CodecCase{"fp16", 1e-6, 1.95}, CodecCase{"bf16", 1e-5, 1.95},
                      CodecCase{"quant:bits=16", 1e-8, 1.9}, CodecCase{"quant:bits=8", 2e-4, 3.7},
                      CodecCase{"quant:bits=4", 0.05, 7.0}, CodecCase{"quant:bits=3,scale=channel", 0.07, 7.0},
                      CodecCase{"quant:bits=2,clip=dsaciq", 0.25, 12.5},
                      CodecCase{"quant:bits=1,mode=sym,scale=row,clip=aciq", 0.9, 14.5},
                      CodecCase{"quant:bits=8,scale=row,mode=sym,round=stochastic", 1.5e-4, 3.4},
                      CodecCase{"quant:bits=5,clip=aciq,prior=gauss,sdtype=f16", 0.02, 5.7},
                      CodecCase{"lowrank:rank=8", 2e-5, 1.4}, CodecCase{"lowrank:rank=8+quant:bits=8", 5e-4, 5.0},
                      CodecCase{"lowrank:rank=16,mode=batch,warm=1", 2e-5, 1.6},
                      CodecCase{"delta:bits=4", 0.05, 0.98}, CodecCase{"none+zstd", 0, 1.0},
                      CodecCase{"quant:bits=4+zstd", 0.05, 8.5}, CodecCase{"delta:bits=8+zstd", 1e-3, 1.0}),
    [](const ::testing::TestParamInfo<CodecCase>& p) {
      std::string n = p.param.spec;
      for (auto& ch : n)
        if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
      return n;
    });

}  // namespace
