// quant: uniform b-bit quantization of every tensor part.
#include <ATen/ATen.h>

#include "quant_core.hpp"

namespace seam::compression::detail {
namespace {

class QuantStage final : public Stage {
 public:
  explicit QuantStage(QuantConfig c) : c_(c) {}

  std::vector<Part> encode(std::vector<Part> in, ByteWriter& meta, StageCall& call) const override {
    require_tensor_parts(in, "quant");
    meta.put<std::uint32_t>(static_cast<std::uint32_t>(in.size()));
    std::vector<Part> out;
    for (std::size_t i = 0; i < in.size(); ++i) {
      at::Tensor x = float_contiguous(in[i].tensor);
      meta.put_shape(shape_of(x));
      std::vector<std::uint8_t> b;
      quantize_append(x, c_, mix_seed(call.ctx.seed, call.ctx.step, call.index, i), b);
      out.push_back(Part::of_bytes(std::move(b)));
    }
    return out;
  }

  std::vector<Part> decode(std::vector<Part> in, ByteReader& meta, StageCall&) const override {
    auto n = meta.get<std::uint32_t>();
    require_part_count(in, n, "quant", meta);
    std::vector<Part> out;
    for (auto& p : in) {
      auto shape = meta.get_shape();
      if (!p.is_bytes) meta.fail("quant part is not bytes");
      out.push_back(Part::of_tensor(dequantize(p.bytes.data(), p.bytes.size(), shape, c_)));
    }
    return out;
  }

 private:
  QuantConfig c_;
};

}  // namespace

StageInfo quant_stage_info() {
  return {"quant", 1, PartKind::tensors, PartKind::bytes,
          "uniform b-bit quantization, dense bit packing, optional ACIQ/DS-ACIQ clipping",
          quant_param_specs(QuantConfig{}),
          [](const Params& p) { return std::make_unique<QuantStage>(quant_config_from(p)); }};
}

}  // namespace seam::compression::detail
