#pragma once
// When waiting on a peer becomes a failure. A connection is *stalled* when no
// byte has moved, in either direction, for the stall timeout; it is *overdue*
// when a hard deadline passes (an optional cap, or the time a frame may take
// at the configured minimum rate). Progress resets the first, never the
// second, so a slow link is not cut while a peer that trickles bytes is.
// Pure arithmetic on time points: the channel feeds it, tests drive it.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>

#include "seam/transport/clock.hpp"

namespace seam::transport::detail {

using TimePoint = Clock::time_point;
inline constexpr TimePoint kNever = TimePoint::max();

// `start + d`, or kNever when d is zero (off) or the sum would overflow.
inline TimePoint after(TimePoint start, std::chrono::milliseconds d) {
  if (d.count() <= 0 || start > kNever - d) return kNever;
  return start + d;
}

// When a frame of `bytes` begun at `start` must be done: at `cap` after the
// start (0 = no cap), and at `grace` plus `bytes` at `min_rate_bits_per_s`
// (0 = no floor), whichever comes first.
inline TimePoint frame_deadline(TimePoint start, std::uint64_t bytes, std::chrono::milliseconds cap,
                                std::chrono::milliseconds grace, double min_rate_bits_per_s) {
  TimePoint d = after(start, cap);
  if (min_rate_bits_per_s > 0) {
    // Whole milliseconds, clamped well below overflow (a year is "never" here).
    const double ms =
        static_cast<double>(grace.count()) + 8e3 * static_cast<double>(bytes) / min_rate_bits_per_s;
    d = std::min(d, after(start, std::chrono::milliseconds(static_cast<std::int64_t>(std::min(ms, 3.2e10)))));
  }
  return d;
}

class ProgressWatch {
 public:
  enum class Verdict { ok, stalled, overdue };

  // Watches from `now`: stalled after `stall` without progress (0 = never),
  // overdue at `hard` (kNever = never).
  void start(TimePoint now, std::chrono::milliseconds stall, TimePoint hard) {
    active_ = true;
    last_ = now;
    stall_ = stall;
    hard_ = hard;
  }
  void stop() { active_ = false; }
  bool active() const { return active_; }
  void progress(TimePoint now) { last_ = std::max(last_, now); }
  TimePoint last_progress() const { return last_; }

  // The next moment check() can change its answer; kNever when inactive.
  TimePoint deadline() const { return active_ ? std::min(after(last_, stall_), hard_) : kNever; }

  Verdict check(TimePoint now) const {
    if (!active_) return Verdict::ok;
    if (now >= hard_) return Verdict::overdue;
    if (now >= after(last_, stall_)) return Verdict::stalled;
    return Verdict::ok;
  }

  // A reason for a time-out error, naming the limit that was hit.
  std::string describe(Verdict v, const char* overdue_what) const {
    if (v == Verdict::stalled)
      return "stalled: no bytes moved for " + std::to_string(stall_.count()) + " ms (stall_timeout)";
    return std::string("overdue: ") + overdue_what;
  }

 private:
  bool active_ = false;
  TimePoint last_{};
  std::chrono::milliseconds stall_{0};
  TimePoint hard_ = kNever;
};

}  // namespace seam::transport::detail
