#include "seam/ptq/quantize.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <stdexcept>

namespace seam::ptq {

std::string method_name(Method m) {
  switch (m) {
    case Method::rtn: return "rtn";
    case Method::ep_init: return "ep-init";
    case Method::optq: return "optq";
    case Method::gpfq: return "gpfq";
  }
  return "?";
}

Method parse_method(const std::string& s) {
  if (s == "rtn") return Method::rtn;
  if (s == "ep-init") return Method::ep_init;
  if (s == "optq" || s == "gptq") return Method::optq;
  if (s == "gpfq") return Method::gpfq;
  throw std::invalid_argument("unknown method '" + s + "' (rtn, ep-init, optq, gpfq)");
}

CodeRange act_code_range(int act_bits, bool is_signed) {
  const std::int64_t levels = std::int64_t{1} << act_bits;
  return is_signed ? CodeRange{-levels / 2, levels / 2 - 1} : CodeRange{0, levels - 1};
}

double l1_limit(int acc_bits, int act_bits) {
  return (std::ldexp(1.0, acc_bits) - 2.0) / (std::ldexp(1.0, act_bits) - 1.0);
}

std::int64_t sign_budget(int acc_bits, CodeRange r) {
  // Worst case of the upper sum is nu*S+ + |mu|*S- (mu < 0) or nu*S+ (mu = 0);
  // equal budgets for both signs keep both inequalities.
  const std::int64_t a = (std::int64_t{1} << (acc_bits - 1)) - 1;
  return a / (r.nu - std::min<std::int64_t>(r.mu, 0));
}

int outer_acc_bits(int acc_bits, std::int64_t in_features, std::int64_t tile) {
  if (tile <= 0 || tile >= in_features) return acc_bits;
  const std::int64_t tiles = (in_features + tile - 1) / tile;
  int extra = 0;
  while ((std::int64_t{1} << extra) < tiles) ++extra;
  return acc_bits + extra;
}

void check_spec(const LayerQuantSpec& s, std::int64_t in_features) {
  auto bad = [](const std::string& m) { throw std::invalid_argument("ptq: " + m); };
  if (s.weight_bits < 2 || s.weight_bits > 8)
    bad("weight bits M=" + std::to_string(s.weight_bits) + " out of range 2..8");
  if (s.act_bits < 2 || s.act_bits > 16) bad("activation bits N=" + std::to_string(s.act_bits) + " out of range 2..16");
  if ((s.axe || s.method == Method::ep_init) && s.acc_bits == 0)
    bad(std::string(s.axe ? "axe" : "ep-init") + " needs accumulator bits P (acc_bits > 0)");
  if (s.acc_bits != 0) {
    if (s.acc_bits < 2 || s.acc_bits > 48) bad("accumulator bits P=" + std::to_string(s.acc_bits) + " out of range 2..48");
    const auto r = act_code_range(s.act_bits, s.act_signed);
    if (sign_budget(s.acc_bits, r) < 1) {
      int need = s.acc_bits;
      while (sign_budget(need, r) < 1) ++need;
      bad("accumulator bits P=" + std::to_string(s.acc_bits) + " too small for " + std::to_string(s.act_bits) +
          "-bit " + (s.act_signed ? "signed" : "unsigned") + " inputs: not even one nonzero weight fits (need P >= " +
          std::to_string(need) + ")");
    }
  }
  if (s.tile < 0) bad("tile size T=" + std::to_string(s.tile) + " must be >= 0");
  if (s.tile > 0 && s.acc_bits == 0) bad("tile size T needs accumulator bits P");
  if (s.tile > 0 && in_features % s.tile != 0)
    bad("tile size T=" + std::to_string(s.tile) + " does not divide the layer's " + std::to_string(in_features) +
        " inputs");
  if (!(s.damp >= 0.0 && s.damp <= 1.0)) bad("damp must be in [0, 1]");
  if (s.block < 1) bad("block must be >= 1");
}

double l1_threshold(const std::vector<double>& v, double z) {
  std::vector<double> u(v.size());
  std::transform(v.begin(), v.end(), u.begin(), [](double x) { return std::abs(x); });
  const double norm = std::accumulate(u.begin(), u.end(), 0.0);
  if (norm <= z) return 0.0;
  if (z <= 0.0) return *std::max_element(u.begin(), u.end());
  std::sort(u.begin(), u.end(), std::greater<double>());
  // rho = the last j (1-based) with u_j > (cumsum_j - z) / j; lambda = (cumsum_rho - z) / rho.
  double cum = 0.0, lambda = 0.0;
  for (std::size_t j = 0; j < u.size(); ++j) {
    cum += u[j];
    const double t = (cum - z) / static_cast<double>(j + 1);
    if (u[j] > t) lambda = t;
  }
  return std::max(lambda, 0.0);
}

double axe_tile_threshold(const std::vector<double>& scaled_tile, double z) {
  if (scaled_tile.empty()) return 0.0;
  const double mean =
      std::accumulate(scaled_tile.begin(), scaled_tile.end(), 0.0) / static_cast<double>(scaled_tile.size());
  std::vector<double> centred(scaled_tile.size());
  std::transform(scaled_tile.begin(), scaled_tile.end(), centred.begin(), [&](double x) { return x - mean; });
  return l1_threshold(centred, z);
}

LayerStats::LayerStats(std::int64_t in_features) : in_(in_features) {
  qq_ = torch::zeros({in_, in_}, torch::kFloat64);
}

void LayerStats::add(const at::Tensor& xq, const at::Tensor& xf) {
  if (xq.dim() != 2 || xq.size(1) != in_)
    throw std::invalid_argument("LayerStats: inputs must be [n, " + std::to_string(in_) + "]");
  const auto q = xq.to(torch::kFloat64);
  qq_ += q.t().mm(q);
  if (xf.defined()) {
    if (xf.sizes() != xq.sizes()) throw std::invalid_argument("LayerStats: float and quantized inputs differ in shape");
    if (!qf_.defined()) qf_ = torch::zeros({in_, in_}, torch::kFloat64);
    qf_ += q.t().mm(xf.to(torch::kFloat64));
  }
  n_ += xq.size(0);
}

at::Tensor QuantizedWeight::dequant() const { return q.to(torch::kFloat64) * scale.unsqueeze(1); }

WorstCase worst_case_sums(const at::Tensor& q, CodeRange r, std::int64_t tile) {
  const auto out = q.size(0), in = q.size(1), t = tile > 0 ? tile : in;
  const auto qt = q.to(torch::kInt64).reshape({out, in / t, t});
  const auto pos = qt.clamp_min(0).sum(-1), neg = qt.clamp_max(0).sum(-1);
  return {pos * r.nu + neg * r.mu, pos * r.mu + neg * r.nu};
}

namespace {

std::vector<double> row_tile(const at::Tensor& v, std::int64_t row, std::int64_t start, std::int64_t len) {
  auto a = v.accessor<double, 2>();
  std::vector<double> out(static_cast<std::size_t>(len));
  for (std::int64_t k = 0; k < len; ++k) out[static_cast<std::size_t>(k)] = a[row][start + k];
  return out;
}

// Rounds one column of targets (all output rows at once) to integer weights.
// With AXE it first shrinks each target by its tile's soft threshold, then
// clips it to what the running sums of its tile still allow, so the budget
// holds whatever the later columns do.
class ColumnQuantizer {
 public:
  ColumnQuantizer(const at::Tensor& w, const LayerQuantSpec& s) : axe_(s.axe) {
    const auto out = w.size(0), in = w.size(1);
    qmax_ = static_cast<double>((1 << (s.weight_bits - 1)) - 1);
    qmin_ = -qmax_ - 1.0;
    auto maxabs = w.abs().amax(1);
    scale_ = torch::where(maxabs > 0, maxabs / qmax_, torch::ones_like(maxabs));
    tile_ = s.tile > 0 ? s.tile : in;
    const auto tiles = in / tile_;
    if (s.acc_bits > 0)
      budget_ = static_cast<double>(sign_budget(s.acc_bits, act_code_range(s.act_bits, s.act_signed)));
    if (s.budget_scale && s.acc_bits > 0) {
      // The largest per-sign sum of a row's tiles, in steps, fits the budget:
      // the row keeps its shape at a coarser step instead of being shrunk.
      const auto wt = w.reshape({out, tiles, tile_});
      const auto need = torch::max(wt.clamp_min(0).sum(-1), (-wt).clamp_min(0).sum(-1)).amax(1) / budget_;
      scale_ = torch::max(scale_, need);
    }
    if (s.pow2_scale) scale_ = torch::pow(2.0, torch::ceil(torch::log2(scale_)));
    if (!axe_) return;
    used_pos_ = torch::zeros({out, tiles}, torch::kFloat64);
    used_neg_ = torch::zeros({out, tiles}, torch::kFloat64);
    lambda_pos_ = torch::zeros({out, tiles}, torch::kFloat64);
    lambda_neg_ = torch::zeros({out, tiles}, torch::kFloat64);
    const double z = l1_limit(s.acc_bits, s.act_bits);
    const auto v = (w / scale_.unsqueeze(1)).contiguous();
    auto lp = lambda_pos_.accessor<double, 2>(), ln = lambda_neg_.accessor<double, 2>();
    for (std::int64_t r = 0; r < out; ++r)
      for (std::int64_t t = 0; t < tiles; ++t) {
        const auto tile = row_tile(v, r, t * tile_, tile_);
        // AXE's threshold, raised per sign where that sign alone would still
        // overrun its budget, so the hard clip stays a safety net.
        const double lam = axe_tile_threshold(tile, z);
        std::vector<double> pos, neg;
        for (double x : tile) (x > 0 ? pos : neg).push_back(x);
        lp[r][t] = std::max(lam, l1_threshold(pos, budget_));
        ln[r][t] = std::max(lam, l1_threshold(neg, budget_));
      }
  }

  const at::Tensor& scale() const { return scale_; }
  // What error feedback takes the last column as (integer units).
  const at::Tensor& represented() const { return represented_; }

  // w: [out] float64 targets for input column `col`; returns integer-valued float64.
  at::Tensor quantize(const at::Tensor& w, std::int64_t col) {
    auto v = w / scale_;
    at::Tensor q;
    if (axe_) {
      const auto t = col / tile_;
      const auto orig = v;
      v = torch::where(v > 0, (v - lambda_pos_.select(1, t)).clamp_min(0), (v + lambda_neg_.select(1, t)).clamp_max(0));
      const auto soft = v;
      v = torch::max(torch::min(v, budget_ - used_pos_.select(1, t)), used_neg_.select(1, t) - budget_);
      q = v.round().clamp(qmin_, qmax_);
      // The soft shrink is a decision, not an error: feedback sees q plus
      // what the shrink took, so only rounding and the hard clip are corrected.
      represented_ = q + (orig - soft);
    } else {
      q = v.round().clamp(qmin_, qmax_);
      represented_ = q;
    }
    if (axe_) {
      const auto t = col / tile_;
      used_pos_.select(1, t) += q.clamp_min(0);
      used_neg_.select(1, t) += (-q).clamp_min(0);
    }
    return q;
  }

 private:
  bool axe_;
  double qmin_ = 0, qmax_ = 0, budget_ = 0;
  std::int64_t tile_ = 1;
  at::Tensor scale_, lambda_pos_, lambda_neg_, used_pos_, used_neg_, represented_;
};

QuantizedWeight columnwise_rtn(const at::Tensor& w, const LayerQuantSpec& s) {
  ColumnQuantizer cq(w, s);
  auto q = torch::zeros_like(w);
  for (std::int64_t c = 0; c < w.size(1); ++c) q.select(1, c).copy_(cq.quantize(w.select(1, c), c));
  return {q.to(torch::kInt64), cq.scale()};
}

// EP-init: per row and tile, the positive weights are projected onto
// {sum <= B} and the negative magnitudes likewise (Duchi's threshold), then
// rounded to nearest. Rounding can add up to half a step per weight beyond the
// budget: the baseline shows what a projection alone guarantees.
QuantizedWeight ep_init(const at::Tensor& w, const LayerQuantSpec& s) {
  LayerQuantSpec plain = s;
  plain.axe = false;
  ColumnQuantizer cq(w, plain);
  const auto out = w.size(0), in = w.size(1), tile = s.tile > 0 ? s.tile : in;
  const double budget = static_cast<double>(sign_budget(s.acc_bits, act_code_range(s.act_bits, s.act_signed)));
  auto v = (w / cq.scale().unsqueeze(1)).contiguous();
  auto a = v.accessor<double, 2>();
  for (std::int64_t r = 0; r < out; ++r)
    for (std::int64_t t0 = 0; t0 < in; t0 += tile) {
      std::vector<double> pos, neg;
      for (std::int64_t k = t0; k < t0 + tile; ++k) (a[r][k] > 0 ? pos : neg).push_back(a[r][k]);
      const double lp = l1_threshold(pos, budget), ln = l1_threshold(neg, budget);
      for (std::int64_t k = t0; k < t0 + tile; ++k)
        a[r][k] = a[r][k] > 0 ? std::max(a[r][k] - lp, 0.0) : std::min(a[r][k] + ln, 0.0);
    }
  const double qmax = static_cast<double>((1 << (s.weight_bits - 1)) - 1);
  return {v.round().clamp(-qmax - 1.0, qmax).to(torch::kInt64), cq.scale()};
}

QuantizedWeight optq(const at::Tensor& w_in, const LayerStats& stats, const LayerQuantSpec& s) {
  auto w = w_in.clone();
  const auto in = w.size(1);
  auto h = stats.xqxq() * (2.0 / static_cast<double>(std::max<std::int64_t>(stats.samples(), 1)));
  auto dead = h.diagonal() == 0;
  h.diagonal().masked_fill_(dead, 1.0);
  w.index_put_({torch::indexing::Slice(), dead}, 0.0);
  ColumnQuantizer cq(w, s);  // scales and thresholds from the weights as given
  auto perm = s.act_order ? torch::argsort(h.diagonal(), 0, /*descending=*/true) : torch::arange(in);
  w = w.index_select(1, perm);
  h = h.index_select(0, perm).index_select(1, perm);
  h.diagonal() += s.damp * h.diagonal().mean();
  auto u = at::linalg_cholesky(torch::cholesky_inverse(at::linalg_cholesky(h)), /*upper=*/true);
  auto q = torch::zeros_like(w);
  auto pa = perm.accessor<std::int64_t, 1>();
  using torch::indexing::Slice;
  for (std::int64_t i1 = 0; i1 < in; i1 += s.block) {
    const auto i2 = std::min(i1 + s.block, in), cnt = i2 - i1;
    auto w1 = w.index({Slice(), Slice(i1, i2)}).clone();
    auto err1 = torch::zeros_like(w1);
    auto u1 = u.index({Slice(i1, i2), Slice(i1, i2)});
    for (std::int64_t i = 0; i < cnt; ++i) {
      auto col = w1.select(1, i);
      auto qi = cq.quantize(col, pa[i1 + i]);
      q.select(1, i1 + i).copy_(qi);
      auto err = (col - cq.represented() * cq.scale()) / u1[i][i];
      w1.index({Slice(), Slice(i, cnt)}) -= err.unsqueeze(1) * u1.index({i, Slice(i, cnt)}).unsqueeze(0);
      err1.select(1, i).copy_(err);
    }
    if (i2 < in) w.index({Slice(), Slice(i2, in)}) -= err1.mm(u.index({Slice(i1, i2), Slice(i2, in)}));
  }
  auto inv = torch::argsort(perm);
  return {q.index_select(1, inv).to(torch::kInt64), cq.scale()};
}

// GPFQ in matrix form: with H~ = Xq^T Xq and G = Xq^T Xf, the target of input t
// is (sum_{j<=t} w_j G[t,j] - sum_{j<t} q_j H~[t,j]) / H~[t,t].
QuantizedWeight gpfq(const at::Tensor& w_in, const LayerStats& stats, const LayerQuantSpec& s) {
  auto w = w_in.clone();
  const auto in = w.size(1);
  const auto ht = stats.xqxq(), g = stats.xqxf();
  auto dead = ht.diagonal() == 0;
  w.index_put_({torch::indexing::Slice(), dead}, 0.0);
  ColumnQuantizer cq(w, s);
  auto deq = torch::zeros_like(w), q = torch::zeros_like(w);
  auto diag = ht.diagonal().contiguous();
  auto da = diag.accessor<double, 1>();
  using torch::indexing::Slice;
  for (std::int64_t t = 0; t < in; ++t) {
    at::Tensor target;
    if (da[t] <= 0) {
      target = w.select(1, t);
    } else {
      target = (w.index({Slice(), Slice(0, t + 1)}).mv(g.index({t, Slice(0, t + 1)})) -
                deq.index({Slice(), Slice(0, t)}).mv(ht.index({t, Slice(0, t)}))) /
               da[t];
    }
    auto qt = cq.quantize(target, t);
    q.select(1, t).copy_(qt);
    deq.select(1, t).copy_(cq.represented() * cq.scale());
  }
  return {q.to(torch::kInt64), cq.scale()};
}

}  // namespace

QuantizedWeight quantize_weight(const at::Tensor& w_any, const LayerStats* stats, const LayerQuantSpec& s) {
  if (w_any.dim() != 2) throw std::invalid_argument("quantize_weight: weight must be [out, in]");
  check_spec(s, w_any.size(1));
  const auto w = w_any.to(torch::kFloat64);
  if ((s.method == Method::optq || s.method == Method::gpfq) && (!stats || stats->samples() == 0))
    throw std::invalid_argument("ptq: " + method_name(s.method) + " needs calibration inputs");
  if (s.method == Method::gpfq && !stats->xqxf().defined())
    throw std::invalid_argument("ptq: gpfq needs the float model's inputs beside the quantized ones");
  switch (s.method) {
    case Method::rtn: return columnwise_rtn(w, s);
    case Method::ep_init: return ep_init(w, s);
    case Method::optq: return optq(w, *stats, s);
    case Method::gpfq: return gpfq(w, *stats, s);
  }
  throw std::logic_error("unreachable");
}

}  // namespace seam::ptq
