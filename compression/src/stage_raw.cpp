// none / fp16 / bf16: raw element bytes, optionally narrowed first.
#include <ATen/ATen.h>

#include <cmath>
#include <cstring>
#include <optional>

#include "seam/compression/dtype.hpp"
#include "stage.hpp"

namespace seam::compression::detail {
namespace {

class RawStage final : public Stage {
 public:
  RawStage(const char* name, std::optional<at::ScalarType> target) : name_(name), target_(target) {}

  std::vector<Part> encode(std::vector<Part> in, ByteWriter& meta, StageCall&) const override {
    require_tensor_parts(in, name_);
    meta.put<std::uint32_t>(static_cast<std::uint32_t>(in.size()));
    std::vector<Part> out;
    out.reserve(in.size());
    for (auto& p : in) {
      at::Tensor t = p.tensor;
      if (target_) {
        if (t.is_floating_point()) check_range(t);
        t = t.to(*target_);
      }
      t = t.contiguous();
      meta.put<std::uint8_t>(static_cast<std::uint8_t>(to_wire(t.scalar_type())));
      meta.put_shape(shape_of(t));
      std::vector<std::uint8_t> b(t.nbytes());
      if (!b.empty()) std::memcpy(b.data(), t.data_ptr(), b.size());
      out.push_back(Part::of_bytes(std::move(b)));
    }
    return out;
  }

  std::vector<Part> decode(std::vector<Part> in, ByteReader& meta, StageCall&) const override {
    auto n = meta.get<std::uint32_t>();
    require_part_count(in, n, name_, meta);
    std::vector<Part> out;
    for (auto& p : in) {
      auto raw = meta.get<std::uint8_t>();
      if (!transport::wire_dtype_valid(raw)) meta.fail("invalid dtype");
      auto st = from_wire(static_cast<transport::WireDType>(raw));
      if (target_ && st != *target_) meta.fail(std::string(name_) + " part has the wrong dtype");
      auto shape = meta.get_shape();
      auto expect = static_cast<std::size_t>(shape_numel(shape)) * c10::elementSize(st);
      if (!p.is_bytes || p.bytes.size() != expect)
        meta.fail(std::string(name_) + " part has " + std::to_string(p.bytes.size()) + " bytes, shape needs " +
                  std::to_string(expect));
      at::Tensor t = at::empty(shape, at::TensorOptions().dtype(st));
      if (expect) std::memcpy(t.data_ptr(), p.bytes.data(), expect);
      out.push_back(Part::of_tensor(t));
    }
    return out;
  }

 private:
  // NaN and Inf are refused as quant refuses them; values beyond fp16's range
  // would silently become Inf.
  void check_range(const at::Tensor& t) const {
    if (!t.numel()) return;
    const double m = t.abs().max().item<double>();  // NaN propagates through max
    if (!std::isfinite(m)) throw CodecError(std::string(name_) + ": input contains NaN or Inf");
    if (*target_ == at::kHalf && m > 65504.0)
      throw CodecError("fp16: input magnitude exceeds fp16 range (65504); use bf16 or quant");
  }

  const char* name_;
  std::optional<at::ScalarType> target_;
};

}  // namespace

StageInfo none_stage_info() {
  return {"none", 1, PartKind::tensors, PartKind::bytes, "raw element bytes in the tensor's own dtype", {},
          [](const Params&) { return std::make_unique<RawStage>("none", std::nullopt); }};
}

StageInfo fp16_stage_info() {
  return {"fp16", 1, PartKind::tensors, PartKind::bytes, "IEEE half precision (2 bytes per element)", {},
          [](const Params&) { return std::make_unique<RawStage>("fp16", at::kHalf); }};
}

StageInfo bf16_stage_info() {
  return {"bf16", 1, PartKind::tensors, PartKind::bytes, "bfloat16 (2 bytes per element, fp32 range)", {},
          [](const Params&) { return std::make_unique<RawStage>("bf16", at::kBFloat16); }};
}

}  // namespace seam::compression::detail
