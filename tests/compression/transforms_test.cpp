// C3 and SFT boundary transforms against float64 direct definitions and
// finite-difference gradients.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "c3_kernel.hpp"
#include "seam/compression/c3.hpp"
#include "seam/compression/errors.hpp"
#include "seam/compression/sft.hpp"

namespace sc = seam::compression;

namespace {

// Central differences of sum(f(x) * w) for a fixed random projection w,
// compared to autograd's gradient; float64 throughout.
void gradcheck(const std::function<torch::Tensor(const torch::Tensor&)>& f, torch::Tensor x) {
  x = x.to(torch::kDouble).detach().requires_grad_(true);
  auto y = f(x);
  auto w = torch::randn(y.sizes(), torch::kDouble);
  auto g = torch::autograd::grad({(y * w).sum()}, {x})[0];
  const double eps = 1e-6;
  auto flat = x.detach().reshape({-1});
  for (int64_t i = 0; i < flat.numel(); i += std::max<int64_t>(1, flat.numel() / 40)) {
    auto xp = flat.clone(), xm = flat.clone();
    xp[i] += eps;
    xm[i] -= eps;
    double fp = (f(xp.reshape(x.sizes())) * w).sum().item<double>();
    double fm = (f(xm.reshape(x.sizes())) * w).sum().item<double>();
    double fd = (fp - fm) / (2 * eps);
    EXPECT_NEAR(g.reshape({-1})[i].item<double>(), fd, 1e-6 * std::max(1.0, std::abs(fd))) << "element " << i;
  }
}

TEST(C3, FftBindAndUnbindEqualDirectDefinitionsInFloat64) {
  for (auto kind : {sc::C3KeyKind::gaussian, sc::C3KeyKind::unitary}) {
    sc::C3Transform c3(4, 33, 7, kind);
    ASSERT_STREQ(c3.path(), "aten");
    auto z = torch::randn({4, 33}, torch::kDouble);
    auto v = c3.bind(z);
    auto direct = sc::C3Transform::circular_convolve_direct(c3.keys(), z);
    EXPECT_LT((v.reshape({33}) - direct).abs().max().item<double>(), 1e-10);
    auto zh = c3.unbind(v, 4);
    for (int r = 0; r < 4; ++r) {
      auto ref = sc::C3Transform::circular_correlate_direct(c3.keys()[r], v.reshape({33}));
      EXPECT_LT((zh[r] - ref).abs().max().item<double>(), 1e-10);
    }
  }
}

// Even D takes the SIMD kernels; check them against the direct definitions in
// float64 for lengths that exercise every radix (2, 3, 4, generic primes).
TEST(C3, KernelBindAndUnbindEqualDirectDefinitionsInFloat64) {
  for (int64_t d : {2, 4, 6, 10, 14, 34, 48, 90, 768}) {
    sc::C3Transform c3(3, d, 7);
    ASSERT_STRNE(c3.path(), "aten");
    auto z = torch::randn({3, d}, torch::kDouble);
    auto v = c3.bind(z);
    auto direct = sc::C3Transform::circular_convolve_direct(c3.keys(), z);
    EXPECT_LT((v.reshape({d}) - direct).abs().max().item<double>(), 1e-10) << "D=" << d;
    auto zh = c3.unbind(v, 3);
    for (int r = 0; r < 3; ++r) {
      auto ref = sc::C3Transform::circular_correlate_direct(c3.keys()[r], v.reshape({d}));
      EXPECT_LT((zh[r] - ref).abs().max().item<double>(), 1e-10) << "D=" << d << " r=" << r;
    }
  }
}

// Kernel vs ATen's FFT on batched shapes: partial groups, a position count
// that is not a multiple of the vector width, non-contiguous input, float32
// and float64, one and two threads.
TEST(C3, KernelMatchesAtenFftPathOnBatches) {
  struct RestoreThreads {
    int n = torch::get_num_threads();
    ~RestoreThreads() { torch::set_num_threads(n); }
  } restore_threads;
  for (const char* isa : {"generic", "avx2", "avx512"})
  for (int nt : {1, 2}) {
    sc::detail::ScopedSimdIsa variant(isa);
    if (!variant.ok()) continue;  // this CPU lacks it
    SCOPED_TRACE(isa);
    torch::set_num_threads(nt);
    for (auto dt : {torch::kFloat, torch::kDouble}) {
      sc::C3Transform c3(4, 96, 5, sc::C3KeyKind::unitary);
      ASSERT_STRNE(c3.path(), "aten");
      auto z = torch::randn({11, 96, 37}, dt).transpose(1, 2);  // [11, 37, 96], non-contiguous
      auto v = c3.bind(z), va = c3.bind_aten(z);
      ASSERT_EQ(v.sizes(), va.sizes());
      const double tol = dt == torch::kFloat ? 1e-5 : 1e-12;
      EXPECT_LT(((v - va).abs().max() / va.abs().max()).item<double>(), tol);
      auto zh = c3.unbind(v, 11), zha = c3.unbind_aten(va, 11);
      ASSERT_EQ(zh.sizes(), z.sizes());
      EXPECT_LT(((zh - zha).abs().max() / zha.abs().max()).item<double>(), tol);
    }
  }
}

TEST(C3, KernelGradientIsTheAdjointAndOutlivesTheTransform) {
  torch::Tensor z = torch::randn({5, 3, 16}, torch::kDouble).requires_grad_(true), v;
  {
    sc::C3Transform c3(2, 16, 9);
    v = c3.unbind(c3.bind(z), 5);
  }
  v.sum().backward();  // the graph keeps the plans alive
  sc::C3Transform again(2, 16, 9);
  auto za = z.detach().requires_grad_(true);
  again.unbind_aten(again.bind_aten(za), 5).sum().backward();
  EXPECT_LT((z.grad() - za.grad()).abs().max().item<double>(), 1e-12);
}

TEST(C3, KeysAreUnitNormAndSharedBySeed) {
  sc::C3Transform a(8, 64, 5), b(8, 64, 5), c(8, 64, 6);
  EXPECT_TRUE(torch::allclose(a.keys().norm(2, {1}), torch::ones({8}, torch::kDouble)));
  EXPECT_TRUE(torch::equal(a.keys(), b.keys()));
  EXPECT_FALSE(torch::equal(a.keys(), c.keys()));
  sc::C3Transform u(8, 64, 5, sc::C3KeyKind::unitary);
  auto mag = torch::abs(torch::fft::rfft(u.keys()));
  EXPECT_TRUE(torch::allclose(mag, torch::ones_like(mag)));
}

TEST(C3, UnitaryKeysUnbindExactlyForROne) {
  sc::C3Transform c3(1, 48, 3, sc::C3KeyKind::unitary);
  auto z = torch::randn({5, 6, 48}, torch::kDouble);
  auto zh = c3.unbind(c3.bind(z), 5);
  EXPECT_LT((zh - z).abs().max().item<double>(), 1e-10);
}

TEST(C3, PartialGroupIsPaddedNotDropped) {
  sc::C3Transform c3(4, 256, 3, sc::C3KeyKind::unitary);
  auto z = torch::randn({6, 3, 256});
  auto v = c3.bind(z);
  EXPECT_EQ(v.sizes(), (std::vector<int64_t>{2, 3, 256}));
  auto zh = c3.unbind(v, 6);
  EXPECT_EQ(zh.sizes(), z.sizes());
  // Retrieval is noisy (R keys superposed, cosine ~ 1/sqrt(R)) but correlated with the input.
  auto cos = torch::cosine_similarity(zh.reshape({6, -1}), z.reshape({6, -1}), 1);
  EXPECT_GT(cos.min().item<float>(), 0.3);
  EXPECT_THROW(c3.unbind(v, 9), sc::CodecError);
  EXPECT_THROW(c3.bind(torch::randn({6, 255})), sc::CodecError);
}

TEST(C3, GradientsPassFiniteDifferenceCheck) {
  for (int64_t d : {10, 9}) {  // kernel path (even D) and ATen path (odd D)
    sc::C3Transform c3(3, d, 11);
    gradcheck([&](const torch::Tensor& z) { return c3.bind(z); }, torch::randn({5, 2, d}));
    gradcheck([&](const torch::Tensor& v) { return c3.unbind(v, 5); }, torch::randn({2, 2, d}));
  }
}

TEST(Sft, FactorsReproduceTheLayerAtFullRankAndTruncateOptimally) {
  auto w = torch::randn({24, 16}, torch::kDouble), b = torch::randn({24}, torch::kDouble);
  auto x = torch::randn({5, 16}, torch::kDouble);
  auto full = sc::sft_factorize(w, b, 16);
  auto y = sc::sft_cloud(sc::sft_edge(x, full.edge_weight), full.cloud_weight, full.cloud_bias);
  EXPECT_LT((y - torch::nn::functional::linear(x, w, b)).abs().max().item<double>(), 1e-10);
  auto low = sc::sft_factorize(w, b, 4);
  EXPECT_EQ(low.edge_weight.sizes(), (std::vector<int64_t>{4, 16}));
  EXPECT_EQ(low.cloud_weight.sizes(), (std::vector<int64_t>{24, 4}));
  // Eckart-Young: the rank-4 error equals the tail singular values.
  auto s = torch::linalg::svdvals(w, c10::nullopt);
  double err = (torch::matmul(low.cloud_weight, low.edge_weight) - w).pow(2).sum().item<double>();
  EXPECT_NEAR(err, s.narrow(0, 4, 12).pow(2).sum().item<double>(), 1e-9);
}

TEST(Sft, GradientsPassFiniteDifferenceCheckAndBadInputIsRefused) {
  auto f = sc::sft_factorize(torch::randn({12, 8}, torch::kDouble), torch::randn({12}, torch::kDouble), 3);
  gradcheck([&](const torch::Tensor& x) { return sc::sft_edge(x, f.edge_weight); }, torch::randn({4, 8}));
  gradcheck([&](const torch::Tensor& t) { return sc::sft_cloud(t, f.cloud_weight, f.cloud_bias); }, torch::randn({4, 3}));
  EXPECT_THROW(sc::sft_factorize(torch::randn({12, 8}), {}, 9), sc::CodecError);
  EXPECT_THROW(sc::sft_factorize(torch::randn({12}), {}, 1), sc::CodecError);
  EXPECT_THROW(sc::sft_factorize(torch::randn({12, 8}), torch::randn({8}), 2), sc::CodecError);
}

}  // namespace
