#include "seam/session/protocol.hpp"

#include <ATen/ATen.h>

#include <cmath>
#include <cstring>
#include <unordered_set>

#include "seam/compression/codec.hpp"
#include "seam/compression/dtype.hpp"
#include "seam/compression/errors.hpp"

namespace seam::session {

namespace st = seam::transport;
namespace sc = seam::compression;

namespace {

[[noreturn]] void bad(std::uint64_t step, const std::string& field, const std::string& why) {
  throw SessionError(SessionErrc::bad_field, "step " + std::to_string(step) + ": field '" + field + "': " + why);
}

std::string shape_str(const std::vector<std::int64_t>& s) {
  std::string o = "[";
  for (std::size_t i = 0; i < s.size(); ++i) o += (i ? ", " : "") + std::to_string(s[i]);
  return o + "]";
}

st::Section raw_section(const std::string& name, const at::Tensor& t) {
  at::Tensor c = t.contiguous();
  st::Section s;
  s.info.name = name;
  s.info.dtype = sc::to_wire(c.scalar_type());
  s.info.shape.assign(c.sizes().begin(), c.sizes().end());
  s.bytes.resize(c.nbytes());
  if (!s.bytes.empty()) std::memcpy(s.bytes.data(), c.data_ptr(), s.bytes.size());
  return s;
}

// Encoded sections carry no shape: the codec message records it (once).
st::Section encoded_section(const std::string& name, const std::vector<std::uint8_t>& bytes) {
  st::Section s;
  s.info.name = name;
  s.info.dtype = st::WireDType::u8;
  s.info.codec = sc::message_spec(bytes.data(), bytes.size());
  s.bytes = bytes;
  return s;
}

at::Tensor tensor_of(const st::Section& s) {
  at::Tensor t = at::empty(s.info.shape, at::TensorOptions().dtype(sc::from_wire(s.info.dtype)));
  if (!s.bytes.empty()) std::memcpy(t.data_ptr(), s.bytes.data(), s.bytes.size());
  return t;
}

// Exactly the named sections, each at most once; required ones present.
// Msg is Message (parse_forward moves bytes out) or const Message.
template <class Msg>
auto sections_of(Msg& m, std::uint64_t step, const std::vector<std::pair<std::string, bool>>& allowed) {
  std::map<std::string, decltype(&m.sections[0])> out;
  for (auto& s : m.sections) {
    bool known = false;
    for (const auto& a : allowed) known = known || a.first == s.info.name;
    if (!known) bad(step, s.info.name, "unknown section");
    if (!out.emplace(s.info.name, &s).second) bad(step, s.info.name, "section appears twice");
  }
  for (const auto& [name, required] : allowed)
    if (required && !out.count(name)) bad(step, name, "missing section");
  return out;
}

// The codec message's own spec (parsed from its bytes, not the sender's label)
// must be the negotiated one.
void check_codec(std::uint64_t step, const st::Section& s, const std::string& want) {
  if (s.info.codec.empty()) bad(step, s.info.name, "raw section where an encoded one (codec '" + want + "') is expected");
  std::string got;
  try {
    got = sc::message_spec(s.bytes.data(), s.bytes.size());
  } catch (const std::exception& e) {
    bad(step, s.info.name, std::string("not a codec message: ") + e.what());
  }
  if (got != s.info.codec) bad(step, s.info.name, "section says codec '" + s.info.codec + "' but its bytes say '" + got + "'");
  if (got != want) bad(step, s.info.name, "codec '" + got + "' is not the negotiated '" + want + "'");
}

void check_raw_i64(std::uint64_t step, const st::Section& s) {
  if (!s.info.codec.empty()) bad(step, s.info.name, "expected a raw tensor, got codec '" + s.info.codec + "'");
  if (s.info.dtype != st::WireDType::i64)
    bad(step, s.info.name, std::string("dtype ") + st::wire_dtype_name(s.info.dtype) + ", expected int64");
}

}  // namespace

StepSpec step_spec(const training::ModelConfig& mc, const training::HalfSettings& hs) {
  StepSpec s;
  s.task = hs.task;
  s.up_codec = sc::make_codec(hs.up_codec)->spec();
  s.down_codec = sc::make_codec(hs.down_codec)->spec();
  s.classes = mc.classes;
  s.vocab = mc.vocab;
  if (mc.kind == "bert" || mc.kind == "gpt") s.max_len = mc.max_len;
  return s;
}

st::Message forward_message(const training::StepRequest& r) {
  st::Message m;
  m.body = st::Forward{r.step, r.sample_ids};
  m.sections.push_back(encoded_section("activations", r.activations));
  m.sections.push_back(raw_section("labels", r.labels));
  if (r.attention_mask.defined()) m.sections.push_back(raw_section("attention_mask", r.attention_mask));
  return m;
}

training::StepRequest parse_forward(st::Message&& m, const StepSpec& spec) {
  const auto* f = m.as<st::Forward>();
  if (!f) throw SessionError(SessionErrc::bad_field, std::string("expected a forward message, got ") + st::to_string(m.type()));
  const std::uint64_t step = f->step_id;
  const auto b = static_cast<std::int64_t>(f->sample_ids.size());
  if (b < 1 || b > spec.max_batch)
    bad(step, "sample_ids", std::to_string(b) + " ids; a batch has 1.." + std::to_string(spec.max_batch));
  std::unordered_set<std::int64_t> seen;
  for (auto id : f->sample_ids)
    if (!seen.insert(id).second) bad(step, "sample_ids", "id " + std::to_string(id) + " appears twice in one batch");
  auto secs = sections_of(m, step, {{"activations", true}, {"labels", true}, {"attention_mask", false}});

  check_codec(step, *secs["activations"], spec.up_codec);
  const st::Section& ls = *secs["labels"];
  check_raw_i64(step, ls);
  const bool token_task = spec.task != "classify";
  const auto& lsh = ls.info.shape;
  if (!token_task && (lsh.size() != 1 || lsh[0] != b))
    bad(step, "labels", "shape " + shape_str(lsh) + ", expected [" + std::to_string(b) + "] (one per sample id)");
  if (token_task && (lsh.size() != 2 || lsh[0] != b || lsh[1] < 1 || (spec.max_len > 0 && lsh[1] > spec.max_len)))
    bad(step, "labels", "shape " + shape_str(lsh) + ", expected [" + std::to_string(b) + ", L] with 1 <= L <= " +
                            std::to_string(spec.max_len));
  training::StepRequest r;
  r.step = step;
  r.sample_ids = f->sample_ids;
  r.activations = std::move(secs["activations"]->bytes);
  r.labels = tensor_of(ls);
  const std::int64_t hi = token_task ? spec.vocab : spec.classes;
  if (hi > 0 && r.labels.numel() > 0) {
    auto valid = token_task ? r.labels.ne(-100) : at::ones_like(r.labels, at::kBool);
    auto out = valid.logical_and(r.labels.lt(0).logical_or(r.labels.ge(hi)));
    if (out.any().item<bool>())
      bad(step, "labels", "value " + std::to_string(r.labels.masked_select(out)[0].item<std::int64_t>()) +
                              " out of range [0, " + std::to_string(hi) + ")" + (token_task ? " (or -100)" : ""));
  }
  if (auto it = secs.find("attention_mask"); it != secs.end()) {
    const st::Section& ms = *it->second;
    check_raw_i64(step, ms);
    const auto& msh = ms.info.shape;
    if (msh.size() != 2 || msh[0] != b || msh[1] < 1 || (spec.max_len > 0 && msh[1] > spec.max_len))
      bad(step, "attention_mask", "shape " + shape_str(msh) + ", expected [" + std::to_string(b) + ", L] with 1 <= L <= " +
                                      std::to_string(spec.max_len));
    if (token_task && msh[1] != lsh[1])
      bad(step, "attention_mask", "shape " + shape_str(msh) + " does not match the labels' " + shape_str(lsh));
    r.attention_mask = tensor_of(ms);
    if (r.attention_mask.ne(0).logical_and(r.attention_mask.ne(1)).any().item<bool>())
      bad(step, "attention_mask", "values other than 0 and 1");
  }
  return r;
}

st::Message backward_message(const training::StepReply& r) {
  st::Message m;
  m.body = st::Backward{r.step, r.loss, {{"correct", r.correct}, {"cloud_ms", r.cloud_ms}}};
  m.sections.push_back(encoded_section("gradient", r.gradient));
  return m;
}

training::StepReply parse_backward(const st::Message& m, const StepSpec& spec, std::uint64_t step) {
  throw_if_error(m);
  const auto* b = m.as<st::Backward>();
  if (!b) throw SessionError(SessionErrc::bad_field, std::string("expected a backward message, got ") + st::to_string(m.type()));
  if (b->step_id != step)
    throw SessionError(SessionErrc::step_order, "reply for step " + std::to_string(b->step_id) + " to step " + std::to_string(step));
  auto secs = sections_of(m, step, {{"gradient", true}});
  check_codec(step, *secs["gradient"], spec.down_codec);
  training::StepReply r;
  r.step = b->step_id;
  r.loss = b->loss;
  for (const char* key : {"correct", "cloud_ms"}) {
    auto it = b->metrics.find(key);
    if (it == b->metrics.end()) bad(step, std::string("metrics.") + key, "missing");
    if (!std::isfinite(it->second)) bad(step, std::string("metrics.") + key, "not finite");
  }
  r.correct = b->metrics.at("correct");
  r.cloud_ms = b->metrics.at("cloud_ms");
  r.gradient = secs["gradient"]->bytes;
  return r;
}

st::Message error_message(SessionErrc code, const std::string& text) {
  st::Message m;
  m.body = st::ErrorInfo{static_cast<std::uint32_t>(code), text};
  return m;
}

void throw_if_error(const st::Message& m) {
  const auto* e = m.as<st::ErrorInfo>();
  if (!e) return;
  const bool ours = e->code > static_cast<std::uint32_t>(SessionErrc::handler_failed) &&
                    e->code <= static_cast<std::uint32_t>(kLastSessionErrc);
  const auto c = ours ? static_cast<SessionErrc>(e->code) : SessionErrc::handler_failed;
  throw SessionError(c, e->text);
}

}  // namespace seam::session
