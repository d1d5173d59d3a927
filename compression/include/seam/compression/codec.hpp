#pragma once
// Wire codecs: encode a tensor into self-describing bytes and back.
//
// A codec is a chain of stages named by one spec string:
//   stage[:key=value[,key=value...]] joined by '+', e.g. "lowrank:rank=8+quant:bits=8".
// The encoded bytes record every stage's name, version and parameters, so
// decode_message() needs nothing but the bytes (and the caller's context for
// stateful stages). The byte format is specified in docs/codecs.md.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace seam::compression {

// State a stateful stage keeps between calls (delta buffers, warm starts).
class StageState {
 public:
  virtual ~StageState() = default;
  virtual std::size_t ram_bytes() const { return 0; }
  virtual std::size_t disk_bytes() const { return 0; }
  // Appends the state's bytes (see CodecContext::save_state). Stages whose
  // state must survive a restart implement it; the default keeps nothing.
  virtual void save(std::vector<std::uint8_t>& out) const;
};

// Where delta buffers live: RAM up to ram_limit_bytes, then a memory-mapped
// file in spill_dir (created unlinked, so it vanishes with the process; a
// session persists the buffers with CodecContext::save_state instead).
struct DeltaStoreOptions {
  std::size_t ram_limit_bytes = std::size_t{1} << 30;
  std::string spill_dir = "/tmp";
};

// Owned by the caller: one per session and direction. Never shared between
// an encoder and a decoder, which each keep their own copy of the state.
class CodecContext {
 public:
  explicit CodecContext(std::uint64_t seed = 0) : seed(seed) {}
  CodecContext(const CodecContext&) = delete;
  CodecContext& operator=(const CodecContext&) = delete;

  std::uint64_t seed;                  // shared by both sides of a session
  std::int64_t step = 0;               // set by the caller before each call
  std::vector<std::int64_t> sample_ids;  // one per batch row, for delta
  DeltaStoreOptions delta_store;

  // State of stage `index` of a chain; created by `make` on first use.
  template <class T, class Make>
  T& state(int index, const char* name, Make&& make) {
    auto& slot = states_[std::to_string(index) + ":" + name];
    if (!slot) slot = make();
    return static_cast<T&>(*slot);
  }

  // Bytes held in RAM and on disk by stateful stages (delta buffers).
  std::size_t state_ram_bytes() const;
  std::size_t state_disk_bytes() const;
  void reset_state() { states_.clear(); }

  // Every stage state (delta buffers, lowrank warm starts) as bytes, in a
  // fixed order, so a session can checkpoint it; load_state replaces the
  // current state with saved bytes (throws DecodeError naming what is wrong,
  // leaving the current state untouched).
  std::vector<std::uint8_t> save_state() const;
  void load_state(const std::uint8_t* data, std::size_t size);
  // Exchanges the stage states of two contexts (load into a spare, then swap in).
  void swap_state(CodecContext& other) { states_.swap(other.states_); }

 private:
  std::map<std::string, std::unique_ptr<StageState>> states_;
};

class Codec {
 public:
  virtual ~Codec() = default;
  // Canonical spec: every stage with every parameter, defaults filled in.
  virtual const std::string& spec() const = 0;
  // Input: fp32, fp16 or bf16, any shape. Output size is exactly what travels.
  virtual std::vector<std::uint8_t> encode(const at::Tensor& x, CodecContext& ctx) const = 0;
  // Refuses a message whose stages differ from this codec's (DecodeError).
  virtual at::Tensor decode(const std::uint8_t* data, std::size_t size, CodecContext& ctx) const = 0;
};

// Parses a spec; throws CodecError naming what is allowed on any unknown stage,
// key or value.
std::unique_ptr<Codec> make_codec(const std::string& spec);

// Decodes from the message alone: builds the chain the message names.
at::Tensor decode_message(const std::uint8_t* data, std::size_t size, CodecContext& ctx);

// The canonical spec recorded in an encoded message (validated like decode).
std::string message_spec(const std::uint8_t* data, std::size_t size);

// Every stage with its parameters, allowed values and defaults (for `seam-codec list`).
std::string describe_stages();

}  // namespace seam::compression
