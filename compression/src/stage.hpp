#pragma once
// Internal stage interface. A chain passes a list of Parts from stage to stage;
// each stage writes a small metadata record that its decode reads back.
#include <ATen/core/Tensor.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "bytes.hpp"
#include "seam/compression/codec.hpp"

namespace seam::compression::detail {

// Either a tensor (between tensor stages) or packed bytes (after an encoder).
struct Part {
  at::Tensor tensor;
  std::vector<std::uint8_t> bytes;
  bool is_bytes = false;

  static Part of_tensor(at::Tensor t) { return Part{std::move(t), {}, false}; }
  static Part of_bytes(std::vector<std::uint8_t> b) { return Part{{}, std::move(b), true}; }
};

enum class PartKind { tensors, bytes };

// How many parts a stage emits for the parts it takes: lets the spec parser
// enforce the decoder's part limit before any tensor is seen.
enum class PartFlow {
  same,     // one out per part in
  doubles,  // two out per part in (lowrank: U and V)
  single_to_two,  // exactly one in, two out (delta)
  joins,    // any number in, one out (zstd)
};

struct ParamSpec {
  std::string name;
  std::string default_value;
  std::vector<std::string> choices;  // empty: integer in [min, max]
  long min = 0;
  long max = 0;
  std::string help;
};

using Params = std::map<std::string, std::string>;

inline long param_int(const Params& p, const std::string& k) { return std::stol(p.at(k)); }

struct StageCall {
  CodecContext& ctx;
  int index;  // position in the chain: keys stage state
};

class Stage {
 public:
  virtual ~Stage() = default;
  virtual std::vector<Part> encode(std::vector<Part> in, ByteWriter& meta, StageCall& call) const = 0;
  virtual std::vector<Part> decode(std::vector<Part> in, ByteReader& meta, StageCall& call) const = 0;
};

struct StageInfo {
  std::string name;
  std::uint8_t version;
  PartKind input;
  PartKind output;
  std::string help;
  std::vector<ParamSpec> params;
  std::function<std::unique_ptr<Stage>(const Params&)> make;
  PartFlow flow = PartFlow::same;
};

// The registry of every stage (defined in registry.cpp).
const std::vector<StageInfo>& stage_registry();
const StageInfo* find_stage(const std::string& name);

// Fills defaults and checks every key and value; throws CodecError listing what is allowed.
Params validate_params(const StageInfo& info, const std::map<std::string, std::string>& given);
std::string canonical_params(const StageInfo& info, const Params& p);

// Factories of the individual stages (each in its own .cpp).
StageInfo none_stage_info();
StageInfo fp16_stage_info();
StageInfo bf16_stage_info();
StageInfo quant_stage_info();
StageInfo lowrank_stage_info();
StageInfo delta_stage_info();
StageInfo zstd_stage_info();

// Helpers shared by the stages.
std::vector<std::int64_t> shape_of(const at::Tensor& t);
at::Tensor float_contiguous(const at::Tensor& t);  // fp32, contiguous
void require_tensor_parts(const std::vector<Part>& in, const char* stage);
void require_byte_parts(const std::vector<Part>& in, const char* stage);
void require_part_count(const std::vector<Part>& in, std::size_t n, const char* stage, ByteReader& meta);
// Deterministic 64-bit seed for (session seed, step, stage index, salt).
std::uint64_t mix_seed(std::uint64_t seed, std::int64_t step, int index, std::uint64_t salt);

// Rebuild a stage's saved state (CodecContext::load_state); throw DecodeError.
std::unique_ptr<StageState> load_delta_state(ByteReader& r, const DeltaStoreOptions& o);
std::unique_ptr<StageState> load_lowrank_state(ByteReader& r);

}  // namespace seam::compression::detail
