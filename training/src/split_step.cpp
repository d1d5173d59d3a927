#include "seam/training/split_step.hpp"

#include <torch/torch.h>

#include <chrono>
#include <stdexcept>

#include "model_impl.hpp"
#include "seam/compression/codec.hpp"
#include "seam/compression/dtype.hpp"

namespace seam::training {

namespace sc = seam::compression;

namespace {

using clock_type = std::chrono::steady_clock;
double ms_since(clock_type::time_point t0) {
  return std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
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

struct HalfState::Codecs {
  std::unique_ptr<sc::Codec> up, down;
};

HalfState::HalfState(ModelHalf& h, const HalfSettings& s, HalfState* shared)
    : half_(h),
      settings_(s),
      shared_(shared),
      opt_(shared ? nullptr : std::make_unique<Optimizer>(h, s.optim)),
      codecs_(new Codecs{sc::make_codec(s.up_codec), sc::make_codec(s.down_codec)}),
      up_ctx_(std::make_unique<sc::CodecContext>(s.seed)),
      down_ctx_(std::make_unique<sc::CodecContext>(s.seed)) {}
HalfState::~HalfState() = default;

namespace {
void check_order(const char* who, std::uint64_t got, std::uint64_t expected) {
  if (got != expected)
    throw std::logic_error(std::string(who) + ": step " + std::to_string(got) + " out of order, expected step " +
                           std::to_string(expected));
}
}  // namespace

CloudTrainer::CloudTrainer(ModelHalf& cloud, const HalfSettings& s, HalfState* shared)
    : impl_(std::make_unique<HalfState>(cloud, s, shared)) {}
CloudTrainer::~CloudTrainer() = default;
std::uint64_t CloudTrainer::steps_done() const { return impl_->steps_; }
HalfState& CloudTrainer::state() { return *impl_; }

StepReply CloudTrainer::step(const StepRequest& r) {
  auto& I = *impl_;
  check_order("cloud", r.step, I.steps_);
  auto t0 = clock_type::now();
  if (!r.labels.defined() || r.labels.dim() < 1)
    throw std::invalid_argument("step " + std::to_string(r.step) + ": no labels");
  const std::int64_t b = r.labels.size(0);
  if (!r.sample_ids.empty() && static_cast<std::int64_t>(r.sample_ids.size()) != b)
    throw std::invalid_argument("step " + std::to_string(r.step) + ": " + std::to_string(r.sample_ids.size()) +
                                " sample ids for a batch of " + std::to_string(b));
  I.up_ctx_->step = static_cast<std::int64_t>(r.step);
  I.up_ctx_->sample_ids = r.sample_ids;
  at::Tensor a = I.codecs_->up->decode(r.activations.data(), r.activations.size(), *I.up_ctx_).to(at::kFloat);
  a = a.detach().requires_grad_(true);
  I.half_.train(true);
  Optimizer& opt = I.optimizer();
  opt.zero_grad();
  BatchContext ctx{r.attention_mask, b};
  at::Tensor logits = I.half_.forward(a, ctx);
  at::Tensor loss = task_loss(I.settings_.task, logits, r.labels);
  const double lv = loss.item<double>();
  if (!std::isfinite(lv)) throw std::runtime_error("step " + std::to_string(r.step) + ": loss is not finite");
  loss.backward();
  // Shared: the schedule follows the steps applied to the half by every session.
  opt.step(static_cast<std::int64_t>(I.shared_ ? I.shared_->steps_.load() : r.step));
  if (I.shared_) ++I.shared_->steps_;
  StepReply rep;
  rep.step = r.step;
  rep.loss = lv;
  rep.correct = task_correct(I.settings_.task, logits, r.labels);
  I.down_ctx_->step = static_cast<std::int64_t>(r.step);
  I.down_ctx_->sample_ids = r.sample_ids;
  rep.gradient = I.codecs_->down->encode(a.grad(), *I.down_ctx_);
  rep.cloud_ms = ms_since(t0);
  ++I.steps_;
  return rep;
}

// ---------------------------------------------------------------- edge

EdgeTrainer::EdgeTrainer(ModelHalf& edge, const HalfSettings& s) : impl_(std::make_unique<HalfState>(edge, s)) {}
EdgeTrainer::~EdgeTrainer() = default;
std::uint64_t EdgeTrainer::steps_done() const { return impl_->steps_; }
HalfState& EdgeTrainer::state() { return *impl_; }

StepMetrics EdgeTrainer::step(Link& link, const at::Tensor& x, const at::Tensor& labels,
                              const std::vector<std::int64_t>& sample_ids, const at::Tensor& attention_mask) {
  auto& I = *impl_;
  StepMetrics m;
  m.step = I.steps_;
  const auto before = link.stats();
  auto t0 = clock_type::now();
  I.half_.train(true);
  I.opt_->zero_grad();
  BatchContext ctx{attention_mask, static_cast<std::int64_t>(sample_ids.size())};
  at::Tensor a = I.half_.forward(x, ctx);
  m.edge_ms = ms_since(t0);

  t0 = clock_type::now();
  if (!I.pending_ || I.pending_->step != I.steps_ || I.pending_->sample_ids != sample_ids) {
    StepRequest req;
    req.step = I.steps_;
    req.sample_ids = sample_ids;
    req.labels = labels;
    req.attention_mask = attention_mask;
    I.up_ctx_->step = static_cast<std::int64_t>(I.steps_);
    I.up_ctx_->sample_ids = sample_ids;
    req.activations = I.codecs_->up->encode(a.detach(), *I.up_ctx_);
    I.pending_ = std::move(req);
  }
  const StepRequest& req = *I.pending_;
  m.encode_ms = ms_since(t0);
  m.ratio_up = double(a.numel() * 4) / double(req.activations.size());

  t0 = clock_type::now();
  StepReply rep = link.exchange(req);
  m.cloud_ms = rep.cloud_ms;
  m.link_ms = std::max(0.0, ms_since(t0) - rep.cloud_ms);

  t0 = clock_type::now();
  I.down_ctx_->step = static_cast<std::int64_t>(I.steps_);
  I.down_ctx_->sample_ids = sample_ids;
  if (rep.step != req.step) check_order("edge: reply", rep.step, req.step);
  at::Tensor g = I.codecs_->down->decode(rep.gradient.data(), rep.gradient.size(), *I.down_ctx_).to(a.scalar_type());
  m.decode_ms = ms_since(t0);
  if (g.sizes() != a.sizes()) throw std::runtime_error("gradient shape differs from the activations' shape");
  m.ratio_down = double(g.numel() * 4) / double(rep.gradient.size());

  t0 = clock_type::now();
  a.backward(g);
  I.opt_->step(static_cast<std::int64_t>(I.steps_));
  m.edge_ms += ms_since(t0);
  I.pending_.reset();
  finish_step_metrics(m, rep, before, link.stats(), a, g, sample_ids.size(), labels, attention_mask);
  ++I.steps_;
  return m;
}

void finish_step_metrics(StepMetrics& m, const StepReply& rep, const LinkStats& before, const LinkStats& after,
                         const at::Tensor& activation, const at::Tensor& gradient, std::size_t ids,
                         const at::Tensor& labels, const at::Tensor& mask) {
  m.loss = rep.loss;
  m.accuracy = rep.correct / double(labels.dim() == 1 ? labels.size(0) : labels.ne(-100).sum().item<double>());
  m.bytes_up = after.bytes_up - before.bytes_up;
  m.bytes_down = after.bytes_down - before.bytes_down;
  m.up = after.up - before.up;
  m.down = after.down - before.down;
  const auto i64 = [](const at::Tensor& t) { return t.defined() ? static_cast<std::uint64_t>(t.numel()) * 8 : 0; };
  m.naive_up = static_cast<std::uint64_t>(activation.numel()) * 4 + ids * 8 + i64(labels) + i64(mask);
  m.naive_down = static_cast<std::uint64_t>(gradient.numel()) * 4;
  if (m.bytes_up) m.frame_ratio_up = double(m.naive_up) / double(m.bytes_up);
  if (m.bytes_down) m.frame_ratio_down = double(m.naive_down) / double(m.bytes_down);
}

ByteBreakdown& ByteBreakdown::operator+=(const ByteBreakdown& o) {
  header += o.header;
  metadata += o.metadata;
  tensor += o.tensor;
  ids += o.ids;
  labels += o.labels;
  mask += o.mask;
  return *this;
}

ByteBreakdown ByteBreakdown::operator-(const ByteBreakdown& o) const {
  return {header - o.header, metadata - o.metadata, tensor - o.tensor, ids - o.ids, labels - o.labels, mask - o.mask};
}

void TrafficSummary::add(const StepMetrics& m) {
  ++steps;
  up += m.up;
  down += m.down;
  naive_up += m.naive_up;
  naive_down += m.naive_down;
  if (m.ratio_up > 0) fp32_up += m.ratio_up * double(m.up.tensor);
  if (m.ratio_down > 0) fp32_down += m.ratio_down * double(m.down.tensor);
}

std::string TrafficSummary::describe() const {
  if (!steps) return "no steps\n";
  auto line = [&](const char* dir, const ByteBreakdown& b, double fp32, std::uint64_t naive) {
    const double n = double(steps);
    char buf[512];
    std::snprintf(buf, sizeof buf,
                  "%s per step: %.0f B = tensor %.0f + mask %.0f + labels %.0f + ids %.0f + metadata %.0f + header %.0f; "
                  "codec ratio x%.1f, whole-frame ratio x%.1f (vs fp32 + int64 extras)\n",
                  dir, b.total() / n, b.tensor / n, b.mask / n, b.labels / n, b.ids / n, b.metadata / n, b.header / n,
                  b.tensor ? fp32 / double(b.tensor) : 0.0, b.total() ? double(naive) / double(b.total()) : 0.0);
    return std::string(buf);
  };
  return line("up  ", up, fp32_up, naive_up) + line("down", down, fp32_down, naive_down);
}

}  // namespace seam::training
