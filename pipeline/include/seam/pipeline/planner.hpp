#pragma once
// EdgePipe / PipeEdge partition planning (Hu et al. 2021-22): cut a model's
// blocks into contiguous stages on a chain of heterogeneous devices so that
// the slowest stage's max(compute, send to the next device) is smallest, with
// every stage's memory fitting its device. Plain C++: no LibTorch here.
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace seam::pipeline {

// One block of a model as measured by the profiler (pipeline/profiler.hpp) at
// one micro-batch size on this machine.
struct BlockProfile {
  std::string name;
  double compute_s = 0;               // forward time of one micro-batch, this machine, one thread
  std::uint64_t param_bytes = 0;      // parameters and buffers
  std::uint64_t activation_bytes = 0; // the block's input and output tensors for one micro-batch
  std::uint64_t output_bytes = 0;     // its output as the hop's codec encodes it (what a cut here sends)
};

struct ModelProfile {
  std::string model;   // free text: what was profiled
  std::string codec;   // the codec the output sizes are for
  std::int64_t micro_batch = 0;
  std::vector<BlockProfile> blocks;
};

// Text file, one "key value" or "block ..." per line (docs/pipeline.md).
void write_profile(const ModelProfile& p, const std::string& path);
ModelProfile read_profile(const std::string& path);  // throws std::runtime_error naming the line

// A kind of device. Its stages compute at `speed` times this machine (or at
// the measured times in `block_s` when given), may hold `memory_bytes`, and
// send to the next device at `bandwidth_bytes_per_s`.
struct DeviceType {
  std::string name;
  int count = 1;
  double speed = 1.0;
  std::vector<double> block_s;  // optional measured profile: seconds per block (overrides speed)
  std::uint64_t memory_bytes = 0;
  double bandwidth_bytes_per_s = 0;
};

struct Fleet {
  std::vector<DeviceType> types;
  int devices() const;
};

// "name=nano count=4 speed=0.5 memory_mb=2048 bandwidth_mbit=100" per line;
// '#' starts a comment. Throws std::runtime_error naming the line and key.
Fleet read_fleet(const std::string& path);

struct Stage {
  std::int64_t begin = 0, end = 0;  // blocks [begin, end)
  int type = 0;                     // index into Fleet::types
  double compute_s = 0, send_s = 0;
  std::uint64_t memory_bytes = 0;
  double time() const { return compute_s > send_s ? compute_s : send_s; }
};

struct Plan {
  std::vector<Stage> stages;
  double bottleneck_s = 0;  // the slowest stage's time: one micro-batch leaves every bottleneck_s
  double throughput() const { return bottleneck_s > 0 ? 1.0 / bottleneck_s : 0; }  // micro-batches per second
};

// The plan has no feasible form: a block larger than every device's memory, or
// too few devices to hold the model. The message names the block or the shortfall.
class PlanError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The cost of blocks [begin, end) on one device of `type`; the last stage's
// send is its output to the source.
Stage stage_cost(const ModelProfile& m, const Fleet& f, std::int64_t begin, std::int64_t end, int type);

// The dynamic program over (block, devices used per type, type of the device
// that hosts the next stage). Devices are indexed by type throughout (the
// published code indexes device hosts by type). Among plans with the same
// bottleneck it prefers fewer stages where its table can tell (not always).
Plan plan_pipeline(const ModelProfile& m, const Fleet& f);

// Every cut and every ordered choice of device types: the reference for tests.
// Exponential; refuses more than 12 blocks or 6 devices.
Plan brute_force_plan(const ModelProfile& m, const Fleet& f);

// Baselines: all blocks on the one device type that runs them fastest (that
// fits), and an even split of the blocks over min(devices, blocks) devices
// taken in the fleet's order (nullopt-like: stages empty when it does not fit).
Plan best_single_device(const ModelProfile& m, const Fleet& f);
Plan even_split(const ModelProfile& m, const Fleet& f);

std::string describe(const Plan& p, const ModelProfile& m, const Fleet& f);

}  // namespace seam::pipeline
