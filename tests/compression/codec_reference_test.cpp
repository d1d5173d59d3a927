// Codecs against independent references: theory (ACIQ), the optimal truncated
// SVD, float64 direct definitions, and direct quantization.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <numeric>
#include <random>

#include "lowrank_kernel.hpp"
#include "quant_core.hpp"
#include "seam/compression/codec.hpp"
#include "seam/compression/delta.hpp"
#include "seam/compression/errors.hpp"

namespace sc = seam::compression;
namespace sd = seam::compression::detail;

namespace {

double nmse(const torch::Tensor& x, const torch::Tensor& y) {
  auto xd = x.to(torch::kDouble), yd = y.to(torch::kDouble);
  return ((xd - yd).pow(2).sum() / xd.pow(2).sum()).item<double>();
}

torch::Tensor roundtrip(const std::string& spec, const torch::Tensor& x, std::uint64_t seed = 1) {
  auto c = sc::make_codec(spec);
  sc::CodecContext e(seed), d(seed);
  auto b = c->encode(x, e);
  return c->decode(b.data(), b.size(), d);
}

torch::Generator gen(std::uint64_t s) { return torch::make_generator<at::CPUGeneratorImpl>(s); }

torch::Tensor laplace(std::vector<int64_t> shape, std::uint64_t s) {
  auto g = gen(s);
  auto u = torch::rand(shape, g) - 0.5;
  return -torch::sign(u) * torch::log1p(-2 * u.abs());
}

TEST(QuantReference, EightBitsOnGaussianBelow1e4) {
  auto x = torch::randn({64, 768}, gen(1));
  EXPECT_LT(nmse(x, roundtrip("quant:bits=8", x)), 1e-4);
}

TEST(QuantReference, AciqLaplaceClipMatchesBannerLambertW) {
  // Banner et al. 2019, Table 1: alpha*/b = 2.83, 3.89, 5.03 for 2, 3, 4 bits.
  EXPECT_NEAR(sd::aciq_alpha(2, sd::Prior::laplace), 2.83, 0.01);
  EXPECT_NEAR(sd::aciq_alpha(3, sd::Prior::laplace), 3.89, 0.01);
  EXPECT_NEAR(sd::aciq_alpha(4, sd::Prior::laplace), 5.03, 0.01);
  // The Gaussian clip grows with bits and stays below the Laplace one.
  for (int b = 2; b <= 8; ++b) {
    EXPECT_LT(sd::aciq_alpha(b, sd::Prior::gauss), sd::aciq_alpha(b, sd::Prior::laplace));
    EXPECT_GT(sd::aciq_alpha(b + 1, sd::Prior::gauss), sd::aciq_alpha(b, sd::Prior::gauss));
  }
}

TEST(QuantReference, DsAciqBeatsMinMaxAtTwoBitsOnLaplaceAndGelu) {
  auto lap = laplace({256, 768}, 3);
  auto gelu = torch::gelu(torch::randn({256, 768}, gen(4)) * 1.5);
  for (const auto& x : {lap, gelu}) {
    double minmax = nmse(x, roundtrip("quant:bits=2", x));
    double ds = nmse(x, roundtrip("quant:bits=2,clip=dsaciq", x));
    double aciq = nmse(x, roundtrip("quant:bits=2,clip=aciq", x));
    EXPECT_LT(ds, minmax * 0.8) << "dsaciq " << ds << " minmax " << minmax;
    EXPECT_LE(ds, aciq * 1.05) << "dsaciq " << ds << " aciq " << aciq;
  }
}

TEST(QuantReference, StochasticRoundingIsUnbiased) {
  // Mean over many seeds approaches the input; nearest rounding would not.
  auto x = torch::full({1, 4096}, 0.3f);
  x.index_put_({0, 0}, 0.0f);
  x.index_put_({0, 1}, 1.0f);
  torch::Tensor acc = torch::zeros_like(x, torch::kDouble);
  const int reps = 200;
  for (int s = 0; s < reps; ++s) acc += roundtrip("quant:bits=1,round=stochastic", x, s).to(torch::kDouble);
  double mean = acc.narrow(1, 2, 4094).mean().item<double>() / reps;
  EXPECT_NEAR(mean, 0.3, 0.01);
}

TEST(QuantReference, ConstantZeroAndNonFiniteInputs) {
  for (float v : {0.0f, 3.25f, -7.0f}) {
    auto x = torch::full({8, 16}, v);
    for (const char* spec : {"quant:bits=4", "quant:bits=2,mode=sym,scale=row", "quant:bits=3,clip=dsaciq"}) {
      auto y = roundtrip(spec, x);
      EXPECT_TRUE(torch::isfinite(y).all().item<bool>()) << spec;
      EXPECT_LT((y - x).abs().max().item<float>(), 1e-6 + std::abs(v) * 1e-6) << spec << " v=" << v;
    }
  }
  auto x = torch::randn({4, 4});
  x.index_put_({1, 2}, std::nanf(""));
  EXPECT_THROW(roundtrip("quant:bits=4", x), sc::CodecError);
  x.index_put_({1, 2}, INFINITY);
  EXPECT_THROW(roundtrip("quant:bits=4,mode=sym", x), sc::CodecError);
  EXPECT_THROW(roundtrip("delta:bits=4", x), sc::CodecError);
}

TEST(QuantReference, PackingIsDense) {
  // n*b bits round up to bytes: 1000 elements at 3 bits = 375 bytes of codes.
  sd::QuantConfig c;
  c.bits = 3;
  EXPECT_EQ(sd::quantized_size({1000}, c), 375u + 8u);  // + lo/hi as f32
  c.bits = 5;
  EXPECT_EQ(sd::quantized_size({7}, c), 5u + 8u);
}

TEST(LowrankReference, RecoversExactlyRankRInput) {
  auto g = gen(5);
  auto x = torch::matmul(torch::randn({8, 64, 8}, g), torch::randn({8, 8, 96}, g));
  EXPECT_LT(nmse(x, roundtrip("lowrank:rank=8,oversample=0,iters=0", x)), 1e-8);
  EXPECT_LT(nmse(x, roundtrip("lowrank:rank=8", x)), 1e-8);
}

TEST(LowrankReference, WithinTwentyPercentOfOptimalOnDecayingSpectrum) {
  auto g = gen(6);
  const int64_t m = 128, h = 256, r = 8;
  auto q1 = std::get<0>(torch::linalg_qr(torch::randn({m, m}, g)));
  auto q2 = std::get<0>(torch::linalg_qr(torch::randn({h, m}, g)));
  auto s = torch::pow(0.85, torch::arange(m, torch::kDouble)).to(torch::kFloat);
  auto a = torch::matmul(q1 * s.unsqueeze(0), q2.t()).unsqueeze(0);  // [1, 128, 256]
  double optimal = (s.narrow(0, r, m - r).to(torch::kDouble).pow(2).sum() / s.to(torch::kDouble).pow(2).sum()).item<double>();
  double got = nmse(a, roundtrip("lowrank:rank=8", a));
  EXPECT_LT(got, 1.2 * optimal) << "got " << got << " optimal " << optimal;
}

// The streaming kernels against float64 matmul, for every instruction-set
// variant this CPU has: row counts that are not a multiple of the row block,
// and thin sides both narrower and wider than one column block (4 vectors).
TEST(LowrankKernels, ProductsMatchFloat64AndOrthonormalizeIsExact) {
  auto g = gen(9);
  for (const char* isa : {"generic", "avx2", "avx512"}) {
    sd::ScopedSimdIsa variant(isa);
    if (!variant.ok()) continue;
    SCOPED_TRACE(isa);
    for (int64_t k : {1, 12, 17, 70}) {
      const int64_t m = 37, h = 53;
      auto a = torch::randn({m, h}, g), x = torch::randn({h, k}, g), q = torch::randn({m, k}, g);
      auto y = torch::empty({m, k}), z = torch::empty({h, k});
      sd::lowrank_a_x(a.data_ptr<float>(), m, h, x.data_ptr<float>(), k, y.data_ptr<float>());
      sd::lowrank_at_q(a.data_ptr<float>(), m, h, q.data_ptr<float>(), k, z.data_ptr<float>());
      auto ad = a.to(torch::kDouble);
      EXPECT_LT((y.to(torch::kDouble) - ad.matmul(x.to(torch::kDouble))).abs().max().item<double>(), 1e-4) << k;
      EXPECT_LT((z.to(torch::kDouble) - ad.t().matmul(q.to(torch::kDouble))).abs().max().item<double>(), 1e-4) << k;
    }
    // Rank 3 in 6 columns: three orthonormal columns spanning the input, three zero or
    // orthonormal-to-them noise directions; never NaN.
    auto base = torch::randn({40, 3}, g);
    auto y = torch::cat({base, base.matmul(torch::randn({3, 3}, g))}, 1).contiguous();
    auto q = y.clone();
    sd::lowrank_orthonormalize(q.data_ptr<float>(), 40, 6);
    ASSERT_TRUE(torch::isfinite(q).all().item<bool>());
    auto q3 = q.narrow(1, 0, 3).to(torch::kDouble);
    EXPECT_LT((q3.t().matmul(q3) - torch::eye(3, torch::kDouble)).abs().max().item<double>(), 1e-5);
    auto yd = y.to(torch::kDouble);
    EXPECT_LT((q3.matmul(q3.t().matmul(yd)) - yd).abs().max().item<double>(), 1e-4);  // same span
    auto qd = q.to(torch::kDouble);
    auto gram = qd.t().matmul(qd);
    for (int j = 3; j < 6; ++j) {
      const double nj = gram[j][j].item<double>();
      EXPECT_TRUE(nj < 1e-12 || std::abs(nj - 1) < 1e-5) << "column " << j << " norm^2 " << nj;
      for (int i = 0; i < j; ++i) EXPECT_LT(std::abs(gram[i][j].item<double>()), 1e-4) << i << "," << j;
    }
  }
}

TEST(DeltaReference, EncoderAndDecoderStayBitIdenticalOver1000Steps) {
  auto codec = sc::make_codec("delta:bits=4");
  sc::CodecContext enc(21), dec(21);
  auto g = gen(8);
  const int pool = 24;
  auto base = torch::randn({pool, 6, 16}, g);
  std::mt19937 rng(3);
  for (int step = 0; step < 1000; ++step) {
    std::vector<std::int64_t> idv(pool);
    std::iota(idv.begin(), idv.end(), 0);
    std::shuffle(idv.begin(), idv.end(), rng);
    idv.resize(1 + rng() % 8);
    enc.step = dec.step = step;
    enc.sample_ids = dec.sample_ids = idv;
    auto rows = torch::tensor(idv, torch::kLong);
    auto x = base.index_select(0, rows) + 0.3 * torch::randn({int64_t(idv.size()), 6, 16}, g);
    auto b = codec->encode(x, enc);
    auto y = codec->decode(b.data(), b.size(), dec);
    ASSERT_EQ(y.sizes(), x.sizes());
    for (auto id : idv) {
      auto me = sc::delta_buffer(enc, 0, id), md = sc::delta_buffer(dec, 0, id);
      ASSERT_TRUE(me.defined() && md.defined());
      ASSERT_TRUE(torch::equal(me, md)) << "buffers diverged at step " << step << " sample " << id;
    }
  }
  EXPECT_EQ(sc::delta_buffer_count(enc, 0), std::size_t(pool));
}

TEST(DeltaReference, TenTimesBetterThanDirectQuantOnDriftingSequence) {
  // A slowly drifting activation per sample: AC-SGD sends only the small change.
  auto g = gen(9);
  auto x = torch::randn({16, 32, 64}, g);
  std::vector<std::int64_t> idv(16);
  std::iota(idv.begin(), idv.end(), 100);
  auto delta = sc::make_codec("delta:bits=4");
  auto direct = sc::make_codec("quant:bits=4,scale=channel,mode=sym,sdtype=f16");
  sc::CodecContext de(1), dd(1), qe(1), qd(1);
  de.sample_ids = dd.sample_ids = idv;
  double err_delta = 0, err_direct = 0;
  for (int step = 0; step < 20; ++step) {
    x = x + 0.01 * torch::randn(x.sizes(), g);
    auto bd = delta->encode(x, de);
    auto yd = delta->decode(bd.data(), bd.size(), dd);
    auto bq = direct->encode(x, qe);
    auto yq = direct->decode(bq.data(), bq.size(), qd);
    if (step >= 1) {
      err_delta += nmse(x, yd);
      err_direct += nmse(x, yq);
      EXPECT_LE(bd.size(), bq.size() + 64);  // same bits on the wire
    }
  }
  EXPECT_LT(err_delta * 10, err_direct) << "delta " << err_delta << " direct " << err_direct;
}

TEST(DeltaReference, SpillsToDiskBeyondRamBoundAndStaysInSync) {
  auto codec = sc::make_codec("delta:bits=4");
  sc::CodecContext enc(2), dec(2);
  const std::int64_t per_sample_bytes = 8 * 32 * 2;
  enc.delta_store.ram_limit_bytes = dec.delta_store.ram_limit_bytes = 5 * per_sample_bytes;
  auto g = gen(10);
  auto base = torch::randn({40, 8, 32}, g);
  for (int step = 0; step < 6; ++step) {
    for (int b0 = 0; b0 < 40; b0 += 10) {
      std::vector<std::int64_t> idv(10);
      std::iota(idv.begin(), idv.end(), b0);
      enc.sample_ids = dec.sample_ids = idv;
      auto x = base.narrow(0, b0, 10) + 0.01 * step;
      auto b = codec->encode(x, enc);
      auto y = codec->decode(b.data(), b.size(), dec);
      EXPECT_LT(nmse(x, y), 1e-2);
    }
  }
  EXPECT_EQ(enc.state_ram_bytes(), std::size_t(5 * per_sample_bytes));
  EXPECT_GT(enc.state_disk_bytes(), std::size_t(35 * per_sample_bytes) - 1);
  for (int id = 0; id < 40; ++id) EXPECT_TRUE(torch::equal(sc::delta_buffer(enc, 0, id), sc::delta_buffer(dec, 0, id)));
}

TEST(DeltaReference, OutOfSyncAndMissingIdsAreClearErrors) {
  auto codec = sc::make_codec("delta:bits=4");
  sc::CodecContext enc(2), dec(2), fresh(2);
  enc.sample_ids = dec.sample_ids = fresh.sample_ids = {1, 2};
  auto x = torch::randn({2, 8});
  auto b0 = codec->encode(x, enc);
  codec->decode(b0.data(), b0.size(), dec);
  auto b1 = codec->encode(x, enc);  // now a residual message
  EXPECT_THROW(codec->decode(b1.data(), b1.size(), fresh), sc::DecodeError);
  sc::CodecContext noids(2);
  EXPECT_THROW(codec->encode(x, noids), sc::CodecError);
  noids.sample_ids = {5, 5};
  EXPECT_THROW(codec->encode(x, noids), sc::CodecError);
}

// The CodecError a spec gets, or "no error".
std::string msg(const std::string& spec) {
  try {
    sc::make_codec(spec);
  } catch (const sc::CodecError& e) {
    return std::string(e.what());
  }
  return std::string("no error");
}

TEST(SpecGrammar, ErrorsNameWhatIsAllowed) {
  EXPECT_NE(msg("qaunt:bits=4").find("known stages: none, fp16, bf16, quant, lowrank, delta, zstd"), std::string::npos);
  EXPECT_NE(msg("quant:bitz=4").find("allowed: bits, scale"), std::string::npos);
  EXPECT_NE(msg("quant:bits=9").find("one of 1|2|3|4|5|6|7|8|16"), std::string::npos);
  EXPECT_NE(msg("lowrank:rank=0").find("[1, 4096]"), std::string::npos);
  EXPECT_NE(msg("zstd+quant:bits=4").find("byte stages such as zstd go last"), std::string::npos);
  EXPECT_NE(msg("quant:bits=4+").find("empty stage"), std::string::npos);
  EXPECT_NE(msg("").find("empty codec spec"), std::string::npos);
  EXPECT_NE(msg("quant:bits=4,bits=2").find("given twice"), std::string::npos);
  EXPECT_EQ(sc::make_codec("quant:bits=4")->spec(),
            "quant:bits=4,scale=tensor,mode=asym,round=nearest,clip=none,prior=laplace,sdtype=f32");
  EXPECT_EQ(sc::make_codec("lowrank:rank=4")->spec(),
            "lowrank:rank=4,iters=1,oversample=4,mode=sample,warm=0+none");
}

// A spec that parses must decode: the parser holds chains to the decoder's stage and part limits.
TEST(SpecGrammar, ParserEnforcesTheDecodersLimits) {
  auto chain = [](const std::string& stage, int n, const std::string& tail) {
    std::string s;
    for (int i = 0; i < n; ++i) s += stage + "+";
    return s + tail;
  };
  const auto x = torch::randn({2, 4, 8});
  // 8 lowranks make 256 parts, the most a message may hold; they round-trip.
  EXPECT_EQ(roundtrip(chain("lowrank:rank=1", 8, "fp16"), x).sizes(), x.sizes());
  EXPECT_NE(msg(chain("lowrank:rank=1", 9, "fp16")).find("more than 256 parts at stage 'lowrank'"), std::string::npos);
  // At most 16 stages, counting the implicit final none.
  const std::string sixteen = chain("lowrank:rank=1", 8, "fp16+" + chain("zstd", 6, "zstd"));
  EXPECT_EQ(roundtrip(sixteen, x).sizes(), x.sizes());
  EXPECT_NE(msg(sixteen + "+zstd").find("has 17 stages; at most 16"), std::string::npos);
  EXPECT_NE(msg(chain("lowrank:rank=1", 15, "lowrank:rank=1")).find("has 17 stages (with the implicit final none)"),
            std::string::npos);
  EXPECT_NE(msg(chain("zstd", 17, "zstd")).find("more than 16 stages"), std::string::npos);
  EXPECT_NE(msg("lowrank:rank=2+delta").find("stage 'delta' takes one tensor"), std::string::npos);
}

TEST(RawStages, Fp16AndBf16RefuseNanAndInf) {
  for (const char* spec : {"fp16", "bf16"}) {
    for (float bad : {std::nanf(""), INFINITY}) {
      auto x = torch::randn({4, 4});
      x[1][2] = bad;
      sc::CodecContext e(1);
      EXPECT_THROW(sc::make_codec(spec)->encode(x, e), sc::CodecError) << spec << " " << bad;
      EXPECT_THROW(sc::make_codec(spec)->encode(x.to(torch::kHalf), e), sc::CodecError) << spec << " " << bad;
    }
  }
}

TEST(SpecGrammar, DecoderRefusesAMessageOfAnotherSpec) {
  sc::CodecContext e(1), d(1);
  auto b = sc::make_codec("quant:bits=4")->encode(torch::randn({4, 4}), e);
  EXPECT_THROW(sc::make_codec("quant:bits=8")->decode(b.data(), b.size(), d), sc::DecodeError);
}

}  // namespace
