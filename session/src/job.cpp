#include "seam/session/job.hpp"

#include <openssl/evp.h>
#include <torch/torch.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>

#include "seam/compression/codec.hpp"
#include "seam/session/protocol.hpp"
#include "seam/session/session.hpp"
#include "seam/training/checkpoint.hpp"
#include "seam/training/edge_half.hpp"
#include "state_store.hpp"

namespace seam::session {

namespace fs = std::filesystem;
namespace t = seam::training;

namespace {

std::string hex(const unsigned char* p, unsigned n) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (unsigned i = 0; i < n; ++i) {
    s += d[p[i] >> 4];
    s += d[p[i] & 15];
  }
  return s;
}

struct Sha256 {
  Sha256() : ctx(EVP_MD_CTX_new()) {
    if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) != 1) throw std::runtime_error("SHA-256 unavailable");
  }
  ~Sha256() { EVP_MD_CTX_free(ctx); }
  void add(const void* p, std::size_t n) { EVP_DigestUpdate(ctx, p, n); }
  void add(const std::string& s) { add(s.data(), s.size()); }
  std::string done() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    EVP_DigestFinal_ex(ctx, md, &n);
    return hex(md, n);
  }
  EVP_MD_CTX* ctx;
};

std::string file_sha256(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("job: cannot read '" + path + "'");
  Sha256 h;
  std::vector<char> buf(1 << 16);
  while (f) {
    f.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    h.add(buf.data(), static_cast<std::size_t>(f.gcount()));
  }
  return h.done();
}

std::map<std::string, std::string> parse_lines(const std::string& text, const std::string& what) {
  std::map<std::string, std::string> kv;
  std::istringstream is(text);
  std::string line;
  while (std::getline(is, line)) {
    if (line.empty() || line[0] == '#') continue;
    auto eq = line.find('=');
    if (eq == std::string::npos) throw std::invalid_argument(what + ": line '" + line + "' is not key=value");
    if (!kv.emplace(line.substr(0, eq), line.substr(eq + 1)).second)
      throw std::invalid_argument(what + ": key '" + line.substr(0, eq) + "' given twice");
  }
  return kv;
}

// Whole-value parse: "12abc" is an error, not 12.
template <class T>
T parse_number(const std::string& k, const std::string& v) {
  std::size_t used = 0;
  T x{};
  try {
    if constexpr (std::is_floating_point_v<T>) x = static_cast<T>(std::stod(v, &used));
    else x = static_cast<T>(std::stoll(v, &used));
  } catch (const std::logic_error&) {
    used = 0;
  }
  if (used == 0 || used != v.size())
    throw std::invalid_argument("job: value '" + v + "' of '" + k + "' is not " +
                                (std::is_floating_point_v<T> ? "a number" : "an integer"));
  return x;
}

std::string num(double x) {
  std::ostringstream os;
  os.precision(17);
  os << x;
  return os.str();
}

}  // namespace

std::string sha256_hex(const std::string& bytes) {
  Sha256 h;
  h.add(bytes);
  return h.done();
}

std::string weights_sha256(const t::ModelHalf& half) {
  Sha256 h;
  auto add_all = [&](const t::NamedTensors& ts) {
    for (const auto& [name, tensor] : ts) {
      at::Tensor c = tensor.detach().contiguous();
      std::ostringstream os;
      os << name << '|' << c.sizes() << '|' << c.scalar_type() << '|';
      h.add(os.str());
      h.add(c.data_ptr(), c.nbytes());
    }
  };
  add_all(half.named_parameters());
  add_all(half.named_buffers());
  return h.done();
}

void check_job(const JobSpec& j) {
  if (j.half.task != j.model.task)
    throw std::invalid_argument("job: training task '" + j.half.task + "' differs from the model's task '" + j.model.task + "'");
  std::string up, down;
  try {
    up = compression::make_codec(j.half.up_codec)->spec();
    down = compression::make_codec(j.half.down_codec)->spec();
  } catch (const std::exception& e) {
    throw std::invalid_argument(std::string("job: ") + e.what());
  }
  if (j.model.c3_groups > 0 && spec_has_stage(up, "delta"))
    throw std::invalid_argument(
        "job: up codec '" + up + "' uses delta after C3 (c3_groups=" + std::to_string(j.model.c3_groups) +
        "): delta keeps one buffer per stable sample id, but each C3 row binds a group of samples that changes every "
        "epoch; use quant after C3 instead");
  if (spec_has_stage(down, "delta"))
    throw std::invalid_argument("job: down codec '" + down +
                                "' uses delta: AC-SGD compresses gradients directly (quant), not as deltas");
  t::check_model_config(j.model);  // SFT on a CNN, split out of range, ...
}

std::string job_to_string(const JobSpec& j) {
  std::ostringstream os;
  std::istringstream cfg(t::config_to_string(j.model));
  std::string line;
  while (std::getline(cfg, line))
    if (!line.empty()) os << "model." << line << "\n";
  const auto& o = j.half.optim;
  os << "up_codec=" << j.half.up_codec << "\ndown_codec=" << j.half.down_codec << "\ncodec_seed=" << j.half.seed
     << "\noptim.kind=" << o.kind << "\noptim.lr=" << num(o.lr) << "\noptim.weight_decay=" << num(o.weight_decay)
     << "\noptim.momentum=" << num(o.momentum) << "\noptim.beta1=" << num(o.beta1) << "\noptim.beta2=" << num(o.beta2)
     << "\noptim.eps=" << num(o.eps) << "\noptim.warmup_steps=" << o.warmup_steps
     << "\noptim.total_steps=" << o.total_steps << "\noptim.schedule=" << o.schedule
     << "\noptim.clip_norm=" << num(o.clip_norm) << "\npretrained=" << j.pretrained << "\n";
  return os.str();
}

JobSpec job_from_string(const std::string& text) {
  JobSpec j;
  std::string model;
  for (const auto& [k, v] : parse_lines(text, "job")) {
    auto& o = j.half.optim;
    if (k.rfind("model.", 0) == 0) model += k.substr(6) + "=" + v + "\n";
    else if (k == "up_codec") j.half.up_codec = v;
    else if (k == "down_codec") j.half.down_codec = v;
    else if (k == "codec_seed") j.half.seed = static_cast<std::uint64_t>(parse_number<long long>(k, v));
    else if (k == "optim.kind") o.kind = v;
    else if (k == "optim.lr") o.lr = parse_number<double>(k, v);
    else if (k == "optim.weight_decay") o.weight_decay = parse_number<double>(k, v);
    else if (k == "optim.momentum") o.momentum = parse_number<double>(k, v);
    else if (k == "optim.beta1") o.beta1 = parse_number<double>(k, v);
    else if (k == "optim.beta2") o.beta2 = parse_number<double>(k, v);
    else if (k == "optim.eps") o.eps = parse_number<double>(k, v);
    else if (k == "optim.warmup_steps") o.warmup_steps = parse_number<long long>(k, v);
    else if (k == "optim.total_steps") o.total_steps = parse_number<long long>(k, v);
    else if (k == "optim.schedule") o.schedule = v;
    else if (k == "optim.clip_norm") o.clip_norm = parse_number<double>(k, v);
    else if (k == "pretrained") j.pretrained = v;
    else throw std::invalid_argument("job: unknown key '" + k + "'");
  }
  try {
    j.model = t::config_from_string(model);
  } catch (const std::exception& e) {
    throw std::invalid_argument(std::string("job: model.") + e.what());
  }
  j.half.task = j.model.task;
  return j;
}

std::string job_fields(const JobSpec& j, const std::string& edge_sha) {
  // Paths are left out: the same job may sit at another path on each machine;
  // the initial weights are covered by their hash. Codec specs are canonical.
  std::ostringstream os;
  std::istringstream in(job_to_string(j));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model.script_", 0) == 0 || line.rfind("pretrained=", 0) == 0) continue;
    if (line.rfind("up_codec=", 0) == 0) line = "up_codec=" + compression::make_codec(j.half.up_codec)->spec();
    if (line.rfind("down_codec=", 0) == 0) line = "down_codec=" + compression::make_codec(j.half.down_codec)->spec();
    os << line << "\n";
  }
  os << "edge_weights_sha256=" << edge_sha << "\n";
  return os.str();
}

std::string compare_fields(const std::string& mine, const std::string& theirs) {
  if (mine == theirs) return "";
  std::map<std::string, std::string> b;
  std::vector<std::pair<std::string, std::string>> a;  // in line order: config fields before the weights' hash
  try {
    b = parse_lines(theirs, "job fields");
    auto mine_kv = parse_lines(mine, "job fields");
    std::istringstream is(mine);
    std::string line;
    while (std::getline(is, line)) {
      auto eq = line.find('=');
      if (eq != std::string::npos) a.emplace_back(line.substr(0, eq), mine_kv[line.substr(0, eq)]);
    }
  } catch (const std::exception& e) {
    return e.what();
  }
  for (const auto& [k, v] : a) {
    auto it = b.find(k);
    if (it == b.end()) return "field '" + k + "' is missing from the peer's job (here: '" + v + "')";
    if (it->second != v) return "field '" + k + "' differs: here '" + v + "', peer '" + it->second + "'";
  }
  for (const auto& [k, v] : b) {
    bool known = false;
    for (const auto& kv : a) known = known || kv.first == k;
    if (!known) return "field '" + k + "' is unknown here (peer: '" + v + "')";
  }
  return "job fields differ in layout";
}

PreparedJob in_memory_job(const JobSpec& j, const t::ModelHalf& edge) {
  PreparedJob p;
  p.spec = j;
  p.edge_weights_sha256 = weights_sha256(edge);
  p.fields = job_fields(j, p.edge_weights_sha256);
  p.fingerprint = sha256_hex(p.fields);
  return p;
}

namespace {
constexpr const char* kScriptFront = "edge.ts";  // a TorchScript job's front file: an edge downloads it
constexpr const char* kScriptBack = "cloud.ts";  // its back file: the cloud's alone

// A TorchScript job's files live in its folder under fixed names, whatever
// the paths it was prepared from (and whatever job.conf says).
void place_scripts(t::ModelConfig& m, const std::string& dir) {
  if (m.kind != "torchscript") return;
  m.script_path = dir + "/" + kScriptFront;
  m.script_back_path = dir + "/" + kScriptBack;  // absent from an edge's copy, and never opened there
}
}  // namespace

void prepare_job(const JobSpec& j, const std::string& dir) {
  check_job(j);
  const bool script = j.model.kind == "torchscript";
  if (script && j.model.script_back_path.empty())
    throw std::invalid_argument(
        "job: a TorchScript job needs a front/back pair of files (script and script-back), so that an edge receives "
        "the front alone and never the cloud's blocks; from Python, save torch.jit.script(seq[:k]) and "
        "torch.jit.script(seq[k:])");
  if (script && j.model.split != 1)
    throw std::invalid_argument("job: a TorchScript front/back pair is split between its two files: split must be 1 (got " +
                                std::to_string(j.model.split) + ")");
  if (fs::exists(dir)) throw std::runtime_error("job folder '" + dir + "' exists; remove it to prepare the job again");
  const std::string tmp = dir + ".tmp-" + std::to_string(::getpid());
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  try {
    JobSpec stored = j;
    std::vector<std::string> files = {"job.conf", "edge_init.pt", "cloud_init.pt"};
    if (script) {  // copied first, and the halves built from the copies: the bytes the manifest hashes
      for (auto [from, to] : {std::pair{j.model.script_path, kScriptFront}, std::pair{j.model.script_back_path, kScriptBack}}) {
        std::error_code ec;
        if (!fs::is_regular_file(from, ec)) throw std::invalid_argument("job: TorchScript file '" + from + "' does not exist");
        fs::copy_file(from, tmp + "/" + to);
        files.push_back(to);
      }
      place_scripts(stored.model, tmp);
    }
    auto sm = t::build_split_model(stored.model, j.pretrained);
    auto write_half = [&](const char* file, t::ModelHalf* edge, t::ModelHalf* cloud) {
      t::CheckpointParts parts{&stored.model, edge, cloud, nullptr, nullptr, 0, "job-init"};
      t::save_checkpoint(tmp + "/" + file, parts);
    };
    write_half("edge_init.pt", &sm.edge, nullptr);
    write_half("cloud_init.pt", nullptr, &sm.cloud);
    if (script) {  // job.conf names the files as they sit in the job's folder
      stored.model.script_path = kScriptFront;
      stored.model.script_back_path = kScriptBack;
    }
    detail::write_file_synced(tmp + "/job.conf", job_to_string(stored));
    std::ostringstream man;
    for (const auto& f : files) man << "sha256." << f << "=" << file_sha256(tmp + "/" + f) << "\n";
    man << "edge_weights_sha256=" << weights_sha256(sm.edge) << "\n";
    detail::write_file_synced(tmp + "/manifest", man.str());
    detail::rename_synced(tmp, dir);
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }
}

PreparedJob load_job(const std::string& dir) {
  if (!fs::is_directory(dir)) throw std::runtime_error("job folder '" + dir + "' does not exist (run prepare first)");
  auto man = parse_lines(detail::read_file(dir + "/manifest"), dir + "/manifest");
  const bool has_cloud = fs::exists(dir + "/cloud_init.pt");
  for (const char* f : {"job.conf", "edge_init.pt", "cloud_init.pt", kScriptFront, kScriptBack}) {
    const std::string name = f;
    const bool script_file = name == kScriptFront || name == kScriptBack;
    auto it = man.find(std::string("sha256.") + f);
    if (it == man.end()) {
      if (script_file) continue;  // a native model's job
      throw std::runtime_error(dir + "/manifest: no hash for '" + f + "'");
    }
    if (!has_cloud && (name == "cloud_init.pt" || name == kScriptBack)) continue;  // an edge's copy
    if (file_sha256(dir + "/" + f) != it->second)
      throw std::runtime_error("job file '" + dir + "/" + f + "' does not match its manifest hash (changed or damaged)");
  }
  PreparedJob p;
  p.spec = job_from_string(detail::read_file(dir + "/job.conf"));
  if (p.spec.model.kind == "torchscript") {
    for (const char* f : {kScriptFront, kScriptBack})
      if ((has_cloud || std::string(f) == kScriptFront) && !man.count(std::string("sha256.") + f))
        throw std::runtime_error(dir + "/manifest: a TorchScript job without a hash for '" + f + "'");
    if (p.spec.model.split != 1)
      throw std::runtime_error(dir + "/job.conf: a TorchScript job's split must be 1 (its front/back pair)");
  }
  place_scripts(p.spec.model, dir);
  check_job(p.spec);
  p.dir = dir;
  p.has_cloud = has_cloud;
  p.edge_weights_sha256 = man.count("edge_weights_sha256") ? man["edge_weights_sha256"] : "";
  if (p.edge_weights_sha256.empty()) throw std::runtime_error(dir + "/manifest: no edge_weights_sha256");
  p.fields = job_fields(p.spec, p.edge_weights_sha256);
  p.fingerprint = sha256_hex(p.fields);
  return p;
}

namespace {
t::ModelHalf load_half(const PreparedJob& j, bool edge) {
  if (!edge && !j.has_cloud)
    throw std::runtime_error("job '" + j.dir + "' has no cloud half (an edge's copy of the job)");
  // The edge never builds the cloud's blocks (a device may not hold them).
  t::ModelHalf half = edge ? t::build_edge_half(j.spec.model)
                           : std::move(t::build_split_model(j.spec.model, "", /*derive=*/false).cloud);
  t::CheckpointParts parts;
  parts.config = &j.spec.model;
  (edge ? parts.edge : parts.cloud) = &half;
  parts.fingerprint = "job-init";
  t::load_checkpoint(j.dir + (edge ? "/edge_init.pt" : "/cloud_init.pt"), parts);
  if (edge && weights_sha256(half) != j.edge_weights_sha256)
    throw std::runtime_error("job '" + j.dir + "': edge weights do not match the manifest's edge_weights_sha256");
  return half;
}
}  // namespace

t::ModelHalf load_edge_half(const PreparedJob& j) { return load_half(j, true); }
t::ModelHalf load_cloud_half(const PreparedJob& j) { return load_half(j, false); }

}  // namespace seam::session

// ---------------------------------------------------------------- download

namespace seam::session {

namespace {
bool offered(const std::string& file) {
  for (const char* f : kEdgeJobFiles)
    if (file == f) return true;
  return false;
}
}  // namespace

transport::Message serve_fetch(const PreparedJob& job, const transport::Fetch& f) {
  if (!offered(f.file))
    return error_message(SessionErrc::bad_field, "fetch: file '" + f.file +
                                                     "' is not offered (an edge may fetch manifest, job.conf, edge_init.pt "
                                                     "and, for a TorchScript job, edge.ts)");
  const std::string path = job.dir + "/" + f.file;
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return error_message(SessionErrc::handler_failed, "fetch: cannot read the job's " + f.file);
  const auto total = static_cast<std::uint64_t>(in.tellg());
  if (f.offset > total)
    return error_message(SessionErrc::bad_field, "fetch: offset " + std::to_string(f.offset) + " is past the end of " +
                                                     f.file + " (" + std::to_string(total) + " bytes)");
  const std::uint32_t cap = f.max_bytes == 0 ? kFetchChunkBytes : std::min(f.max_bytes, kFetchChunkBytes);
  const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(cap, total - f.offset));
  transport::Section s;
  s.info.name = "data";
  s.info.dtype = transport::WireDType::u8;
  s.info.shape = {static_cast<std::int64_t>(n)};
  s.bytes.resize(n);
  in.seekg(static_cast<std::streamoff>(f.offset));
  if (n && !in.read(reinterpret_cast<char*>(s.bytes.data()), static_cast<std::streamsize>(n)))
    return error_message(SessionErrc::handler_failed, "fetch: reading the job's " + f.file + " failed");
  transport::Message m;
  m.body = transport::FetchReply{f.file, f.offset, total};
  m.sections.push_back(std::move(s));
  return m;
}

namespace {
// One file, chunk by chunk, into `path`; returns its size.
std::uint64_t fetch_file(SessionLink& link, const std::string& job, const std::string& file, const std::string& path) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw std::runtime_error("fetch: cannot write '" + path + "'");
  std::uint64_t offset = 0, total = 0;
  do {
    transport::Message r = link.fetch(transport::Fetch{job, file, offset, kFetchChunkBytes});
    throw_if_error(r);
    const auto* rep = r.as<transport::FetchReply>();
    if (!rep) throw std::runtime_error(std::string("fetch: expected a fetch reply, got ") + transport::to_string(r.type()));
    if (rep->file != file || rep->offset != offset || r.sections.size() != 1 || r.sections[0].info.name != "data")
      throw std::runtime_error("fetch: the reply for " + file + " at offset " + std::to_string(offset) +
                               " is for another file, offset or has no data section");
    if (offset > 0 && rep->total != total)
      throw std::runtime_error("fetch: " + file + " changed size during the download");
    total = rep->total;
    const auto& data = r.sections[0].bytes;
    if (data.empty() && offset < total) throw std::runtime_error("fetch: empty chunk of " + file + " before its end");
    if (data.size() > total - offset) throw std::runtime_error("fetch: chunk of " + file + " runs past its size");
    out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
    offset += data.size();
  } while (offset < total);
  out.flush();
  if (!out) throw std::runtime_error("fetch: writing '" + path + "' failed");
  return total;
}
}  // namespace

PreparedJob fetch_job(SessionLink& link, const std::string& job_name, const std::string& dir) {
  if (fs::exists(dir)) throw std::runtime_error("fetch: job folder '" + dir + "' exists; remove it to download again");
  const std::string tmp = dir + ".part-" + std::to_string(::getpid());
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  try {
    fetch_file(link, job_name, "manifest", tmp + "/manifest");
    const auto man = parse_lines(detail::read_file(tmp + "/manifest"), "fetched manifest");
    for (const char* f : kEdgeJobFiles) {
      if (std::string(f) == "manifest") continue;
      auto it = man.find(std::string("sha256.") + f);
      if (it == man.end() && std::string(f) == kScriptFront) continue;  // a native model's job
      if (it == man.end()) throw std::runtime_error("fetch: the manifest has no hash for '" + std::string(f) + "'");
      fetch_file(link, job_name, f, tmp + "/" + f);
      if (file_sha256(tmp + "/" + f) != it->second)
        throw std::runtime_error("fetch: " + std::string(f) + " does not match the manifest's SHA-256 (damaged in transit)");
    }
    detail::rename_synced(tmp, dir);
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }
  return load_job(dir);
}

}  // namespace seam::session
