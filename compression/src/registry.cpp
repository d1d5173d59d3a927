#include <sstream>

#include "stage.hpp"

namespace seam::compression::detail {

const std::vector<StageInfo>& stage_registry() {
  static const std::vector<StageInfo> reg = {
      none_stage_info(),    fp16_stage_info(),  bf16_stage_info(), quant_stage_info(),
      lowrank_stage_info(), delta_stage_info(), zstd_stage_info(),
  };
  return reg;
}

const StageInfo* find_stage(const std::string& name) {
  for (const auto& s : stage_registry())
    if (s.name == name) return &s;
  return nullptr;
}

static std::string allowed(const ParamSpec& p) {
  if (p.choices.empty()) return "an integer in [" + std::to_string(p.min) + ", " + std::to_string(p.max) + "]";
  std::string s = "one of ";
  for (std::size_t i = 0; i < p.choices.size(); ++i) s += (i ? "|" : "") + p.choices[i];
  return s;
}

static bool value_ok(const ParamSpec& p, const std::string& v) {
  if (!p.choices.empty()) {
    for (const auto& c : p.choices)
      if (c == v) return true;
    return false;
  }
  if (v.empty() || v.size() > 12) return false;
  std::size_t i = (v[0] == '-') ? 1 : 0;
  if (i == v.size()) return false;
  for (; i < v.size(); ++i)
    if (v[i] < '0' || v[i] > '9') return false;
  long x = std::stol(v);
  return x >= p.min && x <= p.max;
}

Params validate_params(const StageInfo& info, const std::map<std::string, std::string>& given) {
  Params out;
  for (const auto& p : info.params) out[p.name] = p.default_value;
  for (const auto& [k, v] : given) {
    const ParamSpec* spec = nullptr;
    for (const auto& p : info.params)
      if (p.name == k) spec = &p;
    if (!spec) {
      std::string keys;
      for (const auto& p : info.params) keys += (keys.empty() ? "" : ", ") + p.name;
      throw CodecError("stage '" + info.name + "' has no parameter '" + k + "'; allowed: " +
                       (keys.empty() ? "(none)" : keys));
    }
    if (!value_ok(*spec, v)) {
      throw CodecError("stage '" + info.name + "': " + k + "=" + v + " is invalid; " + k + " must be " +
                       allowed(*spec));
    }
    out[k] = v;
  }
  return out;
}

std::string canonical_params(const StageInfo& info, const Params& p) {
  std::string s;
  for (const auto& spec : info.params) s += (s.empty() ? "" : ",") + spec.name + "=" + p.at(spec.name);
  return s;
}

}  // namespace seam::compression::detail

namespace seam::compression {

std::string describe_stages() {
  std::ostringstream os;
  for (const auto& s : detail::stage_registry()) {
    os << s.name << " (v" << int(s.version) << ", "
       << (s.input == detail::PartKind::tensors ? "tensor" : "bytes") << " -> "
       << (s.output == detail::PartKind::tensors ? "tensor" : "bytes") << "): " << s.help << "\n";
    for (const auto& p : s.params) {
      os << "    " << p.name << " = " << p.default_value << "   (" << detail::allowed(p) << ") " << p.help << "\n";
    }
  }
  return os.str();
}

}  // namespace seam::compression
