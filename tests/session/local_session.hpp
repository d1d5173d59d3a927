#pragma once
// Test helper: both halves of a split model in this process, joined by an
// InProcessLink (the real frames of the step protocol).
#include "seam/session/links.hpp"
#include "seam/session/session.hpp"

namespace seam::session::test {

struct LocalSession {
  LocalSession(training::ModelHalf& edge_half, training::ModelHalf& cloud_half, const training::ModelConfig& c,
               const training::HalfSettings& hs)
      : job(in_memory_job(JobSpec{c, hs, ""}, edge_half)), cloud(cloud_half, job, {}), edge(edge_half, job, {}), link(cloud) {
    edge.connect(link, "local");
  }
  training::StepMetrics step(const at::Tensor& x, const at::Tensor& labels, const std::vector<std::int64_t>& ids,
                             const at::Tensor& mask = {}) {
    auto m = edge.train_step(link, training::TaskBatch{x, labels, mask, ids});
    if (!m) throw std::runtime_error("local session rolled back");
    return *m;
  }
  PreparedJob job;
  CloudSession cloud;
  EdgeSession edge;
  InProcessLink link;
};

}  // namespace seam::session::test
