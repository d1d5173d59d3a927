// Codec chains: spec parsing and the self-describing message format.
#include "seam/compression/codec.hpp"
#include "seam/compression/message_info.hpp"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>


#include "seam/compression/dtype.hpp"
#include "stage.hpp"

namespace seam::compression {

namespace detail {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the codec format is little-endian");

constexpr std::uint32_t kMessageMagic = 0x31435153;  // "SQC1"
constexpr int kMaxStages = 16;
constexpr std::uint32_t kMaxParts = 256;

std::vector<std::int64_t> shape_of(const at::Tensor& t) {
  return std::vector<std::int64_t>(t.sizes().begin(), t.sizes().end());
}

at::Tensor float_contiguous(const at::Tensor& t) { return t.to(at::kFloat).contiguous(); }

void require_tensor_parts(const std::vector<Part>& in, const char* stage) {
  for (const auto& p : in)
    if (p.is_bytes) throw CodecError(std::string(stage) + ": expects tensors, got packed bytes");
}

void require_byte_parts(const std::vector<Part>& in, const char* stage) {
  for (const auto& p : in)
    if (!p.is_bytes) throw CodecError(std::string(stage) + ": expects packed bytes, got a tensor");
}

void require_part_count(const std::vector<Part>& in, std::size_t n, const char* stage, ByteReader& meta) {
  if (in.size() != n)
    meta.fail(std::string(stage) + " expects " + std::to_string(n) + " parts, message has " +
              std::to_string(in.size()));
}

std::uint64_t mix_seed(std::uint64_t seed, std::int64_t step, int index, std::uint64_t salt) {
  // splitmix64 over the fields: cheap, well mixed, identical on both sides.
  auto mix = [](std::uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  };
  return mix(mix(mix(mix(seed) ^ static_cast<std::uint64_t>(step)) ^ static_cast<std::uint64_t>(index)) ^ salt);
}

struct BoundStage {
  const StageInfo* info;
  Params params;
  std::string canonical;  // "name:k=v,..."
  std::unique_ptr<Stage> impl;
};

static BoundStage bind_stage(const StageInfo& info, const std::map<std::string, std::string>& given) {
  BoundStage b;
  b.info = &info;
  b.params = validate_params(info, given);
  auto cp = canonical_params(info, b.params);
  b.canonical = info.name + (cp.empty() ? "" : ":" + cp);
  b.impl = info.make(b.params);
  return b;
}

static std::string stage_names() {
  std::string s;
  for (const auto& i : stage_registry()) s += (s.empty() ? "" : ", ") + i.name;
  return s;
}

static const StageInfo& stage_or_throw(const std::string& name) {
  const StageInfo* info = find_stage(name);
  if (!info) throw CodecError("unknown codec stage '" + name + "'; known stages: " + stage_names());
  return *info;
}

// Checks that each stage accepts what the previous one produces; appends an
// implicit `none` when the chain would end on tensors. Then holds the chain to
// the limits the decoder enforces, so a spec that parses always decodes.
static void check_composition(std::vector<BoundStage>& stages) {
  PartKind kind = PartKind::tensors;
  for (const auto& s : stages) {
    if (s.info->input != kind) {
      throw CodecError("stage '" + s.info->name + "' needs " +
                       (s.info->input == PartKind::tensors ? "tensors" : "packed bytes") +
                       " but follows a stage that produces " +
                       (kind == PartKind::tensors ? "tensors" : "packed bytes") +
                       " (byte stages such as zstd go last)");
    }
    kind = s.info->output;
  }
  if (kind == PartKind::tensors) stages.push_back(bind_stage(stage_or_throw("none"), {}));
  if (static_cast<int>(stages.size()) > kMaxStages)
    throw CodecError("codec spec has " + std::to_string(stages.size()) + " stages" +
                     (kind == PartKind::tensors ? " (with the implicit final none)" : "") + "; at most " +
                     std::to_string(kMaxStages) + " are allowed");
  std::uint64_t parts = 1;
  for (const auto& s : stages) {
    switch (s.info->flow) {
      case PartFlow::same: break;
      case PartFlow::doubles: parts *= 2; break;
      case PartFlow::joins: parts = 1; break;
      case PartFlow::single_to_two:
        if (parts != 1)
          throw CodecError("stage '" + s.info->name + "' takes one tensor but follows stages that split it into " +
                           std::to_string(parts) + " parts (place it before lowrank)");
        parts = 2;
        break;
    }
    if (parts > kMaxParts)
      throw CodecError("codec spec splits the tensor into more than " + std::to_string(kMaxParts) +
                       " parts at stage '" + s.info->name +
                       "' (each lowrank doubles the parts); use fewer lowrank stages");
  }
}

// "k=v,k=v" -> map; shared by spec strings and the params recorded in messages.
static std::map<std::string, std::string> parse_params(const std::string& stage, const std::string& kvs) {
  std::map<std::string, std::string> given;
  std::size_t ks = 0;
  while (true) {
    auto comma = kvs.find(',', ks);
    std::string kv = kvs.substr(ks, comma == std::string::npos ? std::string::npos : comma - ks);
    auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == kv.size())
      throw CodecError("stage '" + stage + "': parameter '" + kv + "' is not key=value");
    auto key = kv.substr(0, eq);
    if (given.count(key)) throw CodecError("stage '" + stage + "': parameter '" + key + "' given twice");
    given[key] = kv.substr(eq + 1);
    if (comma == std::string::npos) break;
    ks = comma + 1;
  }
  return given;
}

static std::vector<BoundStage> parse_spec(const std::string& spec) {
  if (spec.empty()) throw CodecError("empty codec spec; use \"none\" for raw tensors");
  std::vector<BoundStage> stages;
  std::size_t start = 0;
  while (true) {
    auto plus = spec.find('+', start);
    std::string part = spec.substr(start, plus == std::string::npos ? std::string::npos : plus - start);
    if (part.empty()) throw CodecError("codec spec '" + spec + "' has an empty stage");
    auto colon = part.find(':');
    std::string name = part.substr(0, colon);
    std::map<std::string, std::string> given;
    if (colon != std::string::npos) {
      std::string kvs = part.substr(colon + 1);
      if (kvs.empty()) throw CodecError("stage '" + name + "' has ':' but no parameters");
      given = parse_params(name, kvs);
    }
    // Bounds the work on a long spec; check_composition gives the exact limit.
    if (static_cast<int>(stages.size()) > kMaxStages)
      throw CodecError("codec spec has more than " + std::to_string(kMaxStages) + " stages");
    stages.push_back(bind_stage(stage_or_throw(name), given));
    if (plus == std::string::npos) break;
    start = plus + 1;
  }
  check_composition(stages);
  return stages;
}

static std::string join_spec(const std::vector<BoundStage>& stages) {
  std::string s;
  for (const auto& b : stages) s += (s.empty() ? "" : "+") + b.canonical;
  return s;
}

// Everything a message says before its parts.
struct ParsedMessage {
  transport::WireDType dtype;
  std::vector<std::int64_t> shape;
  std::vector<BoundStage> stages;
  std::vector<std::pair<const std::uint8_t*, std::size_t>> metas;
  std::vector<Part> parts;
};

static ParsedMessage parse_message(const std::uint8_t* data, std::size_t size, bool copy_parts) {
  ByteReader r(data, size, "codec message");
  if (r.get<std::uint32_t>() != kMessageMagic) r.fail("bad magic (not a Seam codec message)");
  ParsedMessage m;
  auto dt = r.get<std::uint8_t>();
  if (!transport::wire_dtype_valid(dt)) r.fail("invalid dtype " + std::to_string(dt));
  m.dtype = static_cast<transport::WireDType>(dt);
  if (m.dtype != transport::WireDType::f32 && m.dtype != transport::WireDType::f16 &&
      m.dtype != transport::WireDType::bf16)
    r.fail("dtype must be f32, f16 or bf16");
  m.shape = r.get_shape();
  auto nstages = r.get<std::uint8_t>();
  if (nstages == 0 || nstages > kMaxStages) r.fail("stage count " + std::to_string(nstages) + " out of range");
  for (int i = 0; i < nstages; ++i) {
    auto name = r.get_str8();
    auto version = r.get<std::uint8_t>();
    auto params = r.get_str16();
    auto meta_len = r.get<std::uint32_t>();
    auto* meta = r.take(meta_len);
    const StageInfo* info = find_stage(name);
    if (!info) r.fail("unknown stage '" + name + "'");
    if (version != info->version)
      r.fail("stage '" + name + "' version " + std::to_string(version) + " is not supported (this build has v" +
             std::to_string(info->version) + ")");
    try {
      m.stages.push_back(bind_stage(*info, params.empty() ? std::map<std::string, std::string>{}
                                                          : parse_params(name, params)));
    } catch (const DecodeError&) {
      throw;
    } catch (const CodecError& e) {
      r.fail(e.what());
    }
    m.metas.emplace_back(meta, meta_len);
  }
  auto nparts = r.get<std::uint32_t>();
  if (nparts > kMaxParts) r.fail("part count " + std::to_string(nparts) + " out of range");
  for (std::uint32_t i = 0; i < nparts; ++i) {
    auto len = r.get<std::uint64_t>();
    if (len > r.remaining()) r.fail("part length " + std::to_string(len) + " exceeds message");
    auto* p = r.take(static_cast<std::size_t>(len));
    if (copy_parts) m.parts.push_back(Part::of_bytes(std::vector<std::uint8_t>(p, p + len)));
  }
  r.expect_end();
  return m;
}

class Chain final : public Codec {
 public:
  explicit Chain(std::vector<BoundStage> stages) : stages_(std::move(stages)), spec_(join_spec(stages_)) {}

  const std::string& spec() const override { return spec_; }

  std::vector<std::uint8_t> encode(const at::Tensor& x, CodecContext& ctx) const override {
    if (!x.defined()) throw CodecError("encode: undefined tensor");
    auto st = x.scalar_type();
    if (st != at::kFloat && st != at::kHalf && st != at::kBFloat16)
      throw CodecError(std::string("encode: dtype ") + c10::toString(st) + " unsupported (fp32, fp16, bf16)");
    if (x.dim() > kMaxDims) throw CodecError("encode: tensor has more than 8 dims");
    std::vector<std::vector<std::uint8_t>> metas(stages_.size());
    std::vector<Part> parts{Part::of_tensor(x.contiguous())};
    try {
      for (std::size_t i = 0; i < stages_.size(); ++i) {
        ByteWriter w(metas[i]);
        StageCall call{ctx, static_cast<int>(i)};
        parts = stages_[i].impl->encode(std::move(parts), w, call);
      }
    } catch (const c10::Error& e) {
      throw CodecError(std::string("encode failed in LibTorch: ") + e.what_without_backtrace());
    }
    std::vector<std::uint8_t> out;
    std::size_t total = 64;
    for (const auto& p : parts) total += p.bytes.size() + 8;
    for (const auto& m : metas) total += m.size() + 64;
    out.reserve(total);
    ByteWriter w(out);
    w.put<std::uint32_t>(kMessageMagic);
    w.put<std::uint8_t>(static_cast<std::uint8_t>(to_wire(st)));
    w.put_shape(shape_of(x));
    w.put<std::uint8_t>(static_cast<std::uint8_t>(stages_.size()));
    for (std::size_t i = 0; i < stages_.size(); ++i) {
      const auto& s = stages_[i];
      w.put_str8(s.info->name);
      w.put<std::uint8_t>(s.info->version);
      w.put_str16(canonical_params(*s.info, s.params));
      w.put<std::uint32_t>(static_cast<std::uint32_t>(metas[i].size()));
      w.put_bytes(metas[i].data(), metas[i].size());
    }
    w.put<std::uint32_t>(static_cast<std::uint32_t>(parts.size()));
    for (const auto& p : parts) {
      w.put<std::uint64_t>(p.bytes.size());
      w.put_bytes(p.bytes.data(), p.bytes.size());
    }
    return out;
  }

  at::Tensor decode(const std::uint8_t* data, std::size_t size, CodecContext& ctx) const override {
    ParsedMessage m = parse_message(data, size, /*copy_parts=*/true);
    if (join_spec(m.stages) != spec_)
      throw DecodeError("codec message was encoded with '" + join_spec(m.stages) + "', expected '" + spec_ + "'");
    return run_decode(m, stages_, ctx);
  }

  static at::Tensor run_decode(ParsedMessage& m, const std::vector<BoundStage>& stages, CodecContext& ctx) {
    std::vector<Part> parts = std::move(m.parts);
    try {
      for (std::size_t k = stages.size(); k-- > 0;) {
        ByteReader meta(m.metas[k].first, m.metas[k].second, "codec stage metadata");
        StageCall call{ctx, static_cast<int>(k)};
        parts = stages[k].impl->decode(std::move(parts), meta, call);
        meta.expect_end();
      }
    } catch (const c10::Error& e) {
      throw DecodeError(std::string("decode failed in LibTorch: ") + e.what_without_backtrace());
    }
    if (parts.size() != 1 || parts[0].is_bytes) throw DecodeError("codec message does not decode to one tensor");
    at::Tensor t = parts[0].tensor;
    if (shape_of(t) != m.shape) throw DecodeError("decoded shape differs from the message's shape");
    return t.to(from_wire(m.dtype));
  }

 private:
  std::vector<BoundStage> stages_;
  std::string spec_;
};

}  // namespace detail

std::size_t CodecContext::state_ram_bytes() const {
  std::size_t n = 0;
  for (const auto& [k, s] : states_) n += s->ram_bytes();
  return n;
}

std::size_t CodecContext::state_disk_bytes() const {
  std::size_t n = 0;
  for (const auto& [k, s] : states_) n += s->disk_bytes();
  return n;
}

void StageState::save(std::vector<std::uint8_t>&) const {}

namespace {
constexpr std::uint32_t kStateMagic = 0x31545353;  // "SST1"
}

// Layout: magic, count, then per state: key (str16), byte length (u64), bytes.
// Keys are "index:stage"; the stage name picks the loader.
std::vector<std::uint8_t> CodecContext::save_state() const {
  std::vector<std::uint8_t> out;
  detail::ByteWriter w(out);
  w.put<std::uint32_t>(kStateMagic);
  w.put<std::uint32_t>(static_cast<std::uint32_t>(states_.size()));
  for (const auto& [key, st] : states_) {
    std::vector<std::uint8_t> body;
    st->save(body);
    w.put_str16(key);
    w.put<std::uint64_t>(body.size());
    w.put_bytes(body.data(), body.size());
  }
  return out;
}

void CodecContext::load_state(const std::uint8_t* data, std::size_t size) {
  detail::ByteReader r(data, size, "codec state");
  if (r.get<std::uint32_t>() != kStateMagic) r.fail("not a codec state (bad magic)");
  const auto n = r.get<std::uint32_t>();
  if (n > 256) r.fail(std::to_string(n) + " stage states (max 256)");
  std::map<std::string, std::unique_ptr<StageState>> loaded;
  for (std::uint32_t i = 0; i < n; ++i) {
    const std::string key = r.get_str16();
    const auto len = r.get<std::uint64_t>();
    if (len > r.remaining()) r.fail("state '" + key + "' claims " + std::to_string(len) + " bytes");
    const std::uint8_t* body = r.take(static_cast<std::size_t>(len));
    detail::ByteReader br(body, static_cast<std::size_t>(len), "codec state");
    const std::string name = key.substr(key.find(':') == std::string::npos ? key.size() : key.find(':') + 1);
    std::unique_ptr<StageState> st;
    if (name == "delta") st = detail::load_delta_state(br, delta_store);
    else if (name == "lowrank") st = detail::load_lowrank_state(br);
    else r.fail("unknown stage state '" + key + "'");
    br.expect_end();
    loaded[key] = std::move(st);
  }
  r.expect_end();
  states_ = std::move(loaded);
}

std::unique_ptr<Codec> make_codec(const std::string& spec) {
  return std::make_unique<detail::Chain>(detail::parse_spec(spec));
}

at::Tensor decode_message(const std::uint8_t* data, std::size_t size, CodecContext& ctx) {
  auto m = detail::parse_message(data, size, /*copy_parts=*/true);
  auto stages = std::move(m.stages);
  return detail::Chain::run_decode(m, stages, ctx);
}

std::string message_spec(const std::uint8_t* data, std::size_t size) {
  return detail::join_spec(detail::parse_message(data, size, /*copy_parts=*/false).stages);
}

std::vector<std::int64_t> message_shape(const std::uint8_t* data, std::size_t size) {
  return detail::parse_message(data, size, /*copy_parts=*/false).shape;
}

}  // namespace seam::compression
