#include "seam/transport/clock.hpp"

#include <algorithm>

namespace seam::transport {

namespace {
class SteadyClock final : public Clock {
 public:
  time_point now() const override { return std::chrono::steady_clock::now(); }
  duration until(time_point t) const override { return std::max(duration::zero(), t - now()); }
};
}  // namespace

const Clock& steady_clock() {
  static const SteadyClock c;  // stateless, so sharing it shares nothing
  return c;
}

}  // namespace seam::transport
