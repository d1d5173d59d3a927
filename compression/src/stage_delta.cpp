// delta: AC-SGD activation compression (Wang et al., NeurIPS 2022). Each sample
// has a buffer m on both sides; first sight sends the activation at full
// precision, later calls send Q(a - m) and both sides do m += Q^-1(c) with the
// same dequantize() call, so the fp16 buffers stay bit-identical.
#include <ATen/ATen.h>

#include <cmath>
#include <cstring>
#include <unordered_set>

#include "delta_store.hpp"
#include "quant_core.hpp"
#include "seam/compression/delta.hpp"

namespace seam::compression::detail {
namespace {

struct DeltaState final : StageState {
  DeltaState(const DeltaStoreOptions& o) : store(o.ram_limit_bytes, o.spill_dir) {}
  DeltaStore store;
  std::size_t ram_bytes() const override { return store.ram_bytes(); }
  std::size_t disk_bytes() const override { return store.disk_bytes(); }
  // slot elements, count, then (id, fp16 slot) in ascending id order.
  void save(std::vector<std::uint8_t>& out) const override {
    ByteWriter w(out);
    const auto ids = store.ids();
    w.put<std::int64_t>(store.slot_elems());
    w.put<std::uint64_t>(ids.size());
    const std::size_t bytes = static_cast<std::size_t>(std::max<std::int64_t>(0, store.slot_elems())) * 2;
    for (auto id : ids) {
      w.put<std::int64_t>(id);
      w.put_bytes(store.find(id), bytes);
    }
  }
};

DeltaState& state_of(StageCall& call) {
  auto& o = call.ctx.delta_store;
  return call.ctx.state<DeltaState>(call.index, "delta", [&] { return std::make_unique<DeltaState>(o); });
}

at::Tensor gather(const DeltaStore& s, const std::vector<std::int64_t>& ids, std::int64_t e) {
  at::Tensor t = at::empty({static_cast<std::int64_t>(ids.size()), e}, at::TensorOptions().dtype(at::kHalf));
  auto* dst = static_cast<std::uint8_t*>(t.data_ptr());
  for (std::size_t i = 0; i < ids.size(); ++i) std::memcpy(dst + i * e * 2, s.find(ids[i]), e * 2);
  return t.to(at::kFloat);
}

void scatter(DeltaStore& s, const std::vector<std::int64_t>& ids, const at::Tensor& values, std::int64_t e) {
  at::Tensor h = values.reshape({static_cast<std::int64_t>(ids.size()), e}).to(at::kHalf).contiguous();
  auto* src = static_cast<const std::uint8_t*>(h.data_ptr());
  for (std::size_t i = 0; i < ids.size(); ++i) {
    std::uint16_t* slot = s.find(ids[i]);
    if (!slot) slot = s.insert(ids[i], e);
    std::memcpy(slot, src + i * e * 2, e * 2);
  }
}

class DeltaStage final : public Stage {
 public:
  explicit DeltaStage(QuantConfig c) : c_(c) {}

  std::vector<Part> encode(std::vector<Part> in, ByteWriter& meta, StageCall& call) const override {
    require_tensor_parts(in, "delta");
    if (in.size() != 1) throw CodecError("delta: expects one tensor (place it before lowrank, not after)");
    at::Tensor x = float_contiguous(in[0].tensor);
    if (x.dim() < 1 || x.size(0) == 0) throw CodecError("delta: needs a non-empty batch dimension");
    // One min/max pass: NaN propagates and Inf shows at an end, so both finite => all finite.
    auto [mn, mx] = at::aminmax(x);
    if (!std::isfinite(mn.item<float>()) || !std::isfinite(mx.item<float>()))
      throw CodecError("delta: input contains NaN or Inf");
    const auto shape = shape_of(x);
    const std::int64_t b = shape[0], e = x.numel() / b;
    const auto& ids = call.ctx.sample_ids;
    check_ids(ids, b);
    DeltaState& st = state_of(call);
    meta.put_shape(shape);
    std::vector<std::int64_t> fresh_rows, known_rows, fresh_ids, known_ids;
    for (std::int64_t i = 0; i < b; ++i) {
      const bool known = st.store.find(ids[i]) != nullptr;
      meta.put<std::uint8_t>(known ? 0 : 1);
      (known ? known_rows : fresh_rows).push_back(i);
      (known ? known_ids : fresh_ids).push_back(ids[i]);
    }
    at::Tensor x2 = x.reshape({b, e});
    at::Tensor fresh = x2.index_select(0, index_tensor(fresh_rows)).contiguous();
    std::vector<std::uint8_t> raw(fresh.nbytes());
    if (!raw.empty()) std::memcpy(raw.data(), fresh.data_ptr(), raw.size());

    std::vector<std::uint8_t> q;
    if (!known_rows.empty()) {
      at::Tensor m = gather(st.store, known_ids, e);
      at::Tensor resid = (x2.index_select(0, index_tensor(known_rows)) - m).reshape(residual_shape(shape, known_rows.size()));
      quantize_append(resid.contiguous(), c_, mix_seed(call.ctx.seed, call.ctx.step, call.index, 0), q);
      // Update from the bytes that travel, exactly as the decoder will.
      at::Tensor deq = dequantize(q.data(), q.size(), shape_of(resid), c_).reshape({-1, e});
      scatter(st.store, known_ids, m + deq, e);
    }
    if (!fresh_rows.empty()) scatter(st.store, fresh_ids, fresh, e);
    std::vector<Part> out;
    out.push_back(Part::of_bytes(std::move(raw)));
    out.push_back(Part::of_bytes(std::move(q)));
    return out;
  }

  std::vector<Part> decode(std::vector<Part> in, ByteReader& meta, StageCall& call) const override {
    require_part_count(in, 2, "delta", meta);
    const auto shape = meta.get_shape();
    if (shape.empty() || shape[0] == 0) meta.fail("delta: empty batch");
    const std::int64_t b = shape[0], e = shape_numel(shape) / b;
    const auto& ids = call.ctx.sample_ids;
    if (static_cast<std::int64_t>(ids.size()) != b)
      meta.fail("delta: context has " + std::to_string(ids.size()) + " sample ids for a batch of " + std::to_string(b));
    DeltaState& st = state_of(call);
    std::vector<std::int64_t> fresh_rows, known_rows, fresh_ids, known_ids;
    for (std::int64_t i = 0; i < b; ++i) {
      auto flag = meta.get<std::uint8_t>();
      if (flag > 1) meta.fail("delta: bad row flag");
      if (flag == 0 && !st.store.find(ids[i]))
        meta.fail("delta: no buffer for sample " + std::to_string(ids[i]) + " (encoder and decoder out of sync)");
      (flag ? fresh_rows : known_rows).push_back(i);
      (flag ? fresh_ids : known_ids).push_back(ids[i]);
    }
    if (st.store.size() && st.store.slot_elems() != e) meta.fail("delta: per-sample size differs from buffers");
    const std::size_t raw_expect = fresh_rows.size() * static_cast<std::size_t>(e) * 4;
    if (!in[0].is_bytes || in[0].bytes.size() != raw_expect) meta.fail("delta: full-precision part has wrong size");
    at::Tensor out = at::empty({b, e}, at::TensorOptions().dtype(at::kFloat));
    if (!fresh_rows.empty()) {
      at::Tensor fresh = at::empty({static_cast<std::int64_t>(fresh_rows.size()), e}, at::TensorOptions().dtype(at::kFloat));
      std::memcpy(fresh.data_ptr(), in[0].bytes.data(), raw_expect);
      out.index_copy_(0, index_tensor(fresh_rows), fresh);
      scatter(st.store, fresh_ids, fresh, e);
    }
    if (!known_rows.empty()) {
      auto rshape = residual_shape(shape, known_rows.size());
      if (!in[1].is_bytes || in[1].bytes.size() != quantized_size(rshape, c_)) meta.fail("delta: residual part has wrong size");
      at::Tensor m = gather(st.store, known_ids, e);
      at::Tensor deq = dequantize(in[1].bytes.data(), in[1].bytes.size(), rshape, c_).reshape({-1, e});
      at::Tensor y = m + deq;
      out.index_copy_(0, index_tensor(known_rows), y);
      scatter(st.store, known_ids, y, e);
    } else if (!in[1].bytes.empty()) {
      meta.fail("delta: residual bytes without known samples");
    }
    return {Part::of_tensor(out.reshape(shape))};
  }

 private:
  static void check_ids(const std::vector<std::int64_t>& ids, std::int64_t b) {
    if (static_cast<std::int64_t>(ids.size()) != b)
      throw CodecError("delta: context has " + std::to_string(ids.size()) + " sample ids for a batch of " +
                       std::to_string(b) + " (set CodecContext::sample_ids)");
    std::unordered_set<std::int64_t> seen(ids.begin(), ids.end());
    if (static_cast<std::int64_t>(seen.size()) != b) throw CodecError("delta: duplicate sample ids in one batch");
  }
  static at::Tensor index_tensor(const std::vector<std::int64_t>& rows) {
    return at::tensor(rows, at::TensorOptions().dtype(at::kLong));
  }
  static std::vector<std::int64_t> residual_shape(std::vector<std::int64_t> shape, std::size_t rows) {
    shape[0] = static_cast<std::int64_t>(rows);
    return shape;
  }

  QuantConfig c_;
};

QuantConfig delta_defaults() {
  QuantConfig c;
  c.bits = 4;
  c.scale = ScaleMode::channel;
  c.mode = RangeMode::sym;
  c.fp16_scales = true;
  return c;
}

}  // namespace

std::unique_ptr<StageState> load_delta_state(ByteReader& r, const DeltaStoreOptions& o) {
  auto st = std::make_unique<DeltaState>(o);
  const auto elems = r.get<std::int64_t>();
  const auto n = r.get<std::uint64_t>();
  if (elems < -1 || elems > kMaxElements) r.fail("delta slot size " + std::to_string(elems) + " out of range");
  const std::size_t bytes = static_cast<std::size_t>(std::max<std::int64_t>(0, elems)) * 2;
  if (n > 0 && (elems <= 0 || n > r.remaining() / (8 + bytes))) r.fail("delta state truncated");
  for (std::uint64_t i = 0; i < n; ++i) {
    const auto id = r.get<std::int64_t>();
    if (st->store.find(id)) r.fail("delta sample " + std::to_string(id) + " saved twice");
    std::memcpy(st->store.insert(id, elems), r.take(bytes), bytes);
  }
  return st;
}

StageInfo delta_stage_info() {
  return {"delta", 1, PartKind::tensors, PartKind::bytes,
          "AC-SGD: full precision on first sight of a sample, then Q(a - m) with m += Q^-1(c) on both sides",
          quant_param_specs(delta_defaults()),
          [](const Params& p) { return std::make_unique<DeltaStage>(quant_config_from(p)); },
          PartFlow::single_to_two};
}

}  // namespace seam::compression::detail

namespace seam::compression {

at::Tensor delta_buffer(CodecContext& ctx, int stage_index, std::int64_t sample_id) {
  DeltaStoreOptions o = ctx.delta_store;
  auto& st = ctx.state<detail::DeltaState>(stage_index, "delta", [&] { return std::make_unique<detail::DeltaState>(o); });
  const std::uint16_t* p = st.store.find(sample_id);
  if (!p) return {};
  at::Tensor t = at::empty({st.store.slot_elems()}, at::TensorOptions().dtype(at::kHalf));
  std::memcpy(t.data_ptr(), p, t.nbytes());
  return t;
}

std::size_t delta_buffer_count(CodecContext& ctx, int stage_index) {
  DeltaStoreOptions o = ctx.delta_store;
  return ctx.state<detail::DeltaState>(stage_index, "delta", [&] { return std::make_unique<detail::DeltaState>(o); })
      .store.size();
}

}  // namespace seam::compression
