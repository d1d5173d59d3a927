#include "seam/training/checkpoint.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <torch/torch.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <sstream>

#include "model_impl.hpp"

namespace seam::training {

namespace fs = std::filesystem;

namespace {

constexpr std::int64_t kFormat = 1;

void fsync_path(const std::string& p, bool dir) {
  int fd = ::open(p.c_str(), dir ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) throw CheckpointError("cannot open '" + p + "' to sync: " + std::strerror(errno));
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) throw CheckpointError("fsync of '" + p + "' failed: " + std::strerror(errno));
}

void write_half(torch::serialize::OutputArchive& ar, const std::string& prefix, const ModelHalf& h) {
  for (auto& [n, t] : h.named_parameters()) ar.write(prefix + "/p/" + n, t.detach());
  for (auto& [n, t] : h.named_buffers()) ar.write(prefix + "/b/" + n, t, /*is_buffer=*/true);
}

void read_half(torch::serialize::InputArchive& ar, const std::string& prefix, ModelHalf& h, const std::string& path) {
  torch::NoGradGuard ng;
  auto read_into = [&](const std::string& key, at::Tensor& dst, bool buffer) {
    at::Tensor t;
    if (!ar.try_read(key, t, buffer)) throw CheckpointError(path + ": missing tensor '" + key + "'");
    if (t.sizes() != dst.sizes()) throw CheckpointError(path + ": tensor '" + key + "' has the wrong shape");
    dst.copy_(t);
  };
  for (auto& [n, t] : h.named_parameters()) read_into(prefix + "/p/" + n, t, false);
  for (auto& [n, t] : h.named_buffers()) read_into(prefix + "/b/" + n, t, true);
}

std::string read_string(torch::serialize::InputArchive& ar, const std::string& key, const std::string& path) {
  c10::IValue v;
  if (!ar.try_read(key, v) || !v.isString()) throw CheckpointError(path + ": not a Seam checkpoint (no '" + key + "')");
  return v.toStringRef();
}

std::int64_t read_int(torch::serialize::InputArchive& ar, const std::string& key, const std::string& path) {
  c10::IValue v;
  if (!ar.try_read(key, v) || !v.isInt()) throw CheckpointError(path + ": not a Seam checkpoint (no '" + key + "')");
  return v.toInt();
}

void open_archive(torch::serialize::InputArchive& ar, const std::string& path) {
  if (!fs::exists(path)) throw CheckpointError("checkpoint '" + path + "' does not exist");
  if (fs::is_directory(path)) throw CheckpointError("checkpoint '" + path + "' is a directory, not a file");
  try {
    ar.load_from(path);
  } catch (const c10::Error& e) {
    throw CheckpointError("checkpoint '" + path + "' is unreadable (truncated or not a checkpoint): " +
                          e.what_without_backtrace());
  }
}

}  // namespace

std::string config_to_string(const ModelConfig& c) {
  std::ostringstream os;
  os << "kind=" << c.kind << "\ntask=" << c.task << "\nimage_size=" << c.image_size << "\nchannels=" << c.channels
     << "\npatch=" << c.patch << "\nclasses=" << c.classes << "\nwidth=" << c.width << "\ndepth=" << c.depth
     << "\nheads=" << c.heads << "\nmlp_ratio=" << c.mlp_ratio << "\nmax_len=" << c.max_len << "\nvocab=" << c.vocab
     << "\ncnn_width=" << c.cnn_width << "\ncnn_stages=" << c.cnn_stages << "\nsplit=" << c.split
     << "\nsft_rank=" << c.sft_rank << (c.sft_skip == "none" ? "" : "\nsft_skip=" + c.sft_skip) << "\nc3_groups=" << c.c3_groups << "\nc3_keys=" << c.c3_keys
     << "\nseed=" << c.seed << "\nscript_path=" << c.script_path << "\nscript_back_path=" << c.script_back_path
     << "\n";
  return os.str();
}

ModelConfig config_from_string(const std::string& s) {
  ModelConfig c;
  std::istringstream is(s);
  std::string line;
  std::map<std::string, std::int64_t*> ints = {
      {"image_size", &c.image_size}, {"channels", &c.channels},   {"patch", &c.patch},
      {"classes", &c.classes},       {"width", &c.width},         {"depth", &c.depth},
      {"heads", &c.heads},           {"mlp_ratio", &c.mlp_ratio}, {"max_len", &c.max_len},
      {"vocab", &c.vocab},           {"cnn_width", &c.cnn_width}, {"cnn_stages", &c.cnn_stages},
      {"split", &c.split},           {"sft_rank", &c.sft_rank},   {"c3_groups", &c.c3_groups}};
  while (std::getline(is, line)) {
    if (line.empty()) continue;
    auto eq = line.find('=');
    if (eq == std::string::npos) throw std::invalid_argument("config line '" + line + "' is not key=value");
    auto k = line.substr(0, eq), v = line.substr(eq + 1);
    // Whole-value integer parse: "12abc" is an error, not 12.
    auto number = [&]() -> long long {
      std::size_t used = 0;
      long long x = 0;
      try {
        x = std::stoll(v, &used);
      } catch (const std::logic_error&) {
        used = 0;
      }
      if (used == 0 || used != v.size())
        throw std::invalid_argument("config value '" + v + "' of '" + k + "' is not an integer");
      return x;
    };
    if (k == "kind") c.kind = v;
    else if (k == "task") c.task = v;
    else if (k == "c3_keys") c.c3_keys = v;
    else if (k == "sft_skip") c.sft_skip = v;
    else if (k == "script_path") c.script_path = v;
    else if (k == "script_back_path") c.script_back_path = v;
    else if (k == "seed") c.seed = static_cast<std::uint64_t>(number());
    else if (ints.count(k)) *ints[k] = number();
    else throw std::invalid_argument("unknown config key '" + k + "'");
  }
  return c;
}

void save_checkpoint(const std::string& path, const CheckpointParts& p, SaveFaults faults) {
  if (!p.config) throw CheckpointError("save_checkpoint: config is required");
  fs::path target(path);
  fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  std::error_code ec;
  fs::create_directories(dir, ec);
  const std::string tmp = (dir / ("." + target.filename().string() + ".tmp-" + std::to_string(::getpid()))).string();
  try {
    torch::serialize::OutputArchive ar;
    ar.write("meta/format", c10::IValue(kFormat));
    ar.write("meta/fingerprint", c10::IValue(p.fingerprint));
    ar.write("meta/config", c10::IValue(config_to_string(*p.config)));
    ar.write("meta/step", c10::IValue(p.step));
    ar.write("meta/has_edge", c10::IValue(static_cast<std::int64_t>(p.edge != nullptr)));
    ar.write("meta/has_cloud", c10::IValue(static_cast<std::int64_t>(p.cloud != nullptr)));
    if (p.edge) write_half(ar, "edge", *p.edge);
    if (p.cloud) write_half(ar, "cloud", *p.cloud);
    if (p.edge_optim) {
      torch::serialize::OutputArchive o;
      p.edge_optim->save(o);
      ar.write("edge_optim", o);
    }
    if (p.cloud_optim) {
      torch::serialize::OutputArchive o;
      p.cloud_optim->save(o);
      ar.write("cloud_optim", o);
    }
    ar.save_to(tmp);
    fsync_path(tmp, false);
    if (faults.fail_before_rename) throw CheckpointError("injected fault before rename");
    fs::rename(tmp, target);
    fsync_path(dir.string(), true);
  } catch (...) {
    fs::remove(tmp, ec);
    throw;
  }
}

std::int64_t load_checkpoint(const std::string& path, CheckpointParts& p) {
  torch::serialize::InputArchive ar;
  open_archive(ar, path);
  if (read_int(ar, "meta/format", path) != kFormat) throw CheckpointError(path + ": unsupported checkpoint format");
  auto fp = read_string(ar, "meta/fingerprint", path);
  if (fp != p.fingerprint)
    throw CheckpointError(path + ": model fingerprint " + fp + " does not match this model's " + p.fingerprint +
                          " (different architecture, split or variant)");
  if (p.edge && !read_int(ar, "meta/has_edge", path)) throw CheckpointError(path + ": holds no edge half");
  if (p.cloud && !read_int(ar, "meta/has_cloud", path)) throw CheckpointError(path + ": holds no cloud half");
  if (p.edge) read_half(ar, "edge", *p.edge, path);
  if (p.cloud) read_half(ar, "cloud", *p.cloud, path);
  auto read_optim = [&](const char* key, Optimizer* o) {
    if (!o) return;
    torch::serialize::InputArchive sub;
    if (!ar.try_read(key, sub)) throw CheckpointError(path + ": missing optimizer state '" + key + "'");
    o->load(sub);
  };
  read_optim("edge_optim", p.edge_optim);
  read_optim("cloud_optim", p.cloud_optim);
  p.step = read_int(ar, "meta/step", path);
  return p.step;
}

ModelConfig checkpoint_config(const std::string& path) {
  torch::serialize::InputArchive ar;
  open_archive(ar, path);
  return config_from_string(read_string(ar, "meta/config", path));
}

}  // namespace seam::training
