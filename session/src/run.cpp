#include "seam/session/run.hpp"

#include <chrono>

namespace seam::session {

namespace t = seam::training;
using clock_type = std::chrono::steady_clock;

t::RunResult run_split_training(const t::ModelConfig& mc, const t::HalfSettings& hs, const t::Task& task,
                                const t::RunOptions& ro, const std::string& pretrained, const t::Progress& progress) {
  JobSpec js{mc, hs, pretrained};
  check_job(js);
  auto sm = t::build_split_model(mc, pretrained);
  const PreparedJob job = in_memory_job(js, sm.edge);
  CloudSession cloud(sm.cloud, job, {});
  EdgeSession edge(sm.edge, job, {});
  InProcessLink link(cloud);
  edge.connect(link, "in-process");
  // Test accuracy goes through the cloud's Infer path, the activation encoded
  // with the up codec as seam-edge's does: what a deployed split model scores.
  // Its own link keeps inference frames out of the training traffic figures.
  InProcessLink eval_link(cloud);
  auto test_accuracy = [&](std::size_t limit) { return edge.evaluate(eval_link, task, t::Split::test, 256, limit); };
  t::Sampler sampler(task.size(t::Split::train), ro.data_seed);
  t::RunResult r;
  auto t0 = clock_type::now();
  for (std::int64_t s = 0; s < ro.steps; ++s) {
    auto b = task.batch(t::Split::train, sampler.next(ro.batch));
    auto m = edge.train_step(link, b);
    if (!m) throw SessionError(SessionErrc::step_order, "in-process session lost its step order");
    r.last_loss = m->loss;
    r.traffic.add(*m);
    double acc = -1;
    if (ro.eval_every > 0 && (s + 1) % ro.eval_every == 0 && s + 1 < ro.steps)
      acc = test_accuracy(ro.eval_limit);
    if (progress) progress(*m, acc);
  }
  // The reported accuracy is always over the whole test split (eval_limit only
  // shortens the periodic evaluations).
  r.test_accuracy = test_accuracy(0);
  r.seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
  r.link = link.stats();
  r.steps = ro.steps;
  return r;
}

t::RunResult run_edge(EdgeSession& edge, SessionLink& link, const t::Task& task, const t::RunOptions& ro,
                      const std::string& client_id, const t::Progress& progress) {
  edge.connect(link, client_id);
  t::Sampler sampler(task.size(t::Split::train), ro.data_seed);
  std::int64_t sampler_at = -1;
  t::RunResult r;
  auto t0 = clock_type::now();
  while (static_cast<std::int64_t>(edge.step()) < ro.steps) {
    const auto k = static_cast<std::int64_t>(edge.step());
    if (k != sampler_at) sampler.seek(k, ro.batch);
    auto b = task.batch(t::Split::train, sampler.next(ro.batch));
    sampler_at = k + 1;
    auto m = edge.train_step(link, b);
    if (!m) {
      sampler_at = -1;  // rolled back: replay from the session's step
      continue;
    }
    r.last_loss = m->loss;
    r.traffic.add(*m);
    if (progress) progress(*m, -1);
  }
  r.seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
  r.link = link.stats();
  r.steps = ro.steps;
  return r;
}

}  // namespace seam::session
