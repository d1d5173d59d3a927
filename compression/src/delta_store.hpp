#pragma once
// Per-sample fp16 buffers for AC-SGD: RAM up to a byte bound, then slots in a
// memory-mapped spill file (created unlinked, so nothing is left on disk).
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace seam::compression::detail {

class DeltaStore {
 public:
  DeltaStore(std::size_t ram_limit_bytes, std::string spill_dir);
  ~DeltaStore();
  DeltaStore(const DeltaStore&) = delete;
  DeltaStore& operator=(const DeltaStore&) = delete;

  std::uint16_t* find(std::int64_t id) const;
  // New zeroed slot; the first call fixes the slot size, later calls must match.
  std::uint16_t* insert(std::int64_t id, std::int64_t elems);
  std::int64_t slot_elems() const { return slot_elems_; }
  std::size_t size() const { return index_.size(); }
  std::size_t ram_bytes() const { return ram_slots_.size() * slot_bytes(); }
  std::size_t disk_bytes() const { return disk_mapped_; }
  // Ids in ascending order (a fixed order for saving).
  std::vector<std::int64_t> ids() const;

 private:
  std::size_t slot_bytes() const { return static_cast<std::size_t>(slot_elems_) * 2; }
  std::uint16_t* disk_slot();

  std::size_t ram_limit_;
  std::string spill_dir_;
  std::int64_t slot_elems_ = -1;
  std::unordered_map<std::int64_t, std::uint16_t*> index_;
  std::vector<std::unique_ptr<std::uint16_t[]>> ram_slots_;
  int fd_ = -1;
  std::vector<std::pair<void*, std::size_t>> maps_;
  std::size_t disk_mapped_ = 0;   // bytes of file mapped
  std::size_t chunk_used_ = 0;    // slots used in the last map
  std::size_t chunk_slots_ = 0;   // slots per map
};

}  // namespace seam::compression::detail
