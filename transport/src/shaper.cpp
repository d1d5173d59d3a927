#include "seam/transport/shaper.hpp"

#include <algorithm>

namespace seam::transport {

LinkShaper::Clock::time_point LinkShaper::schedule(std::uint64_t bytes, Clock::time_point now) {
  std::lock_guard<std::mutex> lock(mu_);
  if (o_.rate_bits_per_s <= 0) return now + o_.latency;
  const auto per_byte = std::chrono::duration<double>(8.0 / o_.rate_bits_per_s);
  const auto burst = std::chrono::duration_cast<Clock::duration>(per_byte * static_cast<double>(o_.burst_bytes));
  if (!started_) {
    free_at_ = now;
    started_ = true;
  }
  // An idle link refills its bucket: it can absorb at most `burst` bytes at once.
  free_at_ = std::max(free_at_, now - burst);
  free_at_ += std::chrono::duration_cast<Clock::duration>(per_byte * static_cast<double>(bytes));
  auto sent = std::max(now, free_at_ - burst);
  return sent + o_.latency;
}

void BandwidthEstimator::record(std::uint64_t bytes, double seconds) {
  if (seconds <= 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  double r = static_cast<double>(bytes) / seconds;
  rate_ = n_ == 0 ? r : (1 - alpha_) * rate_ + alpha_ * r;
  ++n_;
}

double BandwidthEstimator::bytes_per_second() const {
  std::lock_guard<std::mutex> lock(mu_);
  return rate_;
}

std::uint64_t BandwidthEstimator::samples() const {
  std::lock_guard<std::mutex> lock(mu_);
  return n_;
}

}  // namespace seam::transport
