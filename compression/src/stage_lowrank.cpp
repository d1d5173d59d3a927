// lowrank: activation low-rank factorisation by a randomised range finder with
// power iterations (Halko, Martinsson & Tropp 2011), re-orthonormalised at every
// step for stability (Gram-Schmidt with re-orthogonalisation, the kernels in
// lowrank_kernel_impl.hpp). Emits the factors U [G,M,r] and V [G,r,H] as
// tensors for the next stage.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

#include "lowrank_kernel.hpp"
#include "stage.hpp"

namespace seam::compression::detail {
namespace {

// Eigen-decomposition of a small symmetric matrix a [k x k] (row-major) by
// cyclic Jacobi rotations in float64. Returns eigenvalues in descending order;
// vecs [k x k] gets the matching eigenvectors as columns.
std::vector<double> symmetric_eigen(std::vector<double> a, int k, std::vector<double>& vecs) {
  std::vector<double> v(static_cast<std::size_t>(k) * k, 0.0);
  for (int i = 0; i < k; ++i) v[i * k + i] = 1;
  for (int sweep = 0; sweep < 60; ++sweep) {
    double off = 0, diag = 0;
    for (int p = 0; p < k; ++p) {
      diag += a[p * k + p] * a[p * k + p];
      for (int q = p + 1; q < k; ++q) off += a[p * k + q] * a[p * k + q];
    }
    if (off <= 1e-30 * diag || off == 0) break;
    for (int p = 0; p < k; ++p)
      for (int q = p + 1; q < k; ++q) {
        const double apq = a[p * k + q];
        if (apq == 0) continue;
        const double theta = (a[q * k + q] - a[p * k + p]) / (2 * apq);
        const double t = (theta >= 0 ? 1.0 : -1.0) / (std::abs(theta) + std::sqrt(theta * theta + 1));
        const double c = 1 / std::sqrt(t * t + 1), s = t * c;
        for (int r = 0; r < k; ++r) {  // columns p, q
          const double arp = a[r * k + p], arq = a[r * k + q];
          a[r * k + p] = c * arp - s * arq;
          a[r * k + q] = s * arp + c * arq;
        }
        for (int r = 0; r < k; ++r) {  // rows p, q
          const double apr = a[p * k + r], aqr = a[q * k + r];
          a[p * k + r] = c * apr - s * aqr;
          a[q * k + r] = s * apr + c * aqr;
        }
        for (int r = 0; r < k; ++r) {
          const double vrp = v[r * k + p], vrq = v[r * k + q];
          v[r * k + p] = c * vrp - s * vrq;
          v[r * k + q] = s * vrp + c * vrq;
        }
      }
  }
  std::vector<int> order(k);
  for (int i = 0; i < k; ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](int x, int y) { return a[x * k + x] > a[y * k + y]; });
  std::vector<double> evals(k);
  vecs.assign(static_cast<std::size_t>(k) * k, 0.0);
  for (int j = 0; j < k; ++j) {
    evals[j] = a[order[j] * k + order[j]];
    for (int r = 0; r < k; ++r) vecs[r * k + j] = v[r * k + order[j]];
  }
  return evals;
}

// One slice A [m x h] (row-major float) -> U [m x r], V [r x h] with
// U V ~ A. omega [h x k] is the test matrix (or the warm basis); basis_out
// [h x k], if given, receives the next warm start. All of a slice's passes
// run back to back, so after the first one A is read from cache. False if
// the sketch (hence A) holds NaN or Inf.
bool factor_slice(const float* a, std::int64_t m, std::int64_t h, const float* omega, std::int64_t k,
                  std::int64_t r, std::int64_t iters, float* u, float* v, float* basis_out) {
  std::vector<float> q(m * k), z(h * k), bt(h * k), gram(k * k);
  lowrank_a_x(a, m, h, omega, k, q.data());
  // NaN/Inf in A reach the sketch (Omega is dense): checking it is enough.
  for (float x : q)
    if (!std::isfinite(x)) return false;
  lowrank_orthonormalize(q.data(), m, k);
  for (std::int64_t it = 0; it < iters; ++it) {
    lowrank_at_q(a, m, h, q.data(), k, z.data());
    lowrank_orthonormalize(z.data(), h, k);
    lowrank_a_x(a, m, h, z.data(), k, q.data());
    lowrank_orthonormalize(q.data(), m, k);
  }
  lowrank_at_q(a, m, h, q.data(), k, bt.data());  // B^T [h x k], B = Q^T A
  // SVD of B = W S Vh through its k x k Gram matrix B B^T = W S^2 W^T
  // (float64 Jacobi); then U = Q W S and V = S^-1 W^T B = Vh.
  lowrank_at_q(bt.data(), h, k, bt.data(), k, gram.data());
  std::vector<double> vecs;
  auto evals = symmetric_eigen(std::vector<double>(gram.begin(), gram.end()), static_cast<int>(k), vecs);
  std::vector<float> wk(k * k), w(k * r), sv(r), inv(r);
  for (std::int64_t i = 0; i < k * k; ++i) wk[i] = static_cast<float>(vecs[i]);
  for (std::int64_t i = 0; i < k; ++i)
    for (std::int64_t j = 0; j < r; ++j) w[i * r + j] = wk[i * k + j];
  for (std::int64_t j = 0; j < r; ++j) sv[j] = static_cast<float>(std::sqrt(std::max(0.0, evals[j])));
  for (std::int64_t j = 0; j < r; ++j) inv[j] = sv[j] > sv[0] * 1e-6f ? 1.0f / sv[j] : 0.0f;
  lowrank_a_x(q.data(), m, k, w.data(), r, u);  // Q W
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t j = 0; j < r; ++j) u[i * r + j] *= sv[j];
  std::vector<float> bw(h * r);
  lowrank_a_x(bt.data(), h, k, w.data(), r, bw.data());  // B^T W = (S Vh)^T
  for (std::int64_t j = 0; j < r; ++j)
    for (std::int64_t c = 0; c < h; ++c) v[j * h + c] = bw[c * r + j] * inv[j];
  if (basis_out) {  // the top-k right singular directions, orthonormalised
    lowrank_a_x(bt.data(), h, k, wk.data(), k, basis_out);
    lowrank_orthonormalize(basis_out, h, k);
  }
  return true;
}

struct LowrankState final : StageState {
  std::vector<at::Tensor> basis;  // per part: [G, H, k] right basis of the last step
  std::size_t ram_bytes() const override {
    std::size_t n = 0;
    for (const auto& b : basis) n += b.defined() ? b.nbytes() : 0;
    return n;
  }
  // part count, then per part: defined flag, shape, float32 values.
  void save(std::vector<std::uint8_t>& out) const override {
    ByteWriter w(out);
    w.put<std::uint32_t>(static_cast<std::uint32_t>(basis.size()));
    for (const auto& b : basis) {
      w.put<std::uint8_t>(b.defined() ? 1 : 0);
      if (!b.defined()) continue;
      at::Tensor c = b.to(at::kFloat).contiguous();
      w.put_shape(shape_of(c));
      w.put_bytes(c.data_ptr(), c.nbytes());
    }
  }
};

struct LowrankConfig {
  std::int64_t rank, iters, oversample;
  bool per_sample, warm;
};

class LowrankStage final : public Stage {
 public:
  explicit LowrankStage(LowrankConfig c) : c_(c) {}

  std::vector<Part> encode(std::vector<Part> in, ByteWriter& meta, StageCall& call) const override {
    require_tensor_parts(in, "lowrank");
    meta.put<std::uint32_t>(static_cast<std::uint32_t>(in.size()));
    auto& state = call.ctx.state<LowrankState>(call.index, "lowrank", [] { return std::make_unique<LowrankState>(); });
    state.basis.resize(in.size());
    std::vector<Part> out;
    for (std::size_t i = 0; i < in.size(); ++i) {
      at::Tensor x = float_contiguous(in[i].tensor);
      auto shape = shape_of(x);
      meta.put_shape(shape);
      at::Tensor a = as_matrices(x, shape);  // [G, M, H]
      const std::int64_t m = a.size(1), h = a.size(2);
      const std::int64_t r = std::min({c_.rank, m, h});
      const std::int64_t k = std::min({r + c_.oversample, m, h});
      at::Tensor omega;
      if (c_.warm && state.basis[i].defined() && state.basis[i].sizes() == at::IntArrayRef{a.size(0), h, k}) {
        omega = state.basis[i];
      } else {
        auto gen = at::make_generator<at::CPUGeneratorImpl>(mix_seed(call.ctx.seed, call.ctx.step, call.index, i));
        // One test matrix shared by every sample: 1/G of the random draws, and one GEMM.
        omega = at::randn({1, h, k}, gen, at::TensorOptions().dtype(at::kFloat));
      }
      omega = omega.contiguous();
      const std::int64_t g = a.size(0);
      const bool shared = omega.size(0) == 1;
      at::Tensor u = at::empty({g, m, r}, a.options()), v = at::empty({g, r, h}, a.options());
      at::Tensor next = c_.warm ? at::empty({g, h, k}, a.options()) : at::Tensor();
      std::atomic<bool> finite{true};
      at::parallel_for(0, g, 1, [&](std::int64_t g0, std::int64_t g1) {
        for (std::int64_t s = g0; s < g1; ++s)
          if (!factor_slice(a.data_ptr<float>() + s * m * h, m, h, omega.data_ptr<float>() + (shared ? 0 : s * h * k),
                            k, r, c_.iters, u.data_ptr<float>() + s * m * r, v.data_ptr<float>() + s * r * h,
                            c_.warm ? next.data_ptr<float>() + s * h * k : nullptr))
            finite = false;
      });
      if (!finite) throw CodecError("lowrank: input contains NaN or Inf");
      if (c_.warm) state.basis[i] = next;
      out.push_back(Part::of_tensor(u.contiguous()));
      out.push_back(Part::of_tensor(v));
    }
    return out;
  }

  std::vector<Part> decode(std::vector<Part> in, ByteReader& meta, StageCall&) const override {
    auto n = meta.get<std::uint32_t>();
    if (n > 128) meta.fail("lowrank: part count out of range");
    require_part_count(in, 2 * n, "lowrank", meta);
    std::vector<Part> out;
    for (std::uint32_t i = 0; i < n; ++i) {
      auto shape = meta.get_shape();
      const at::Tensor& u = in[2 * i].tensor;
      const at::Tensor& v = in[2 * i + 1].tensor;
      if (in[2 * i].is_bytes || in[2 * i + 1].is_bytes) meta.fail("lowrank: factors must be tensors");
      auto g = geometry(shape, meta);
      const std::int64_t r_max = std::min({c_.rank, g.m, g.h});
      if (u.dim() != 3 || v.dim() != 3 || u.size(0) != g.g || u.size(1) != g.m || v.size(0) != g.g ||
          v.size(2) != g.h || u.size(2) != v.size(1) || u.size(2) > r_max || u.size(2) < 1)
        meta.fail("lowrank: factor shapes do not match the tensor shape");
      out.push_back(Part::of_tensor(at::matmul(u.to(at::kFloat), v.to(at::kFloat)).reshape(shape)));
    }
    return out;
  }

 private:
  struct Geometry {
    std::int64_t g, m, h;
  };

  Geometry geometry(const std::vector<std::int64_t>& shape, ByteReader* meta) const {
    auto fail = [&](const std::string& msg) {
      if (meta) meta->fail(msg);
      throw CodecError(msg);
    };
    const std::int64_t numel = shape_numel(shape);
    if (c_.per_sample) {
      if (shape.size() < 3) fail("lowrank mode=sample needs [batch, ..., features] with >= 3 dims; use mode=batch");
      const std::int64_t h = shape.back(), g = shape[0];
      if (h == 0 || g == 0) fail("lowrank: empty tensor");
      return {g, numel / (g * h), h};
    }
    if (shape.size() < 2) fail("lowrank mode=batch needs >= 2 dims");
    const std::int64_t h = shape.back();
    if (h == 0 || numel == 0) fail("lowrank: empty tensor");
    return {1, numel / h, h};
  }
  Geometry geometry(const std::vector<std::int64_t>& shape, ByteReader& meta) const { return geometry(shape, &meta); }

  at::Tensor as_matrices(const at::Tensor& x, const std::vector<std::int64_t>& shape) const {
    auto g = geometry(shape, nullptr);
    return x.reshape({g.g, g.m, g.h});
  }

  LowrankConfig c_;
};

}  // namespace

std::unique_ptr<StageState> load_lowrank_state(ByteReader& r) {
  auto st = std::make_unique<LowrankState>();
  const auto n = r.get<std::uint32_t>();
  if (n > 256) r.fail("lowrank state has " + std::to_string(n) + " parts");
  for (std::uint32_t i = 0; i < n; ++i) {
    if (!r.get<std::uint8_t>()) {
      st->basis.emplace_back();
      continue;
    }
    auto shape = r.get_shape();
    if (static_cast<std::uint64_t>(shape_numel(shape)) > r.remaining() / 4) r.fail("lowrank state truncated");
    at::Tensor t = at::empty(shape, at::TensorOptions().dtype(at::kFloat));
    std::memcpy(t.data_ptr(), r.take(t.nbytes()), t.nbytes());
    st->basis.push_back(t);
  }
  return st;
}

StageInfo lowrank_stage_info() {
  return {"lowrank",
          1,
          PartKind::tensors,
          PartKind::tensors,
          "rank-r factors U*V by randomised range finder + power iterations (re-orthonormalised each step)",
          {{"rank", "8", {}, 1, 4096, "target rank r"},
           {"iters", "1", {}, 0, 16, "power iterations (each costs two passes over the tensor)"},
           {"oversample", "4", {}, 0, 64, "extra random directions, truncated away after the SVD"},
           {"mode", "sample", {"sample", "batch"}, 0, 0, "one L x H matrix per sample, or one (B*L) x H matrix"},
           {"warm", "0", {"0", "1"}, 0, 0, "start from the previous call's basis (state in the context)"}},
          [](const Params& p) {
            return std::make_unique<LowrankStage>(LowrankConfig{param_int(p, "rank"), param_int(p, "iters"),
                                                                param_int(p, "oversample"), p.at("mode") == "sample",
                                                                p.at("warm") == "1"});
          },
          PartFlow::doubles};
}

}  // namespace seam::compression::detail
