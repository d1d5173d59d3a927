#include "seam/pipeline/quantpipe.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <stdexcept>

#include "seam/compression/codec.hpp"

namespace seam::pipeline {

Clip parse_clip(const std::string& s) {
  if (s == "none") return Clip::none;
  if (s == "aciq") return Clip::aciq;
  if (s == "dsaciq") return Clip::dsaciq;
  throw std::invalid_argument("unknown clipping '" + s + "' (none, aciq, dsaciq)");
}

const char* to_string(Clip c) {
  switch (c) {
    case Clip::none: return "none";
    case Clip::aciq: return "aciq";
    case Clip::dsaciq: return "dsaciq";
  }
  return "?";
}

std::string spec_for_bits(int bits, Clip clip) {
  if (bits == 32) return "none";
  if (bits == 16) return "fp16";
  if (bits < 1 || bits > 8) throw std::invalid_argument("bitwidth " + std::to_string(bits) + " is not one of 32, 16, 1..8");
  return "quant:bits=" + std::to_string(bits) + ",clip=" + to_string(clip);
}

BitwidthController::BitwidthController(ControllerOptions o, std::function<std::uint64_t(int)> frame_bytes)
    : o_(std::move(o)), frame_bytes_(std::move(frame_bytes)) {
  if (o_.bits.empty()) throw std::invalid_argument("controller: no candidate bitwidths");
  if (o_.window < 1) throw std::invalid_argument("controller: window must be >= 1 micro-batch");
  if (o_.target_rate < 0) throw std::invalid_argument("controller: target rate must be >= 0");
  std::sort(o_.bits.begin(), o_.bits.end(), std::greater<int>());
  bits_ = o_.bits.front();  // nothing measured yet: start wide
}

int BitwidthController::choose(double bandwidth_bytes_per_s) const {
  if (o_.target_rate <= 0) return o_.bits.front();
  for (int b : o_.bits)
    if (bandwidth_bytes_per_s / static_cast<double>(frame_bytes_(b)) >= o_.target_rate) return b;
  return o_.bits.back();
}

bool BitwidthController::on_sent(double bandwidth_bytes_per_s) {
  if (++in_window_ < o_.window) return false;
  in_window_ = 0;
  ++windows_;
  if (bandwidth_bytes_per_s > 0) bits_ = choose(bandwidth_bytes_per_s);
  return true;
}

struct HopEncoder::Impl {
  Clip clip;
  compression::CodecContext ctx;
  std::map<std::string, std::unique_ptr<compression::Codec>> codecs;
  // DS-ACIQ: the range the latest search found, per width.
  std::map<int, std::pair<double, double>> ranges;
  double search_s = 0;
  std::uint64_t searches = 0;

  const compression::Codec& codec(const std::string& spec) {
    auto& c = codecs[spec];
    if (!c) c = compression::make_codec(spec);
    return *c;
  }
};

HopEncoder::HopEncoder(Clip clip) : impl_(std::make_unique<Impl>()) { impl_->clip = clip; }
HopEncoder::~HopEncoder() = default;
HopEncoder::HopEncoder(HopEncoder&&) noexcept = default;
HopEncoder& HopEncoder::operator=(HopEncoder&&) noexcept = default;

std::vector<std::uint8_t> HopEncoder::encode(const at::Tensor& x, int bits, bool search) {
  auto& I = *impl_;
  if (bits >= 16 || I.clip != Clip::dsaciq) return I.codec(spec_for_bits(bits, I.clip)).encode(x, I.ctx);
  auto it = I.ranges.find(bits);
  if (search || it == I.ranges.end()) {
    const auto t0 = std::chrono::steady_clock::now();
    auto msg = I.codec(spec_for_bits(bits, Clip::dsaciq)).encode(x, I.ctx);
    // The searched range, read back from what the receiver will decode: its
    // extreme codes decode to the clip bounds.
    const at::Tensor back = compression::decode_message(msg.data(), msg.size(), I.ctx);
    I.ranges[bits] = {back.min().item<double>(), back.max().item<double>()};
    I.search_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ++I.searches;
    return msg;
  }
  return I.codec(spec_for_bits(bits, Clip::none)).encode(x.clamp(it->second.first, it->second.second), I.ctx);
}

double HopEncoder::last_search_s() const { return impl_->search_s; }
std::uint64_t HopEncoder::searches() const { return impl_->searches; }
Clip HopEncoder::clip() const { return impl_->clip; }

}  // namespace seam::pipeline
