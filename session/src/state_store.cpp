#include "state_store.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "seam/compression/codec.hpp"
#include "seam/training/checkpoint.hpp"

namespace seam::session::detail {

namespace fs = std::filesystem;
namespace t = seam::training;

namespace {

void fsync_path(const std::string& p, bool dir) {
  int fd = ::open(p.c_str(), dir ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) throw std::runtime_error("cannot open '" + p + "' to sync: " + std::strerror(errno));
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) throw std::runtime_error("fsync of '" + p + "' failed: " + std::strerror(errno));
}

std::string parent_of(const std::string& p) {
  fs::path x(p);
  return x.has_parent_path() ? x.parent_path().string() : ".";
}

void write_plain(const std::string& path, const void* data, std::size_t n) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) throw std::runtime_error("cannot write '" + path + "': " + std::strerror(errno));
  const bool ok = std::fwrite(data, 1, n, f) == n;
  const bool closed = std::fclose(f) == 0;
  if (!ok || !closed) throw std::runtime_error("write of '" + path + "' failed: " + std::strerror(errno));
  fsync_path(path, false);
}

}  // namespace

void write_file_synced(const std::string& path, const std::string& bytes) {
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  try {
    write_plain(tmp, bytes.data(), bytes.size());
    fs::rename(tmp, path);
    fsync_path(parent_of(path), true);
  } catch (...) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw;
  }
}

void rename_synced(const std::string& from, const std::string& to) {
  fs::rename(from, to);
  fsync_path(parent_of(to), true);
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read '" + path + "'");
  std::ostringstream os;
  os << f.rdbuf();
  return os.str();
}

void place_delta_buffers(t::HalfState& st, std::size_t ram_limit, const std::string& dir) {
  for (auto* ctx : {&st.up_context(), &st.down_context()}) {
    ctx->delta_store.ram_limit_bytes = ram_limit;
    if (!dir.empty()) ctx->delta_store.spill_dir = dir;
  }
}

StateStore::StateStore(std::string dir, int keep, bool edge, const t::ModelConfig* config, std::string fingerprint)
    : dir_(std::move(dir)), keep_(std::max(2, keep)), edge_(edge), config_(config), fingerprint_(std::move(fingerprint)) {
  if (dir_.empty()) return;
  fs::create_directories(dir_);
  // Temp folders of a writer that crashed before its rename: never a checkpoint.
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir_))
    if (e.path().filename().string().rfind(".tmp-", 0) == 0) fs::remove_all(e.path(), ec);
}

std::string StateStore::path_of(std::uint64_t step) const {
  char name[32];
  std::snprintf(name, sizeof name, "step-%020llu", static_cast<unsigned long long>(step));
  return dir_ + "/" + name;
}

std::vector<std::uint64_t> StateStore::steps() const {
  std::vector<std::uint64_t> out;
  if (dir_.empty()) return out;
  for (const auto& e : fs::directory_iterator(dir_)) {
    const auto n = e.path().filename().string();
    if (n.size() != 25 || n.rfind("step-", 0) != 0 || !e.is_directory()) continue;
    if (n.find_first_not_of("0123456789", 5) != std::string::npos) continue;
    out.push_back(std::stoull(n.substr(5)));
  }
  std::sort(out.begin(), out.end());
  return out;
}

namespace {
constexpr const char* kUncoordinated = "uncoordinated";  // marker file in a checkpoint folder
}  // namespace

bool StateStore::coordinated(std::uint64_t step) const { return !fs::exists(path_of(step) + "/" + kUncoordinated); }

std::optional<std::uint64_t> StateStore::resume_point(std::uint64_t step) const {
  std::optional<std::uint64_t> best;
  for (auto s : steps())
    if (s == step || (s < step && coordinated(s))) best = s;
  return best;
}

bool StateStore::has(std::uint64_t step) const { return enabled() && fs::is_directory(path_of(step)); }

std::string StateStore::save(t::HalfState& st, bool coordinated) const {
  const std::uint64_t step = st.steps_done();
  const std::string final_dir = path_of(step);
  if (fs::is_directory(final_dir)) {  // a repeated request, or saved before: the same state
    if (coordinated && fs::exists(final_dir + "/" + kUncoordinated)) {
      fs::remove(final_dir + "/" + kUncoordinated);
      fsync_path(final_dir, true);
      prune();
    }
    return final_dir;
  }
  const std::string tmp = dir_ + "/.tmp-" + fs::path(final_dir).filename().string() + "-" + std::to_string(::getpid());
  std::error_code ec;
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp);
  try {
    t::CheckpointParts parts;
    parts.config = config_;
    if (!st.is_shared()) {  // a shared half is saved by its own store, not by each session
      (edge_ ? parts.edge : parts.cloud) = &st.half();
      (edge_ ? parts.edge_optim : parts.cloud_optim) = &st.optimizer();
    }
    parts.step = static_cast<std::int64_t>(step);
    parts.fingerprint = fingerprint_;
    t::save_checkpoint(tmp + "/half.pt", parts);
    for (auto [file, ctx] : {std::pair{"codec-up.bin", &st.up_context()}, std::pair{"codec-down.bin", &st.down_context()}}) {
      auto bytes = ctx->save_state();
      write_plain(tmp + "/" + file, bytes.data(), bytes.size());
    }
    if (!coordinated) write_plain(tmp + "/" + kUncoordinated, "", 0);
    fsync_path(tmp, true);
    rename_synced(tmp, final_dir);
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
  prune();
  return final_dir;
}

void StateStore::drop_after(std::uint64_t step) const {
  std::error_code ec;
  for (auto s : steps())
    if (s > step) fs::remove_all(path_of(s), ec);
}

void StateStore::prune() const {
  const auto all = steps();
  std::vector<std::uint64_t> coord, other;
  for (auto s : all) (coordinated(s) ? coord : other).push_back(s);
  std::vector<std::uint64_t> drop;
  const std::size_t keep = static_cast<std::size_t>(keep_);
  if (coord.size() > keep) drop.assign(coord.begin(), coord.end() - static_cast<std::ptrdiff_t>(keep));
  // The newest uncoordinated one survives only while it is the newest of all
  // (the state a peer that kept running reattaches to).
  for (std::size_t i = 0; i < other.size(); ++i)
    if (i + 1 < other.size() || (!coord.empty() && other[i] < coord.back())) drop.push_back(other[i]);
  std::error_code ec;
  for (auto s : drop) fs::remove_all(path_of(s), ec);
}

void StateStore::load(std::uint64_t step, t::HalfState& st) const {
  const std::string d = path_of(step);
  if (!fs::is_directory(d)) throw std::runtime_error("no checkpoint of step " + std::to_string(step) + " in '" + dir_ + "'");
  // Codec states first, into spares (they can be refused without touching anything).
  const std::string up = read_file(d + "/codec-up.bin"), down = read_file(d + "/codec-down.bin");
  compression::CodecContext up_probe(st.up_context().seed), down_probe(st.down_context().seed);
  up_probe.delta_store = st.up_context().delta_store;
  down_probe.delta_store = st.down_context().delta_store;
  up_probe.load_state(reinterpret_cast<const std::uint8_t*>(up.data()), up.size());
  down_probe.load_state(reinterpret_cast<const std::uint8_t*>(down.data()), down.size());
  t::CheckpointParts parts;
  parts.config = config_;
  if (!st.is_shared()) {  // a shared half is saved by its own store, not by each session
    (edge_ ? parts.edge : parts.cloud) = &st.half();
    (edge_ ? parts.edge_optim : parts.cloud_optim) = &st.optimizer();
  }
  parts.fingerprint = fingerprint_;
  const auto saved = t::load_checkpoint(d + "/half.pt", parts);
  if (saved != static_cast<std::int64_t>(step))
    throw std::runtime_error("checkpoint '" + d + "' holds step " + std::to_string(saved));
  st.up_context().swap_state(up_probe);
  st.down_context().swap_state(down_probe);
  st.set_steps_done(step);
}

}  // namespace seam::session::detail
