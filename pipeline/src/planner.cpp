#include "seam/pipeline/planner.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <iomanip>
#include <limits>
#include <map>
#include <sstream>

namespace seam::pipeline {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

std::string mib(std::uint64_t bytes) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(1) << static_cast<double>(bytes) / (1024.0 * 1024.0) << " MiB";
  return s.str();
}

void check_inputs(const ModelProfile& m, const Fleet& f) {
  if (m.blocks.empty()) throw PlanError("the profile has no blocks");
  if (f.types.empty()) throw PlanError("the fleet has no device types");
  for (const auto& t : f.types) {
    if (t.count < 1) throw PlanError("device type '" + t.name + "': count must be >= 1");
    if (t.block_s.empty() && !(t.speed > 0)) throw PlanError("device type '" + t.name + "': speed must be > 0");
    if (!t.block_s.empty() && t.block_s.size() != m.blocks.size())
      throw PlanError("device type '" + t.name + "': its profile has " + std::to_string(t.block_s.size()) +
                      " blocks, the model " + std::to_string(m.blocks.size()));
    if (!(t.bandwidth_bytes_per_s > 0)) throw PlanError("device type '" + t.name + "': bandwidth must be > 0");
  }
  // A block that fits on no device is an error of its own, named.
  std::uint64_t largest = 0;
  std::string largest_name;
  for (const auto& t : f.types)
    if (t.memory_bytes >= largest) {
      largest = t.memory_bytes;
      largest_name = t.name;
    }
  for (std::size_t k = 0; k < m.blocks.size(); ++k) {
    const auto& b = m.blocks[k];
    const auto need = b.param_bytes + b.activation_bytes;
    if (need > largest)
      throw PlanError("block " + std::to_string(k) + " ('" + b.name + "') fits on no device: it needs " + mib(need) +
                      " (parameters " + mib(b.param_bytes) + ", activations " + mib(b.activation_bytes) +
                      ") and the largest device memory is " + mib(largest) + " (type '" + largest_name + "')");
  }
}

bool better(double a, std::size_t a_stages, double b, std::size_t b_stages) {
  return a < b || (a == b && a_stages < b_stages);
}

}  // namespace

int Fleet::devices() const {
  int n = 0;
  for (const auto& t : types) n += t.count;
  return n;
}

Stage stage_cost(const ModelProfile& m, const Fleet& f, std::int64_t begin, std::int64_t end, int type) {
  const auto& t = f.types.at(static_cast<std::size_t>(type));
  Stage s;
  s.begin = begin;
  s.end = end;
  s.type = type;
  std::uint64_t params = 0, act = 0;
  for (std::int64_t k = begin; k < end; ++k) {
    const auto& b = m.blocks.at(static_cast<std::size_t>(k));
    s.compute_s += t.block_s.empty() ? b.compute_s / t.speed : t.block_s[static_cast<std::size_t>(k)];
    params += b.param_bytes;
    act = std::max(act, b.activation_bytes);
  }
  s.memory_bytes = params + act;
  s.send_s = static_cast<double>(m.blocks.at(static_cast<std::size_t>(end - 1)).output_bytes) / t.bandwidth_bytes_per_s;
  return s;
}

Plan plan_pipeline(const ModelProfile& m, const Fleet& f) {
  check_inputs(m, f);
  const auto L = static_cast<std::int64_t>(m.blocks.size());
  const auto T = f.types.size();
  // "Devices used" is a count per type, in mixed radix.
  std::vector<std::size_t> stride(T);
  std::size_t used_states = 1;
  for (std::size_t t = 0; t < T; ++t) {
    stride[t] = used_states;
    used_states *= static_cast<std::size_t>(f.types[t].count) + 1;
  }
  const double cells = static_cast<double>(L) * static_cast<double>(used_states) * static_cast<double>(T);
  if (cells > 5e7)
    throw PlanError("fleet too large for the planner's table (" + std::to_string(static_cast<long long>(cells)) +
                    " cells): group identical devices into fewer types");
  struct Cell {
    double value = -1;  // -1: not computed; kInf: infeasible
    std::size_t stages = 0;
    std::int64_t end = 0;
    int next = -1;
  };
  std::vector<Cell> memo(static_cast<std::size_t>(cells));
  auto count_of = [&](std::size_t used, std::size_t t) {
    return static_cast<int>((used / stride[t]) % (static_cast<std::size_t>(f.types[t].count) + 1));
  };
  // best(i, used, t): blocks [i, L) with the stage starting at i on a device
  // of type t, `used` counting that device.
  std::function<const Cell&(std::int64_t, std::size_t, std::size_t)> best = [&](std::int64_t i, std::size_t used,
                                                                                std::size_t t) -> const Cell& {
    Cell& c = memo[(static_cast<std::size_t>(i) * used_states + used) * T + t];
    if (c.value >= 0) return c;
    c.value = kInf;
    for (std::int64_t j = i + 1; j <= L; ++j) {
      const Stage s = stage_cost(m, f, i, j, static_cast<int>(t));
      if (s.memory_bytes > f.types[t].memory_bytes) break;  // memory only grows with j
      if (j == L) {
        if (better(s.time(), 1, c.value, c.stages)) c = Cell{s.time(), 1, j, -1};
        continue;
      }
      for (std::size_t n = 0; n < T; ++n) {
        if (count_of(used, n) >= f.types[n].count) continue;
        const Cell& rest = best(j, used + stride[n], n);
        if (rest.value == kInf) continue;
        const double v = std::max(s.time(), rest.value);
        if (better(v, rest.stages + 1, c.value, c.stages)) c = Cell{v, rest.stages + 1, j, static_cast<int>(n)};
      }
    }
    return c;
  };
  double top = kInf;
  std::size_t top_stages = 0;
  int first = -1;
  for (std::size_t t = 0; t < T; ++t) {
    const Cell& c = best(0, stride[t], t);
    if (c.value != kInf && better(c.value, c.stages, top, top_stages)) {
      top = c.value;
      top_stages = c.stages;
      first = static_cast<int>(t);
    }
  }
  if (first < 0) {
    std::uint64_t need = 0, have = 0;
    for (const auto& b : m.blocks) need += b.param_bytes;
    for (const auto& t : f.types) have += t.memory_bytes * static_cast<std::uint64_t>(t.count);
    throw PlanError("no plan fits: the model's parameters need " + mib(need) + " and the fleet's " +
                    std::to_string(f.devices()) + " devices hold " + mib(have) +
                    " in all (each stage also holds its largest activation)");
  }
  // Second pass, exact tie-break: among the plans whose every stage takes at
  // most the optimal bottleneck, the fewest stages. (Carrying the stage count
  // through the first pass is not exact: max() hides a rest's count where a
  // stage before it dominates.) Same table shape; value = fewest stages.
  struct Fewest {
    int stages = -1;  // -1: not computed; kNone: no plan within the bottleneck
    std::int64_t end = 0;
    int next = -1;
  };
  constexpr int kNone = std::numeric_limits<int>::max();
  std::vector<Fewest> fewest_memo(static_cast<std::size_t>(cells));
  std::function<const Fewest&(std::int64_t, std::size_t, std::size_t)> fewest = [&](std::int64_t i, std::size_t used,
                                                                                   std::size_t t) -> const Fewest& {
    Fewest& c = fewest_memo[(static_cast<std::size_t>(i) * used_states + used) * T + t];
    if (c.stages >= 0) return c;
    c.stages = kNone;
    for (std::int64_t j = i + 1; j <= L; ++j) {
      const Stage s = stage_cost(m, f, i, j, static_cast<int>(t));
      if (s.memory_bytes > f.types[t].memory_bytes) break;
      if (s.time() > top) continue;
      if (j == L) {
        if (1 < c.stages) c = Fewest{1, j, -1};
        continue;
      }
      for (std::size_t n = 0; n < T; ++n) {
        if (count_of(used, n) >= f.types[n].count) continue;
        const Fewest& rest = fewest(j, used + stride[n], n);
        if (rest.stages == kNone) continue;
        if (rest.stages + 1 < c.stages) c = Fewest{rest.stages + 1, j, static_cast<int>(n)};
      }
    }
    return c;
  };
  int fewest_first = -1, fewest_stages = kNone;
  for (std::size_t t = 0; t < T; ++t) {
    const Fewest& c = fewest(0, stride[t], t);
    if (c.stages < fewest_stages) {
      fewest_stages = c.stages;
      fewest_first = static_cast<int>(t);
    }
  }
  if (fewest_first >= 0) first = fewest_first;  // always found: the first pass's plan qualifies
  Plan p;
  p.bottleneck_s = top;
  std::int64_t i = 0;
  std::size_t used = stride[static_cast<std::size_t>(first)];
  std::size_t t = static_cast<std::size_t>(first);
  while (true) {
    const Fewest& c = fewest(i, used, t);
    p.stages.push_back(stage_cost(m, f, i, c.end, static_cast<int>(t)));
    if (c.next < 0) break;
    i = c.end;
    t = static_cast<std::size_t>(c.next);
    used += stride[t];
  }
  return p;
}

Plan brute_force_plan(const ModelProfile& m, const Fleet& f) {
  check_inputs(m, f);
  const auto L = static_cast<std::int64_t>(m.blocks.size());
  if (L > 12 || f.devices() > 6) throw PlanError("brute force is for small instances (<= 12 blocks, <= 6 devices)");
  Plan best;
  best.bottleneck_s = kInf;
  std::vector<int> left;
  for (const auto& t : f.types) left.push_back(t.count);
  std::vector<Stage> chain;
  // Extend `chain` from block i with every stage length and every type left.
  std::function<void(std::int64_t, double)> extend = [&](std::int64_t i, double worst) {
    if (i == L) {
      if (better(worst, chain.size(), best.bottleneck_s, best.stages.size())) {
        best.bottleneck_s = worst;
        best.stages = chain;
      }
      return;
    }
    for (std::size_t t = 0; t < f.types.size(); ++t) {
      if (left[t] == 0) continue;
      --left[t];
      for (std::int64_t j = i + 1; j <= L; ++j) {
        Stage s = stage_cost(m, f, i, j, static_cast<int>(t));
        if (s.memory_bytes > f.types[t].memory_bytes) continue;
        chain.push_back(s);
        extend(j, std::max(worst, s.time()));
        chain.pop_back();
      }
      ++left[t];
    }
  };
  extend(0, 0.0);
  if (best.stages.empty()) throw PlanError("no plan fits (brute force)");
  return best;
}

Plan best_single_device(const ModelProfile& m, const Fleet& f) {
  Plan best;
  best.bottleneck_s = kInf;
  for (std::size_t t = 0; t < f.types.size(); ++t) {
    Stage s = stage_cost(m, f, 0, static_cast<std::int64_t>(m.blocks.size()), static_cast<int>(t));
    if (s.memory_bytes > f.types[t].memory_bytes) continue;
    if (s.time() < best.bottleneck_s) {
      best.bottleneck_s = s.time();
      best.stages = {s};
    }
  }
  if (best.stages.empty()) best.bottleneck_s = 0;
  return best;
}

Plan even_split(const ModelProfile& m, const Fleet& f) {
  std::vector<int> order;
  for (std::size_t t = 0; t < f.types.size(); ++t)
    for (int k = 0; k < f.types[t].count; ++k) order.push_back(static_cast<int>(t));
  const auto L = static_cast<std::int64_t>(m.blocks.size());
  const auto n = std::min<std::int64_t>(L, static_cast<std::int64_t>(order.size()));
  Plan p;
  std::int64_t begin = 0;
  for (std::int64_t s = 0; s < n; ++s) {
    const std::int64_t len = L / n + (s < L % n ? 1 : 0);
    Stage st = stage_cost(m, f, begin, begin + len, order[static_cast<std::size_t>(s)]);
    if (st.memory_bytes > f.types[static_cast<std::size_t>(st.type)].memory_bytes) return Plan{};
    p.bottleneck_s = std::max(p.bottleneck_s, st.time());
    p.stages.push_back(st);
    begin += len;
  }
  return p;
}

std::string describe(const Plan& p, const ModelProfile& m, const Fleet& f) {
  std::ostringstream o;
  o << std::setprecision(4);
  for (const auto& s : p.stages) {
    o << "  blocks [" << s.begin << ", " << s.end << ") on '" << f.types[static_cast<std::size_t>(s.type)].name
      << "': compute " << s.compute_s * 1e3 << " ms, send " << s.send_s * 1e3 << " ms, memory " << mib(s.memory_bytes)
      << " (cut after '" << m.blocks[static_cast<std::size_t>(s.end - 1)].name << "')\n";
  }
  o << "  bottleneck " << p.bottleneck_s * 1e3 << " ms per micro-batch, " << p.throughput() << " micro-batches/s\n";
  return o.str();
}

// ---------------------------------------------------------------- files

void write_profile(const ModelProfile& p, const std::string& path) {
  std::ofstream o(path);
  if (!o) throw std::runtime_error("cannot write profile '" + path + "'");
  o << "seam-profile 1\nmodel " << p.model << "\ncodec " << p.codec << "\nmicro_batch " << p.micro_batch << "\n";
  o << "# block <name> <compute_s> <param_bytes> <activation_bytes> <output_bytes>\n";
  o << std::setprecision(9);
  for (const auto& b : p.blocks)
    o << "block " << b.name << ' ' << b.compute_s << ' ' << b.param_bytes << ' ' << b.activation_bytes << ' '
      << b.output_bytes << '\n';
  if (!o) throw std::runtime_error("cannot write profile '" + path + "'");
}

ModelProfile read_profile(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open profile '" + path + "'");
  ModelProfile p;
  std::string line;
  int n = 0;
  bool header = false;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty() || line[0] == '#') continue;
    std::istringstream s(line);
    std::string key;
    s >> key;
    auto bad = [&](const std::string& why) {
      return std::runtime_error("profile '" + path + "' line " + std::to_string(n) + ": " + why);
    };
    if (key == "seam-profile") {
      int v = 0;
      if (!(s >> v) || v != 1) throw bad("unsupported version (expected 'seam-profile 1')");
      header = true;
    } else if (!header) {
      throw bad("not a profile file (first line must be 'seam-profile 1')");
    } else if (key == "model" || key == "codec") {
      std::string rest;
      std::getline(s >> std::ws, rest);
      (key == "model" ? p.model : p.codec) = rest;
    } else if (key == "micro_batch") {
      if (!(s >> p.micro_batch) || p.micro_batch < 1) throw bad("micro_batch must be a positive integer");
    } else if (key == "block") {
      BlockProfile b;
      if (!(s >> b.name >> b.compute_s >> b.param_bytes >> b.activation_bytes >> b.output_bytes) || b.compute_s < 0)
        throw bad("expected 'block <name> <compute_s> <param_bytes> <activation_bytes> <output_bytes>'");
      p.blocks.push_back(b);
    } else {
      throw bad("unknown key '" + key + "'");
    }
  }
  if (!header) throw std::runtime_error("profile '" + path + "' is empty");
  if (p.blocks.empty()) throw std::runtime_error("profile '" + path + "' has no blocks");
  return p;
}

Fleet read_fleet(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open fleet file '" + path + "'");
  Fleet f;
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (auto h = line.find('#'); h != std::string::npos) line.resize(h);
    std::istringstream s(line);
    std::string kv;
    DeviceType t;
    bool any = false, has_memory = false, has_bw = false;
    while (s >> kv) {
      any = true;
      const auto eq = kv.find('=');
      auto bad = [&](const std::string& why) {
        return std::runtime_error("fleet '" + path + "' line " + std::to_string(n) + ": " + why);
      };
      if (eq == std::string::npos) throw bad("expected key=value, got '" + kv + "'");
      const std::string key = kv.substr(0, eq), val = kv.substr(eq + 1);
      auto num = [&] {
        try {
          std::size_t used = 0;
          const double v = std::stod(val, &used);
          if (used != val.size() || !(v > 0)) throw std::invalid_argument("");
          return v;
        } catch (const std::exception&) {
          throw bad("'" + key + "' needs a positive number, got '" + val + "'");
        }
      };
      if (key == "name") t.name = val;
      else if (key == "count") t.count = static_cast<int>(num());
      else if (key == "speed") t.speed = num();
      else if (key == "memory_mb") t.memory_bytes = static_cast<std::uint64_t>(num() * 1024 * 1024), has_memory = true;
      else if (key == "bandwidth_mbit") t.bandwidth_bytes_per_s = num() * 1e6 / 8, has_bw = true;
      else if (key == "profile") {
        for (const auto& b : read_profile(val).blocks) t.block_s.push_back(b.compute_s);
      } else {
        throw bad("unknown key '" + key + "' (name, count, speed, memory_mb, bandwidth_mbit, profile)");
      }
    }
    if (!any) continue;
    if (t.name.empty() || !has_memory || !has_bw)
      throw std::runtime_error("fleet '" + path + "' line " + std::to_string(n) +
                               ": name, memory_mb and bandwidth_mbit are required");
    f.types.push_back(t);
  }
  if (f.types.empty()) throw std::runtime_error("fleet '" + path + "' has no device types");
  return f;
}

}  // namespace seam::pipeline
