#pragma once
// The time source of the channel's timeouts and of its link shaper. Tests
// inject a simulated clock so that minutes of a slow link pass in
// milliseconds; everything else uses the steady clock (`steady_clock()`).
#include <chrono>

namespace seam::transport {

class Clock {
 public:
  using time_point = std::chrono::steady_clock::time_point;
  using duration = std::chrono::steady_clock::duration;
  virtual ~Clock() = default;
  virtual time_point now() const = 0;
  // For the channel's own delays (pacing a shaped link, retry backoff): how
  // long to wait in real time until now() reaches `t`. A simulated clock may
  // move itself to `t` and return zero. Deadlines on the peer never call
  // this; they only read now().
  virtual duration until(time_point t) const = 0;
};

// The real monotonic clock. Stateless; the default of every options struct.
const Clock& steady_clock();

}  // namespace seam::transport
