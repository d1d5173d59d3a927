#include "seam/session/exchange.hpp"

#include <torch/torch.h>

#include <chrono>
#include <stdexcept>

#include "seam/compression/codec.hpp"
#include "state_store.hpp"

namespace seam::session {

namespace t = seam::training;
using clock_type = std::chrono::steady_clock;

namespace {
double ms_since(clock_type::time_point t0) {
  return std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
}
}  // namespace

ActivationExchange::ActivationExchange(EdgeSession& edge) : edge_(edge) {}

ExchangeResult ActivationExchange::step(SessionLink& link, const at::Tensor& activation, const at::Tensor& labels,
                                        const std::vector<std::int64_t>& ids, const at::Tensor& mask) {
  if (!activation.defined() || activation.dim() < 2 || activation.size(0) != static_cast<std::int64_t>(ids.size()))
    throw std::invalid_argument("exchange: the activation must be [B, ...] with one sample id per row (got " +
                                std::to_string(ids.size()) + " ids)");
  if (!activation.is_floating_point()) throw std::invalid_argument("exchange: the activation must be a float tensor");
  if (!labels.defined() || labels.scalar_type() != at::kLong || labels.size(0) != activation.size(0))
    throw std::invalid_argument("exchange: labels must be int64 with one row per sample");
  t::HalfState& st = edge_.state();
  const auto& hs = edge_.job().spec.half;
  const std::uint64_t s = st.steps_done();
  t::StepMetrics m;
  m.step = s;
  const auto before = link.stats();
  auto t0 = clock_type::now();
  const at::Tensor a = activation.detach().to(at::kFloat).contiguous();
  if (!pending_ || pending_->step != s || pending_->sample_ids != ids) {
    t::StepRequest req;
    req.step = s;
    req.sample_ids = ids;
    req.labels = labels;
    req.attention_mask = mask;
    st.up_context().step = static_cast<std::int64_t>(s);
    st.up_context().sample_ids = ids;
    req.activations = compression::make_codec(hs.up_codec)->encode(a, st.up_context());
    pending_ = std::move(req);
  }
  m.encode_ms = ms_since(t0);
  m.ratio_up = double(a.numel() * 4) / double(pending_->activations.size());

  t0 = clock_type::now();
  t::StepReply rep = link.exchange(*pending_);
  m.cloud_ms = rep.cloud_ms;
  m.link_ms = std::max(0.0, ms_since(t0) - rep.cloud_ms);
  if (rep.step != s)
    throw SessionError(SessionErrc::step_order,
                       "exchange: reply for step " + std::to_string(rep.step) + ", expected " + std::to_string(s));

  t0 = clock_type::now();
  st.down_context().step = static_cast<std::int64_t>(s);
  st.down_context().sample_ids = ids;
  at::Tensor g = compression::make_codec(hs.down_codec)
                     ->decode(rep.gradient.data(), rep.gradient.size(), st.down_context())
                     .to(activation.scalar_type());
  m.decode_ms = ms_since(t0);
  if (g.sizes() != activation.sizes())
    throw std::runtime_error("exchange: the cloud's gradient is shaped " + c10::str(g.sizes()) + ", the activation " +
                             c10::str(activation.sizes()) + ": the front model does not produce the job's cut");
  m.ratio_down = double(g.numel() * 4) / double(rep.gradient.size());
  pending_.reset();
  st.set_steps_done(s + 1);

  t::finish_step_metrics(m, rep, before, link.stats(), a, g, ids.size(), labels, mask);
  return {g, m};
}

at::Tensor ActivationExchange::infer(SessionLink& link, const at::Tensor& activation, InferOutput out,
                                     const at::Tensor& mask) {
  if (!activation.defined() || activation.dim() < 2 || !activation.is_floating_point())
    throw std::invalid_argument("infer: the activation must be a float tensor [B, ...]");
  compression::CodecContext ctx(edge_.job().spec.half.seed);  // fresh: inference touches no session state
  InferRequest r;
  r.batch_id = ++infer_batches_;
  r.batch = activation.size(0);
  r.mask = mask;
  r.output = out;
  r.activations = compression::make_codec(infer_codec(edge_.job().spec.half.up_codec))
                      ->encode(activation.detach().to(at::kFloat).contiguous(), ctx);
  return link.infer(r);
}

std::string save_coordinated(EdgeSession& edge, SessionLink& link, const SessionOptions& o) {
  if (o.state_dir.empty()) throw std::invalid_argument("save: the session has no state folder to save into");
  detail::StateStore store(o.state_dir, o.keep_checkpoints, true, &edge.job().spec.model, edge.job().fingerprint);
  const std::string dir = store.save(edge.state());
  link.checkpoint(edge.step());
  return dir;
}

}  // namespace seam::session
