#pragma once
// Internal: atomic files and the checkpoints of one side of a session.
// A checkpoint is a folder DIR/step-<20 digits>/ holding half.pt (weights,
// buffers, optimizer, step), codec-up.bin and codec-down.bin (codec contexts,
// AC-SGD buffers included). It is written as a temp folder, fsynced, and
// renamed into place, so a crash leaves either the whole checkpoint or none.
// A session of a shared cloud half saves no weights or optimizer (half.pt then
// holds only the step): the half has its own store (SharedCloud).
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "seam/training/model.hpp"
#include "seam/training/split_step.hpp"

namespace seam::session::detail {

void write_file_synced(const std::string& path, const std::string& bytes);  // temp, fsync, rename, fsync dir
void rename_synced(const std::string& from, const std::string& to);
std::string read_file(const std::string& path);
// AC-SGD buffers: RAM up to `ram_limit`, then spill files in the session's folder.
void place_delta_buffers(training::HalfState& st, std::size_t ram_limit, const std::string& dir);

// A half in eval mode for the scope's lifetime (inference), back to train mode after.
class EvalMode {
 public:
  explicit EvalMode(training::ModelHalf& h) : h_(h) { h_.train(false); }
  ~EvalMode() { h_.train(true); }
  EvalMode(const EvalMode&) = delete;
  EvalMode& operator=(const EvalMode&) = delete;

 private:
  training::ModelHalf& h_;
};

class StateStore {
 public:
  StateStore(std::string dir, int keep, bool edge, const training::ModelConfig* config, std::string fingerprint);
  bool enabled() const { return !dir_.empty(); }
  const std::string& dir() const { return dir_; }
  std::vector<std::uint64_t> steps() const;  // ascending
  // Where a peer at `step` can resume: the checkpoint of that very step, or
  // the newest coordinated one before it (the peer holds those too).
  std::optional<std::uint64_t> resume_point(std::uint64_t step) const;
  bool has(std::uint64_t step) const;
  bool coordinated(std::uint64_t step) const;
  // Saves the state at its current step. A coordinated checkpoint is one the
  // peer saves too (a Checkpoint request, step 0); the others (eviction,
  // shutdown) are marked. Pruning keeps the newest `keep` coordinated ones and
  // the newest other one when it is newer than those: an uncoordinated
  // checkpoint never pushes out one that a peer may need to roll back to.
  std::string save(training::HalfState& st, bool coordinated = true) const;
  void load(std::uint64_t step, training::HalfState& st) const;
  // Deletes every checkpoint after `step`: after a rollback they belong to a
  // run that was abandoned (and would outrank the saves of the replay).
  void drop_after(std::uint64_t step) const;

 private:
  std::string path_of(std::uint64_t step) const;
  void prune() const;
  std::string dir_;
  int keep_;
  bool edge_;
  const training::ModelConfig* config_;
  std::string fingerprint_;
};

}  // namespace seam::session::detail
