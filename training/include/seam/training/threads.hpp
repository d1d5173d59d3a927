#pragma once

namespace seam::training {

// Sets LibTorch's intra-op thread count. 0 means "all cores" (LibTorch 1.13
// defaults to one thread on this machine, which halves layer throughput).
// Returns the count in force afterwards.
int configure_threads(int requested);

}  // namespace seam::training
