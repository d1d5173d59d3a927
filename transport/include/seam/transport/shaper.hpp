#pragma once
// Link emulation (token bucket + one-way latency) and bandwidth measurement.
#include <chrono>
#include <cstdint>
#include <mutex>

namespace seam::transport {

struct LinkOptions {
  double rate_bits_per_s = 0;  // 0 = unshaped
  std::chrono::microseconds latency{0};
  std::uint64_t burst_bytes = 16 * 1024;  // bucket depth
};

// Token bucket. `schedule(bytes)` returns when those bytes have left an
// emulated link of the configured rate, plus the one-way latency: the moment a
// receiver on the far side would have them. Thread-safe.
class LinkShaper {
 public:
  using Clock = std::chrono::steady_clock;
  explicit LinkShaper(LinkOptions o = {}) : o_(o) {}
  bool enabled() const { return o_.rate_bits_per_s > 0 || o_.latency.count() > 0; }
  Clock::time_point schedule(std::uint64_t bytes, Clock::time_point now = Clock::now());

 private:
  LinkOptions o_;
  std::mutex mu_;
  Clock::time_point free_at_{};  // when the link has drained what was queued
  bool started_ = false;
};

// Smoothed bytes/second from (bytes, seconds) samples; adaptive codecs read it.
class BandwidthEstimator {
 public:
  explicit BandwidthEstimator(double alpha = 0.25) : alpha_(alpha) {}
  void record(std::uint64_t bytes, double seconds);
  double bytes_per_second() const;
  double bits_per_second() const { return 8 * bytes_per_second(); }
  std::uint64_t samples() const;

 private:
  double alpha_;
  mutable std::mutex mu_;
  double rate_ = 0;
  std::uint64_t n_ = 0;
};

}  // namespace seam::transport
