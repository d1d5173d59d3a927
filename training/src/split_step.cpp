#include "seam/training/split_step.hpp"

#include <torch/torch.h>

#include <chrono>
#include <cstring>
#include <stdexcept>

#include "model_impl.hpp"
#include "seam/compression/codec.hpp"
#include "seam/compression/dtype.hpp"
#include "seam/transport/message.hpp"

namespace seam::training {

namespace sc = seam::compression;
namespace st = seam::transport;

namespace {

using clock_type = std::chrono::steady_clock;
double ms_since(clock_type::time_point t0) {
  return std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
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

st::Section encoded_section(const std::string& name, const std::vector<std::uint8_t>& bytes) {
  st::Section s;
  s.info.name = name;
  s.info.dtype = st::WireDType::u8;
  s.info.shape = {static_cast<std::int64_t>(bytes.size())};
  s.info.codec = sc::message_spec(bytes.data(), bytes.size());
  s.bytes = bytes;
  return s;
}

at::Tensor tensor_of(const st::Section& s) {
  at::Tensor t = at::empty(s.info.shape, at::TensorOptions().dtype(sc::from_wire(s.info.dtype)));
  if (!s.bytes.empty()) std::memcpy(t.data_ptr(), s.bytes.data(), s.bytes.size());
  return t;
}

const st::Section* find(const st::Message& m, const std::string& name) {
  for (const auto& s : m.sections)
    if (s.info.name == name) return &s;
  return nullptr;
}

// Encodes a message into the exact frame the network would carry, counts its
// bytes, and decodes it back through the transport's gate.
void round_trip(const st::Message& m, std::uint64_t id, std::uint64_t& counter, st::Message& out) {
  auto bytes = st::encode_frame(m, id).to_bytes();
  counter += bytes.size();
  std::string why;
  if (auto ec = st::decode_frame_bytes(bytes.data(), bytes.size(), st::FrameLimits{}, out, &why))
    throw std::runtime_error("in-process link: frame does not decode: " + why);
}

}  // namespace

at::Tensor task_loss(const std::string& task, const at::Tensor& logits, const at::Tensor& labels) {
  namespace F = torch::nn::functional;
  if (task == "classify") {
    if (logits.dim() != 2 || labels.dim() != 1 || labels.size(0) != logits.size(0))
      throw std::invalid_argument("classify: logits [B, C] and labels [B] expected");
    return F::cross_entropy(logits, labels);
  }
  if (logits.dim() != 3 || labels.sizes() != logits.sizes().slice(0, 2))
    throw std::invalid_argument(task + ": logits [B, L, V] and labels [B, L] expected");
  return F::cross_entropy(logits.reshape({-1, logits.size(2)}), labels.reshape({-1}),
                          F::CrossEntropyFuncOptions().ignore_index(-100));
}

double task_correct(const std::string& task, const at::Tensor& logits, const at::Tensor& labels) {
  torch::NoGradGuard ng;
  if (task == "classify") return logits.argmax(1).eq(labels).sum().item<double>();
  auto valid = labels.ne(-100);
  return (logits.argmax(2).eq(labels) & valid).sum().item<double>();
}

// ---------------------------------------------------------------- cloud

// What each half keeps: its model, optimizer, both codecs and one codec
// context per direction (the cloud decodes up and encodes down; the edge the reverse).
struct HalfState {
  HalfState(ModelHalf& h, const HalfSettings& s)
      : half(h), settings(s), opt(h, s.optim), up(sc::make_codec(s.up_codec)), down(sc::make_codec(s.down_codec)),
        up_ctx(s.seed), down_ctx(s.seed) {}
  ModelHalf& half;
  HalfSettings settings;
  Optimizer opt;
  std::unique_ptr<sc::Codec> up, down;
  sc::CodecContext up_ctx, down_ctx;
};

struct CloudTrainer::Impl : HalfState {
  using HalfState::HalfState;
};

CloudTrainer::CloudTrainer(ModelHalf& cloud, const HalfSettings& s) : impl_(std::make_unique<Impl>(cloud, s)) {}
CloudTrainer::~CloudTrainer() = default;

StepReply CloudTrainer::step(const StepRequest& r) {
  auto& I = *impl_;
  auto t0 = clock_type::now();
  const auto b = static_cast<std::int64_t>(r.sample_ids.size());
  if (!r.labels.defined() || r.labels.size(0) != b)
    throw std::invalid_argument("step " + std::to_string(r.step) + ": labels do not match the batch of " + std::to_string(b));
  I.up_ctx.step = static_cast<std::int64_t>(r.step);
  I.up_ctx.sample_ids = r.sample_ids;
  at::Tensor a = I.up->decode(r.activations.data(), r.activations.size(), I.up_ctx).to(at::kFloat);
  a = a.detach().requires_grad_(true);
  I.half.train(true);
  I.opt.zero_grad();
  BatchContext ctx{r.attention_mask, b};
  at::Tensor logits = I.half.forward(a, ctx);
  at::Tensor loss = task_loss(I.settings.task, logits, r.labels);
  const double lv = loss.item<double>();
  if (!std::isfinite(lv)) throw std::runtime_error("step " + std::to_string(r.step) + ": loss is not finite");
  loss.backward();
  I.opt.step(static_cast<std::int64_t>(r.step));
  StepReply rep;
  rep.step = r.step;
  rep.loss = lv;
  rep.correct = task_correct(I.settings.task, logits, r.labels);
  I.down_ctx.step = static_cast<std::int64_t>(r.step);
  I.down_ctx.sample_ids = r.sample_ids;
  rep.gradient = I.down->encode(a.grad(), I.down_ctx);
  rep.cloud_ms = ms_since(t0);
  return rep;
}

// ---------------------------------------------------------------- edge

struct EdgeTrainer::Impl : HalfState {
  using HalfState::HalfState;
  std::uint64_t steps = 0;
};

EdgeTrainer::EdgeTrainer(ModelHalf& edge, const HalfSettings& s) : impl_(std::make_unique<Impl>(edge, s)) {}
EdgeTrainer::~EdgeTrainer() = default;
std::uint64_t EdgeTrainer::steps_done() const { return impl_->steps; }

StepMetrics EdgeTrainer::step(Link& link, const at::Tensor& x, const at::Tensor& labels,
                              const std::vector<std::int64_t>& sample_ids, const at::Tensor& attention_mask) {
  auto& I = *impl_;
  StepMetrics m;
  m.step = I.steps;
  const auto before = link.stats();
  auto t0 = clock_type::now();
  I.half.train(true);
  I.opt.zero_grad();
  BatchContext ctx{attention_mask, static_cast<std::int64_t>(sample_ids.size())};
  at::Tensor a = I.half.forward(x, ctx);
  m.edge_ms = ms_since(t0);

  t0 = clock_type::now();
  StepRequest req;
  req.step = I.steps;
  req.sample_ids = sample_ids;
  req.labels = labels;
  req.attention_mask = attention_mask;
  I.up_ctx.step = static_cast<std::int64_t>(I.steps);
  I.up_ctx.sample_ids = sample_ids;
  req.activations = I.up->encode(a.detach(), I.up_ctx);
  m.encode_ms = ms_since(t0);
  m.ratio_up = double(a.numel() * 4) / double(req.activations.size());

  t0 = clock_type::now();
  StepReply rep = link.exchange(req);
  m.cloud_ms = rep.cloud_ms;
  m.link_ms = std::max(0.0, ms_since(t0) - rep.cloud_ms);

  t0 = clock_type::now();
  I.down_ctx.step = static_cast<std::int64_t>(I.steps);
  I.down_ctx.sample_ids = sample_ids;
  at::Tensor g = I.down->decode(rep.gradient.data(), rep.gradient.size(), I.down_ctx).to(a.scalar_type());
  m.decode_ms = ms_since(t0);
  if (g.sizes() != a.sizes()) throw std::runtime_error("gradient shape differs from the activations' shape");
  m.ratio_down = double(g.numel() * 4) / double(rep.gradient.size());

  t0 = clock_type::now();
  a.backward(g);
  I.opt.step(static_cast<std::int64_t>(I.steps));
  m.edge_ms += ms_since(t0);
  m.loss = rep.loss;
  m.accuracy = rep.correct / double(labels.dim() == 1 ? labels.size(0) : labels.ne(-100).sum().item<double>());
  const auto after = link.stats();
  m.bytes_up = after.bytes_up - before.bytes_up;
  m.bytes_down = after.bytes_down - before.bytes_down;
  ++I.steps;
  return m;
}

// ---------------------------------------------------------------- link

StepReply InProcessLink::exchange(const StepRequest& r) {
  const std::uint64_t id = ++stats_.exchanges;
  st::Message fw;
  fw.body = st::Forward{r.step, r.sample_ids, {}};
  fw.sections.push_back(encoded_section("activations", r.activations));
  fw.sections.push_back(raw_section("labels", r.labels));
  if (r.attention_mask.defined()) fw.sections.push_back(raw_section("attention_mask", r.attention_mask));
  st::Message in;
  round_trip(fw, id, stats_.bytes_up, in);

  StepRequest got;
  const auto* f = in.as<st::Forward>();
  got.step = f->step_id;
  got.sample_ids = f->sample_ids;
  got.activations = find(in, "activations")->bytes;
  got.labels = tensor_of(*find(in, "labels"));
  if (const auto* mask = find(in, "attention_mask")) got.attention_mask = tensor_of(*mask);
  StepReply rep = cloud_.step(got);

  st::Message bw;
  bw.body = st::Backward{rep.step, rep.loss, {{"correct", rep.correct}, {"cloud_ms", rep.cloud_ms}}};
  bw.sections.push_back(encoded_section("gradient", rep.gradient));
  st::Message back;
  round_trip(bw, id, stats_.bytes_down, back);
  const auto* b = back.as<st::Backward>();
  StepReply out;
  out.step = b->step_id;
  out.loss = b->loss;
  out.correct = b->metrics.at("correct");
  out.cloud_ms = b->metrics.at("cloud_ms");
  out.gradient = find(back, "gradient")->bytes;
  return out;
}

}  // namespace seam::training
