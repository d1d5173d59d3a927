// zstd: lossless last stage over all packed bytes; stores raw when that is smaller.
#include <zstd.h>

#include "stage.hpp"

namespace seam::compression::detail {
namespace {

constexpr std::uint64_t kMaxRawBytes = std::uint64_t{1} << 34;

class ZstdStage final : public Stage {
 public:
  explicit ZstdStage(int level) : level_(level) {}

  std::vector<Part> encode(std::vector<Part> in, ByteWriter& meta, StageCall&) const override {
    require_byte_parts(in, "zstd");
    std::vector<std::uint8_t> joined;
    std::size_t total = 0;
    for (const auto& p : in) total += p.bytes.size();
    joined.reserve(total);
    meta.put<std::uint32_t>(static_cast<std::uint32_t>(in.size()));
    for (const auto& p : in) {
      meta.put<std::uint64_t>(p.bytes.size());
      joined.insert(joined.end(), p.bytes.begin(), p.bytes.end());
    }
    std::vector<std::uint8_t> z(ZSTD_compressBound(total));
    std::size_t zn = ZSTD_compress(z.data(), z.size(), joined.data(), total, level_);
    const bool use_z = !ZSTD_isError(zn) && zn < total;
    meta.put<std::uint8_t>(use_z ? 1 : 0);
    if (!use_z) return {Part::of_bytes(std::move(joined))};
    z.resize(zn);
    return {Part::of_bytes(std::move(z))};
  }

  std::vector<Part> decode(std::vector<Part> in, ByteReader& meta, StageCall&) const override {
    require_part_count(in, 1, "zstd", meta);
    auto n = meta.get<std::uint32_t>();
    if (n > 256) meta.fail("zstd: part count out of range");
    std::vector<std::uint64_t> lens(n);
    std::uint64_t total = 0;
    for (auto& l : lens) {
      l = meta.get<std::uint64_t>();
      if (l > kMaxRawBytes || total + l > kMaxRawBytes) meta.fail("zstd: part lengths exceed limit");
      total += l;
    }
    auto flag = meta.get<std::uint8_t>();
    if (flag > 1) meta.fail("zstd: bad flag");
    std::vector<std::uint8_t> raw;
    if (flag == 0) {
      if (in[0].bytes.size() != total) meta.fail("zstd: stored size differs from part lengths");
      raw = std::move(in[0].bytes);
    } else {
      // The frame must declare exactly the size the metadata promises: we allocate
      // only after both agree, and only what the metadata (bounded) says.
      auto declared = ZSTD_getFrameContentSize(in[0].bytes.data(), in[0].bytes.size());
      if (declared == ZSTD_CONTENTSIZE_ERROR || declared == ZSTD_CONTENTSIZE_UNKNOWN || declared != total)
        meta.fail("zstd: frame size does not match part lengths");
      raw.resize(total);
      std::size_t got = ZSTD_decompress(raw.data(), raw.size(), in[0].bytes.data(), in[0].bytes.size());
      if (ZSTD_isError(got) || got != total)
        meta.fail(std::string("zstd: corrupt frame: ") + (ZSTD_isError(got) ? ZSTD_getErrorName(got) : "short"));
    }
    std::vector<Part> out;
    std::size_t off = 0;
    for (auto l : lens) {
      out.push_back(Part::of_bytes(std::vector<std::uint8_t>(raw.begin() + off, raw.begin() + off + l)));
      off += l;
    }
    return out;
  }

 private:
  int level_;
};

}  // namespace

StageInfo zstd_stage_info() {
  return {"zstd", 1, PartKind::bytes, PartKind::bytes, "lossless zstd over the packed bytes (raw if not smaller)",
          {{"level", "3", {}, 1, 19, "compression level"}},
          [](const Params& p) { return std::make_unique<ZstdStage>(static_cast<int>(param_int(p, "level"))); },
          PartFlow::joins};
}

}  // namespace seam::compression::detail
