#pragma once
// QuantPipe (Wang et al., ICASSP 2023): adaptive post-training quantization of
// the activations on one pipeline hop. Once per window of micro-batches the
// controller reads the hop's measured bandwidth and picks the widest bitwidth
// from {32, 16, 8, 6, 4, 3, 2} whose frames still leave at the target rate.
// The choice travels in-band: every encoded message names its codec, so the
// receiver decodes with compression::decode_message and never guesses.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace seam::pipeline {

inline const std::vector<int>& quantpipe_bits() {
  static const std::vector<int> b{32, 16, 8, 6, 4, 3, 2};
  return b;
}

enum class Clip { none, aciq, dsaciq };
Clip parse_clip(const std::string& s);  // none | aciq | dsaciq; throws std::invalid_argument
const char* to_string(Clip c);

// The codec spec that sends `bits`: none (32), fp16 (16), quant:bits=b (8..2),
// one range per tensor, with the given clipping.
std::string spec_for_bits(int bits, Clip clip);

struct ControllerOptions {
  double target_rate = 0;  // micro-batches per second the hop must carry; 0 = always the widest
  int window = 8;          // micro-batches between decisions
  std::vector<int> bits = quantpipe_bits();  // candidates, widest first
};

// Pure decision logic (no clock of its own): feed it one bandwidth reading per
// micro-batch sent; it re-decides at the end of every window.
class BitwidthController {
 public:
  // frame_bytes(bits): the bytes one micro-batch's frame takes at that width.
  BitwidthController(ControllerOptions o, std::function<std::uint64_t(int)> frame_bytes);
  int bits() const { return bits_; }
  // The widest candidate whose frame leaves at target_rate or faster at this
  // rate; the narrowest when none does.
  int choose(double bandwidth_bytes_per_s) const;
  // One micro-batch was sent and the hop's estimate is now `bandwidth`.
  // Returns true when this ended a window (bits() may have changed).
  bool on_sent(double bandwidth_bytes_per_s);
  std::uint64_t windows() const { return windows_; }

 private:
  ControllerOptions o_;
  std::function<std::uint64_t(int)> frame_bytes_;
  int bits_;
  int in_window_ = 0;
  std::uint64_t windows_ = 0;
};

// Encodes one hop's activations at a chosen width. With DS-ACIQ clipping the
// histogram search runs only when `search` is asked (once per window): its
// clip range is kept and later tensors are clamped to it before a plain
// min/max quantization, which for the searched tensor gives the very same
// codes. ACIQ's closed form is cheap and runs every time.
class HopEncoder {
 public:
  explicit HopEncoder(Clip clip);
  ~HopEncoder();
  HopEncoder(HopEncoder&&) noexcept;
  HopEncoder& operator=(HopEncoder&&) noexcept;
  // x: fp32. `search`: run the DS-ACIQ search now (forced on the first call at
  // a width). Returns the stateless codec message.
  std::vector<std::uint8_t> encode(const at::Tensor& x, int bits, bool search);
  double last_search_s() const;   // seconds the latest DS-ACIQ search took
  std::uint64_t searches() const;
  Clip clip() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace seam::pipeline
