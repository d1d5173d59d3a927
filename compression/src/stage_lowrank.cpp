// lowrank: activation low-rank factorisation by a randomised range finder with
// power iterations (Halko, Martinsson & Tropp 2011), re-orthonormalised by QR at
// every step for stability. Emits the factors U [G,M,r] and V [G,r,H] as tensors
// for the next stage.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "stage.hpp"

namespace seam::compression::detail {
namespace {

struct LowrankState final : StageState {
  std::vector<at::Tensor> basis;  // per part: [G, H, k] right basis of the last step
  std::size_t ram_bytes() const override {
    std::size_t n = 0;
    for (const auto& b : basis) n += b.defined() ? b.nbytes() : 0;
    return n;
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
      at::Tensor y = omega.size(0) == 1 ? at::mm(a.reshape({-1, h}), omega[0]).reshape({a.size(0), m, k})
                                        : at::matmul(a, omega);
      // NaN/Inf in A reach the small sketch Y (Omega is dense), so checking Y is enough
      // and ~20x cheaper than scanning A.
      if (!at::isfinite(y).all().item<bool>()) throw CodecError("lowrank: input contains NaN or Inf");
      at::Tensor q = std::get<0>(at::linalg_qr(y));
      at::Tensor at_ = a.transpose(1, 2);
      for (std::int64_t it = 0; it < c_.iters; ++it) {
        at::Tensor z = std::get<0>(at::linalg_qr(at::matmul(at_, q)));
        q = std::get<0>(at::linalg_qr(at::matmul(a, z)));
      }
      at::Tensor b = at::matmul(q.transpose(1, 2), a);  // [G, k, H]
      // SVD of the small sketch through the k x k Gram matrix (eigh is far cheaper
      // than a batched k x H SVD); b = W S Vh with Vh = S^-1 W^T b.
      auto [evals, wk] = at::linalg_eigh(at::matmul(b, b.transpose(1, 2)));  // ascending
      wk = wk.flip({2});
      at::Tensor w = wk.narrow(2, 0, r);
      at::Tensor s = evals.flip({1}).narrow(1, 0, r).clamp_min(0).sqrt();  // [G, r]
      at::Tensor vh = at::matmul(w.transpose(1, 2), b);                      // [G, r, H] = S Vh
      at::Tensor inv = at::where(s > s.amax(1, true) * 1e-6, s.reciprocal(), at::zeros_like(s));
      at::Tensor u = at::matmul(q, w) * s.unsqueeze(1);
      at::Tensor v = (vh * inv.unsqueeze(2)).contiguous();
      // Next call's start: the top-k right singular directions, orthonormalised.
      if (c_.warm) state.basis[i] = std::get<0>(at::linalg_qr(at::matmul(wk.transpose(1, 2), b).transpose(1, 2)));
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

StageInfo lowrank_stage_info() {
  return {"lowrank",
          1,
          PartKind::tensors,
          PartKind::tensors,
          "rank-r factors U*V by randomised range finder + power iterations (QR each step)",
          {{"rank", "8", {}, 1, 4096, "target rank r"},
           {"iters", "1", {}, 0, 16, "power iterations (each costs two passes over the tensor)"},
           {"oversample", "4", {}, 0, 64, "extra random directions, truncated away after the SVD"},
           {"mode", "sample", {"sample", "batch"}, 0, 0, "one L x H matrix per sample, or one (B*L) x H matrix"},
           {"warm", "0", {"0", "1"}, 0, 0, "start from the previous call's basis (state in the context)"}},
          [](const Params& p) {
            return std::make_unique<LowrankStage>(LowrankConfig{param_int(p, "rank"), param_int(p, "iters"),
                                                                param_int(p, "oversample"), p.at("mode") == "sample",
                                                                p.at("warm") == "1"});
          }};
}

}  // namespace seam::compression::detail
