#include "delta_store.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "seam/compression/errors.hpp"

namespace seam::compression::detail {

DeltaStore::DeltaStore(std::size_t ram_limit_bytes, std::string spill_dir)
    : ram_limit_(ram_limit_bytes), spill_dir_(std::move(spill_dir)) {}

DeltaStore::~DeltaStore() {
  for (auto& [p, n] : maps_) munmap(p, n);
  if (fd_ >= 0) close(fd_);
}

std::uint16_t* DeltaStore::find(std::int64_t id) const {
  auto it = index_.find(id);
  return it == index_.end() ? nullptr : it->second;
}

std::vector<std::int64_t> DeltaStore::ids() const {
  std::vector<std::int64_t> v;
  v.reserve(index_.size());
  for (const auto& kv : index_) v.push_back(kv.first);
  std::sort(v.begin(), v.end());
  return v;
}

std::uint16_t* DeltaStore::insert(std::int64_t id, std::int64_t elems) {
  if (slot_elems_ < 0) slot_elems_ = elems;
  if (elems != slot_elems_)
    throw CodecError("delta: sample " + std::to_string(id) + " has " + std::to_string(elems) +
                     " elements, buffers hold " + std::to_string(slot_elems_) + " (per-sample shape changed)");
  std::uint16_t* p;
  if ((ram_slots_.size() + 1) * slot_bytes() <= ram_limit_) {
    ram_slots_.emplace_back(new std::uint16_t[static_cast<std::size_t>(elems)]());
    p = ram_slots_.back().get();
  } else {
    p = disk_slot();
  }
  index_[id] = p;
  return p;
}

std::uint16_t* DeltaStore::disk_slot() {
  const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  if (fd_ < 0) {
    std::string path = spill_dir_ + "/seam-delta-XXXXXX";
    std::vector<char> buf(path.begin(), path.end());
    buf.push_back('\0');
    fd_ = mkstemp(buf.data());
    if (fd_ < 0)
      throw CodecError("delta: cannot create spill file in '" + spill_dir_ + "': " + std::strerror(errno));
    unlink(buf.data());
    // ~64 MiB per mapping, whole pages.
    chunk_slots_ = std::max<std::size_t>(1, (std::size_t{64} << 20) / std::max<std::size_t>(1, slot_bytes()));
    chunk_used_ = chunk_slots_;
  }
  if (chunk_used_ == chunk_slots_) {
    std::size_t bytes = (chunk_slots_ * slot_bytes() + page - 1) / page * page;
    if (ftruncate(fd_, static_cast<off_t>(disk_mapped_ + bytes)) != 0)
      throw CodecError(std::string("delta: cannot grow spill file: ") + std::strerror(errno));
    void* m = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, static_cast<off_t>(disk_mapped_));
    if (m == MAP_FAILED) throw CodecError(std::string("delta: mmap of spill file failed: ") + std::strerror(errno));
    maps_.emplace_back(m, bytes);
    disk_mapped_ += bytes;
    chunk_used_ = 0;
  }
  auto* base = static_cast<std::uint8_t*>(maps_.back().first);
  return reinterpret_cast<std::uint16_t*>(base + (chunk_used_++) * slot_bytes());
}

}  // namespace seam::compression::detail
