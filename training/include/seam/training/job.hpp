#pragma once
// Tasks (datasets behind one interface) and the training loops: pre-training
// an unsplit model, and split fine-tuning through a Link with periodic
// evaluation. Programs call these with options structs.
#include <ATen/core/Tensor.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "seam/training/model.hpp"
#include "seam/training/split_step.hpp"

namespace seam::training {

enum class Split { train, valid, test };

struct TaskBatch {
  at::Tensor x, labels, mask;
  std::vector<std::int64_t> ids;
};

class Task {
 public:
  virtual ~Task() = default;
  virtual std::string name() const = 0;
  virtual bool is_text() const = 0;
  virtual std::int64_t num_classes() const = 0;
  virtual std::size_t size(Split s) const = 0;
  virtual TaskBatch batch(Split s, const std::vector<std::int64_t>& indices) const = 0;
};

// "fashion-mnist", "fashion-mnist:0-4" (only classes 0..4, relabelled),
// "fortunes-topic", "fortunes-language", or "jsonl:PATH". Text tasks encode to
// max_len bytes. Throws std::invalid_argument for an unknown spec.
std::unique_ptr<Task> make_task(const std::string& spec, std::int64_t max_len = 128, std::size_t max_per_class = 0);

// Accuracy of edge+cloud (or a full model when cloud is null) on a split,
// without codecs. `limit` > 0 evaluates only the first `limit` examples.
double evaluate(ModelHalf& edge, ModelHalf* cloud, const Task& task, Split s, std::size_t limit = 0,
                std::int64_t batch = 256);

// Seeded batches of distinct indices: one shuffled permutation per epoch.
class Sampler {
 public:
  Sampler(std::size_t n, std::uint64_t seed);
  std::vector<std::int64_t> next(std::int64_t batch);
  // Positions the sampler as if next(batch) had been called `batches` times
  // (a resumed session replays the same data order from its step).
  void seek(std::int64_t batches, std::int64_t batch);
  std::int64_t epoch() const { return epoch_; }

 private:
  std::size_t n_, pos_ = 0;
  std::uint64_t seed_;
  std::int64_t epoch_ = 0;
  std::vector<std::int64_t> perm_;
};

struct RunOptions {
  std::int64_t steps = 1000;
  std::int64_t batch = 64;
  std::int64_t eval_every = 0;  // 0: only at the end
  std::size_t eval_limit = 0;   // periodic evaluations: first N test examples (0: all); the final one uses all
  std::uint64_t data_seed = 0;
  std::int64_t log_every = 50;
};

struct RunResult {
  double last_loss = 0, test_accuracy = 0, seconds = 0;
  LinkStats link;
  TrafficSummary traffic;  // the training steps' frames (Hello and checkpoints are only in `link`)
  std::int64_t steps = 0;
};

using Progress = std::function<void(const StepMetrics& m, double eval_accuracy)>;  // eval < 0: none this step

// Pre-training of the unsplit model: bert = masked-LM (15% of bytes), gpt =
// next-byte LM, vit/cnn = classification. Saves a checkpoint whose "edge" half
// is the whole model. Returns the mean loss of the last 50 steps in last_loss.
RunResult pretrain(const ModelConfig& mc, const OptimConfig& oc, const Task& task, const RunOptions& ro,
                   const std::string& out_path, const Progress& progress = {});

// Copies a pre-training checkpoint's weights into a model built from `mc`
// (block names are global indices, so they match across splits). Tensors whose
// shape differs (e.g. a new classification head) are skipped; returns their names.
std::vector<std::string> load_pretrained(ModelHalf& full, const std::string& path);

// What a pretrained checkpoint gave a model: the tensors loaded, and each one
// not loaded with the reason (missing, or shapes in checkpoint and model).
struct PretrainedLoad {
  std::string path, kind;  // kind: the checkpoint's model kind
  std::vector<std::string> loaded, skipped, skipped_names;
  std::string describe() const;  // one line, then one line per tensor not loaded
};

// As load_pretrained, and refuses (CheckpointError) a checkpoint whose model kind
// differs from `model_kind` (empty: any kind).
PretrainedLoad load_pretrained_report(ModelHalf& full, const std::string& path, const std::string& model_kind);

// Loads `path` into a fresh whole model built from `mc` and reports it; lets a
// program say what a fine-tune will start from before it starts.
PretrainedLoad check_pretrained(const ModelConfig& mc, const std::string& path);

// Throws std::invalid_argument, naming both and what fits, when a model kind
// cannot read the task's inputs (vit/cnn take images, bert/gpt take text).
void check_model_fits_task(const std::string& model_kind, const Task& task);

}  // namespace seam::training
