#include "seam/session/protocol.hpp"

#include <ATen/ATen.h>

#include <cmath>
#include <cstring>
#include <algorithm>

#include "seam/compression/codec.hpp"
#include "seam/compression/dtype.hpp"
#include "seam/compression/errors.hpp"
#include "seam/compression/message_info.hpp"

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

// A codec message as a plain u8 section: the negotiated spec is not repeated
// (the message names its stages and parse checks them), and its length is
// its shape.
st::Section blob_section(const std::string& name, const std::vector<std::uint8_t>& bytes) {
  st::Section s;
  s.info.name = name;
  s.info.dtype = st::WireDType::u8;
  s.info.shape = {static_cast<std::int64_t>(bytes.size())};
  s.bytes = bytes;
  return s;
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
  if (s.info.dtype != st::WireDType::u8 || s.info.shape.size() != 1 || !s.info.codec.empty())
    bad(step, s.info.name, "expected the codec message as a plain u8 section");
  std::string got;
  try {
    got = sc::message_spec(s.bytes.data(), s.bytes.size());
  } catch (const std::exception& e) {
    bad(step, s.info.name, std::string("not a codec message: ") + e.what());
  }
  if (got != want) bad(step, s.info.name, "codec '" + got + "' is not the negotiated '" + want + "'");
}

// What a decoded activation may hold, checked from the shape its message
// records before anything is decoded, so that a small message cannot make
// the receiver allocate without bound: at most 2^22 elements per sample and
// 2^28 in all (1 GiB as fp32), and no more rows than the batch.
constexpr std::uint64_t kMaxActivationElements = std::uint64_t{1} << 28;
constexpr std::uint64_t kMaxElementsPerSample = std::uint64_t{1} << 22;

// "" when the activation's recorded shape fits a batch of b; else why not.
std::string activation_size_problem(const st::Section& s, std::int64_t b) {
  std::vector<std::int64_t> shape;
  try {
    shape = sc::message_shape(s.bytes.data(), s.bytes.size());
  } catch (const std::exception& e) {
    return std::string("not a codec message: ") + e.what();
  }
  const std::uint64_t cap = std::min<std::uint64_t>(kMaxActivationElements, static_cast<std::uint64_t>(b) * kMaxElementsPerSample);
  std::uint64_t n = 1;
  bool over = false;
  for (auto d : shape) {
    if (d < 0) return "shape " + shape_str(shape) + " has a negative dimension";
    const auto u = static_cast<std::uint64_t>(d);
    if (u != 0 && n > cap / u) over = true;
    else n *= u;
  }
  if (shape.empty() || shape[0] < 1 || shape[0] > b)
    return "shape " + shape_str(shape) + " does not fit a batch of " + std::to_string(b) + " (rows 1.." + std::to_string(b) + ")";
  if (over || n > cap)
    return "shape " + shape_str(shape) + " would decode to more than " + std::to_string(cap) +
           " elements (the limit for a batch of " + std::to_string(b) + ")";
  return {};
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
  s.send_ids = codec_needs_ids(s.up_codec);
  return s;
}

bool spec_has_stage(const std::string& spec, const std::string& name) {
  std::size_t at = 0;
  while (at <= spec.size()) {
    const std::size_t plus = std::min(spec.find('+', at), spec.size());
    const std::string stage = spec.substr(at, plus - at);
    if (stage.substr(0, stage.find(':')) == name) return true;
    at = plus + 1;
  }
  return false;
}

bool codec_needs_ids(const std::string& spec) { return spec_has_stage(spec, "delta"); }

namespace {

std::vector<std::int64_t> values_of(const at::Tensor& t) {
  at::Tensor c = t.to(at::kLong).contiguous();
  const auto* p = c.data_ptr<std::int64_t>();
  return {p, p + c.numel()};
}

// A [B, L] 0/1 mask as lengths when every row is a prefix of ones, else as a bitmap.
st::StepMask compact_mask(std::uint64_t step, const at::Tensor& mask) {
  st::StepMask k;
  if (!mask.defined()) return k;
  if (mask.dim() != 2 || mask.size(1) < 1) bad(step, "attention_mask", "shape " + shape_str(mask.sizes().vec()) + ", expected [B, L]");
  at::Tensor m = mask.to(at::kLong).contiguous();
  if (m.ne(0).logical_and(m.ne(1)).any().item<bool>()) bad(step, "attention_mask", "values other than 0 and 1");
  const std::int64_t b = m.size(0), l = m.size(1);
  k.len = static_cast<std::uint32_t>(l);
  at::Tensor lengths = m.sum(1);
  at::Tensor prefix = at::arange(l, m.options()).unsqueeze(0).lt(lengths.unsqueeze(1)).to(at::kLong);
  if (prefix.equal(m)) {
    k.kind = st::MaskKind::lengths;
    k.lengths = values_of(lengths);
    return k;
  }
  k.kind = st::MaskKind::bitmap;
  k.bitmap.assign(static_cast<std::size_t>((b * l + 7) / 8), 0);
  const auto* p = m.data_ptr<std::int64_t>();
  for (std::int64_t i = 0; i < b * l; ++i)
    if (p[i]) k.bitmap[static_cast<std::size_t>(i >> 3)] |= static_cast<std::uint8_t>(1u << (i & 7));
  return k;
}

at::Tensor mask_tensor(const st::StepMask& k, std::int64_t b) {
  const std::int64_t l = k.len;
  if (k.kind == st::MaskKind::lengths) {
    at::Tensor len = at::tensor(k.lengths, at::kLong);
    return at::arange(l, at::kLong).unsqueeze(0).lt(len.unsqueeze(1)).to(at::kLong);
  }
  at::Tensor m = at::zeros({b, l}, at::kLong);
  auto* p = m.data_ptr<std::int64_t>();
  for (std::int64_t i = 0; i < b * l; ++i) p[i] = (k.bitmap[static_cast<std::size_t>(i >> 3)] >> (i & 7)) & 1;
  return m;
}

}  // namespace

st::Message forward_message(const training::StepRequest& r, const StepSpec& spec) {
  const std::uint64_t step = r.step;
  if (!r.labels.defined() || (r.labels.dim() != 1 && r.labels.dim() != 2) || r.labels.size(0) < 1)
    bad(step, "labels", "expected [B] or [B, L] with B >= 1");
  const std::int64_t b = r.labels.size(0);
  if (b > static_cast<std::int64_t>(st::kMaxBatch)) bad(step, "labels", "batch of " + std::to_string(b) + " exceeds 65536");
  st::Forward f;
  f.step_id = step;
  f.batch = static_cast<std::uint32_t>(b);
  if (spec.send_ids) {
    if (static_cast<std::int64_t>(r.sample_ids.size()) != b)
      bad(step, "sample_ids", std::to_string(r.sample_ids.size()) + " ids for a batch of " + std::to_string(b));
    f.sample_ids = r.sample_ids;
  }
  f.label_len = r.labels.dim() == 2 ? static_cast<std::uint32_t>(r.labels.size(1)) : 0;
  f.labels = values_of(r.labels);
  f.mask = compact_mask(step, r.attention_mask);
  if (f.mask.kind != st::MaskKind::none && f.mask.len != f.label_len && f.label_len != 0)
    bad(step, "attention_mask", "L " + std::to_string(f.mask.len) + " differs from the labels' L " + std::to_string(f.label_len));
  if (f.mask.kind != st::MaskKind::none && r.attention_mask.size(0) != b)
    bad(step, "attention_mask", "shape " + shape_str(r.attention_mask.sizes().vec()) + " does not match a batch of " +
                                    std::to_string(b));
  st::Message m;
  m.body = std::move(f);
  m.sections.push_back(blob_section("activations", r.activations));
  return m;
}

training::StepRequest parse_forward(st::Message&& m, const StepSpec& spec) {
  const auto* f = m.as<st::Forward>();
  if (!f) throw SessionError(SessionErrc::bad_field, std::string("expected a forward message, got ") + st::to_string(m.type()));
  const std::uint64_t step = f->step_id;
  const std::int64_t b = f->batch;
  if (b < 1 || b > spec.max_batch)
    bad(step, "batch", std::to_string(b) + " samples; a batch has 1.." + std::to_string(spec.max_batch));
  // The gate has checked the structure (counts, unique ids, lengths <= L,
  // bitmap size); what is left depends on the negotiated session.
  if (spec.send_ids && static_cast<std::int64_t>(f->sample_ids.size()) != b)
    bad(step, "sample_ids", std::to_string(f->sample_ids.size()) + " ids for a batch of " + std::to_string(b) +
                                "; the codec '" + spec.up_codec + "' keys its state by sample id");
  if (!spec.send_ids && !f->sample_ids.empty())
    bad(step, "sample_ids", "sent, but the codec '" + spec.up_codec + "' needs none");
  auto secs = sections_of(m, step, {{"activations", true}});
  check_codec(step, *secs["activations"], spec.up_codec);
  if (auto why = activation_size_problem(*secs["activations"], b); !why.empty()) bad(step, "activations", why);

  const bool token_task = spec.task != "classify";
  const std::int64_t l = f->label_len;
  if (!token_task && l != 0) bad(step, "labels", "shape [" + std::to_string(b) + ", " + std::to_string(l) + "], expected [" + std::to_string(b) + "] (one per sample)");
  if (token_task && (l < 1 || (spec.max_len > 0 && l > spec.max_len)))
    bad(step, "labels", "L " + std::to_string(l) + ", expected [B, L] with 1 <= L <= " + std::to_string(spec.max_len));
  if (static_cast<std::int64_t>(f->labels.size()) != b * std::max<std::int64_t>(l, 1))
    bad(step, "labels", std::to_string(f->labels.size()) + " values for shape [" + std::to_string(b) + (l ? ", " + std::to_string(l) : "") + "]");
  const std::int64_t hi = token_task ? spec.vocab : spec.classes;
  if (hi > 0)
    for (auto v : f->labels)
      if ((v < 0 || v >= hi) && !(token_task && v == -100))
        bad(step, "labels", "value " + std::to_string(v) + " out of range [0, " + std::to_string(hi) + ")" +
                                (token_task ? " (or -100)" : ""));
  training::StepRequest r;
  r.step = step;
  r.sample_ids = f->sample_ids;
  r.labels = at::tensor(f->labels, at::kLong);
  if (l) r.labels = r.labels.view({b, l});
  if (f->mask.kind != st::MaskKind::none) {
    const std::int64_t ml = f->mask.len;
    if (spec.max_len > 0 && ml > spec.max_len)
      bad(step, "attention_mask", "L " + std::to_string(ml) + " exceeds max_len " + std::to_string(spec.max_len));
    if (token_task && ml != l)
      bad(step, "attention_mask", "L " + std::to_string(ml) + " does not match the labels' L " + std::to_string(l));
    r.attention_mask = mask_tensor(f->mask, b);
  }
  r.activations = std::move(secs["activations"]->bytes);
  return r;
}

st::Message backward_message(const training::StepReply& r) {
  st::Message m;
  m.body = st::Backward{r.step, r.loss, {{"correct", r.correct}, {"cloud_ms", r.cloud_ms}}};
  m.sections.push_back(blob_section("gradient", r.gradient));
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

// ---------------------------------------------------------------- infer

std::string infer_codec(const std::string& up_spec) {
  const std::string canon = sc::make_codec(up_spec)->spec();
  std::string out;
  std::size_t at = 0;
  while (at <= canon.size()) {
    const std::size_t plus = std::min(canon.find('+', at), canon.size());
    const std::string stage = canon.substr(at, plus - at);
    if (stage.substr(0, stage.find(':')) != "delta") out += (out.empty() ? "" : "+") + stage;
    at = plus + 1;
  }
  return sc::make_codec(out.empty() ? "none" : out)->spec();
}

namespace {
[[noreturn]] void bad_infer(std::uint64_t id, const std::string& field, const std::string& why) {
  throw SessionError(SessionErrc::bad_field, "infer batch " + std::to_string(id) + ": field '" + field + "': " + why);
}
}  // namespace

st::Message infer_message(const InferRequest& r) {
  if (r.batch < 1 || r.batch > static_cast<std::int64_t>(st::kMaxBatch))
    bad_infer(r.batch_id, "batch", std::to_string(r.batch) + " samples; a batch has 1..65536");
  st::Infer f;
  f.batch_id = r.batch_id;
  f.batch = static_cast<std::uint32_t>(r.batch);
  f.output = r.output;
  f.mask = compact_mask(r.batch_id, r.mask);
  if (f.mask.kind != st::MaskKind::none && r.mask.size(0) != r.batch)
    bad_infer(r.batch_id, "mask", "shape " + shape_str(r.mask.sizes().vec()) + " does not match a batch of " +
                                      std::to_string(r.batch));
  st::Message m;
  m.body = std::move(f);
  m.sections.push_back(blob_section("activations", r.activations));
  return m;
}

InferRequest parse_infer(st::Message&& m, const StepSpec& spec) {
  const auto* f = m.as<st::Infer>();
  if (!f) throw SessionError(SessionErrc::bad_field, std::string("expected an infer message, got ") + st::to_string(m.type()));
  InferRequest r;
  r.batch_id = f->batch_id;
  r.batch = f->batch;
  r.output = f->output;
  if (r.batch > spec.max_batch)
    bad_infer(r.batch_id, "batch", std::to_string(r.batch) + " samples; a batch has 1.." + std::to_string(spec.max_batch));
  std::map<std::string, st::Section*> secs;
  for (auto& s : m.sections)
    if (s.info.name != "activations" || !secs.emplace(s.info.name, &s).second)
      bad_infer(r.batch_id, s.info.name, secs.count(s.info.name) ? "section appears twice" : "unknown section");
  if (!secs.count("activations")) bad_infer(r.batch_id, "activations", "missing section");
  auto& a = *secs["activations"];
  if (a.info.dtype != st::WireDType::u8 || a.info.shape.size() != 1 || !a.info.codec.empty())
    bad_infer(r.batch_id, "activations", "expected the codec message as a plain u8 section");
  std::string got;
  try {
    got = sc::message_spec(a.bytes.data(), a.bytes.size());
  } catch (const std::exception& e) {
    bad_infer(r.batch_id, "activations", std::string("not a codec message: ") + e.what());
  }
  // Any stateless codec: a pipeline hop switches its bitwidth in-band. The
  // shape check below bounds what any codec may decode to.
  if (codec_needs_ids(got))
    bad_infer(r.batch_id, "activations", "codec '" + got + "' keeps per-sample state; inference takes a stateless codec (" +
                                             infer_codec(spec.up_codec) + ")");
  if (auto why = activation_size_problem(a, r.batch); !why.empty()) bad_infer(r.batch_id, "activations", why);
  if (f->mask.kind != st::MaskKind::none) {
    if (spec.max_len > 0 && f->mask.len > spec.max_len)
      bad_infer(r.batch_id, "mask", "L " + std::to_string(f->mask.len) + " exceeds max_len " + std::to_string(spec.max_len));
    r.mask = mask_tensor(f->mask, r.batch);
  }
  r.activations = std::move(a.bytes);
  return r;
}

st::Message infer_reply_message(std::uint64_t batch_id, const at::Tensor& out, st::InferOutput kind) {
  const bool classes = kind == st::InferOutput::classes;
  at::Tensor t = (classes ? out.to(at::kLong) : out.to(at::kFloat)).contiguous();
  st::Section s;
  s.info.name = classes ? "classes" : "logits";
  s.info.dtype = classes ? st::WireDType::i64 : st::WireDType::f32;
  s.info.shape = t.sizes().vec();
  const auto* p = static_cast<const std::uint8_t*>(t.data_ptr());
  s.bytes.assign(p, p + t.numel() * t.element_size());
  st::Message m;
  m.body = st::InferReply{batch_id};
  m.sections.push_back(std::move(s));
  return m;
}

at::Tensor parse_infer_reply(const st::Message& m, const InferRequest& asked) {
  throw_if_error(m);
  const auto* r = m.as<st::InferReply>();
  if (!r) throw SessionError(SessionErrc::bad_field, std::string("expected an infer reply, got ") + st::to_string(m.type()));
  if (r->batch_id != asked.batch_id)
    throw SessionError(SessionErrc::step_order, "reply for infer batch " + std::to_string(r->batch_id) + " to batch " +
                                                    std::to_string(asked.batch_id));
  const bool classes = asked.output == st::InferOutput::classes;
  const char* name = classes ? "classes" : "logits";
  if (m.sections.size() != 1 || m.sections[0].info.name != name)
    bad_infer(asked.batch_id, name, "expected exactly one section '" + std::string(name) + "'");
  const auto& s = m.sections[0];
  if (s.info.dtype != (classes ? st::WireDType::i64 : st::WireDType::f32) || s.info.shape.empty() ||
      s.info.shape[0] != asked.batch)
    bad_infer(asked.batch_id, name, "shape " + shape_str(s.info.shape) + " or dtype does not fit a batch of " +
                                        std::to_string(asked.batch));
  at::Tensor t = at::empty(s.info.shape, classes ? at::kLong : at::kFloat);
  if (!s.bytes.empty()) std::memcpy(t.data_ptr(), s.bytes.data(), s.bytes.size());
  return t;
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
