#include "seam/training/job.hpp"

#include <torch/torch.h>

#include <chrono>
#include <stdexcept>

#include "model_impl.hpp"
#include "seam/training/checkpoint.hpp"
#include "seam/training/fashion_mnist.hpp"
#include "seam/training/text_data.hpp"

namespace seam::training {

namespace {

class ImageTask final : public Task {
 public:
  ImageTask(std::int64_t lo, std::int64_t hi) : lo_(lo), hi_(hi) {
    train_ = filter(load_fashion_mnist("train"));
    test_ = filter(load_fashion_mnist("test"));
  }
  std::string name() const override {
    return "fashion-mnist" + (lo_ == 0 && hi_ == 9 ? std::string() : ":" + std::to_string(lo_) + "-" + std::to_string(hi_));
  }
  bool is_text() const override { return false; }
  std::int64_t num_classes() const override { return hi_ - lo_ + 1; }
  std::size_t size(Split s) const override {
    return s == Split::valid ? 0 : static_cast<std::size_t>((s == Split::train ? train_ : test_).images.size(0));
  }
  TaskBatch batch(Split s, const std::vector<std::int64_t>& idx) const override {
    const auto& set = s == Split::train ? train_ : test_;
    auto i = at::tensor(idx, at::TensorOptions().dtype(at::kLong));
    TaskBatch b;
    // Normalised with Fashion-MNIST's training mean and std (0.2860, 0.3530).
    b.x = (set.images.index_select(0, i) - 0.2860) / 0.3530;
    b.labels = set.labels.index_select(0, i);
    auto ids = set.ids.index_select(0, i);
    b.ids.assign(ids.data_ptr<std::int64_t>(), ids.data_ptr<std::int64_t>() + ids.numel());
    return b;
  }

 private:
  ImageSet filter(ImageSet s) const {
    if (lo_ == 0 && hi_ == 9) return s;
    auto keep = (s.labels >= lo_).logical_and(s.labels <= hi_).nonzero().squeeze(1);
    return ImageSet{s.images.index_select(0, keep), s.labels.index_select(0, keep) - lo_, s.ids.index_select(0, keep)};
  }
  std::int64_t lo_, hi_;
  ImageSet train_, test_;
};

class TextTask final : public Task {
 public:
  TextTask(std::string name, TextDataset d, std::int64_t max_len) : name_(std::move(name)), d_(std::move(d)), max_len_(max_len) {}
  std::string name() const override { return name_; }
  bool is_text() const override { return true; }
  std::int64_t num_classes() const override { return static_cast<std::int64_t>(d_.classes.size()); }
  std::size_t size(Split s) const override { return split(s).size(); }
  TaskBatch batch(Split s, const std::vector<std::int64_t>& idx) const override {
    auto t = make_text_batch(split(s), idx, max_len_, /*cls=*/true);
    return TaskBatch{t.tokens, t.labels, t.mask, t.ids};
  }

 private:
  const std::vector<TextExample>& split(Split s) const { return s == Split::train ? d_.train : s == Split::valid ? d_.valid : d_.test; }
  std::string name_;
  TextDataset d_;
  std::int64_t max_len_;
};

using clock_type = std::chrono::steady_clock;

}  // namespace

Sampler::Sampler(std::size_t n, std::uint64_t seed) : n_(n), seed_(seed), perm_(shuffled_indices(n, seed, 0)) {}

// A batch never straddles two epochs, so no sample appears twice in one batch
// (AC-SGD keys buffers by sample id); an epoch's last partial batch is dropped.
std::vector<std::int64_t> Sampler::next(std::int64_t b) {
  if (b < 1 || static_cast<std::size_t>(b) > n_)
    throw std::invalid_argument("batch size " + std::to_string(b) + " must be in 1.." + std::to_string(n_));
  if (pos_ + static_cast<std::size_t>(b) > n_) {
    perm_ = shuffled_indices(n_, seed_, ++epoch_);
    pos_ = 0;
  }
  std::vector<std::int64_t> out(perm_.begin() + static_cast<std::ptrdiff_t>(pos_),
                                perm_.begin() + static_cast<std::ptrdiff_t>(pos_ + static_cast<std::size_t>(b)));
  pos_ += static_cast<std::size_t>(b);
  return out;
}

void Sampler::seek(std::int64_t batches, std::int64_t b) {
  if (b < 1 || static_cast<std::size_t>(b) > n_ || batches < 0)
    throw std::invalid_argument("sampler seek: batch size " + std::to_string(b) + " must be in 1.." + std::to_string(n_));
  const auto per_epoch = static_cast<std::int64_t>(n_) / b;
  epoch_ = batches / per_epoch;
  perm_ = shuffled_indices(n_, seed_, epoch_);
  pos_ = static_cast<std::size_t>((batches % per_epoch) * b);
}

std::unique_ptr<Task> make_task(const std::string& spec, std::int64_t max_len, std::size_t max_per_class) {
  if (spec == "fashion-mnist") return std::make_unique<ImageTask>(0, 9);
  if (spec.rfind("fashion-mnist:", 0) == 0) {
    auto r = spec.substr(14);
    auto dash = r.find('-');
    std::int64_t lo = -1, hi = -1;
    try {
      lo = std::stoll(r.substr(0, dash));
      hi = std::stoll(r.substr(dash + 1));
    } catch (...) {
    }
    if (dash == std::string::npos || lo < 0 || hi > 9 || lo >= hi)
      throw std::invalid_argument("task '" + spec + "': use fashion-mnist:LO-HI with 0 <= LO < HI <= 9");
    return std::make_unique<ImageTask>(lo, hi);
  }
  if (spec == "fortunes-topic") return std::make_unique<TextTask>(spec, load_fortunes("topic", max_per_class), max_len);
  if (spec == "fortunes-language")
    return std::make_unique<TextTask>(spec, load_fortunes("language", max_per_class), max_len);
  if (spec.rfind("jsonl:", 0) == 0) return std::make_unique<TextTask>(spec, load_jsonl(spec.substr(6)), max_len);
  throw std::invalid_argument("unknown task '" + spec +
                              "' (fashion-mnist, fashion-mnist:LO-HI, fortunes-topic, fortunes-language, jsonl:PATH)");
}

double evaluate(ModelHalf& edge, ModelHalf* cloud, const Task& task, Split s, std::size_t limit, std::int64_t batch) {
  torch::NoGradGuard ng;
  edge.train(false);
  if (cloud) cloud->train(false);
  std::size_t n = task.size(s);
  if (limit) n = std::min(n, limit);
  double correct = 0;
  for (std::size_t i = 0; i < n; i += static_cast<std::size_t>(batch)) {
    std::vector<std::int64_t> idx;
    for (std::size_t j = i; j < std::min(n, i + static_cast<std::size_t>(batch)); ++j) idx.push_back(static_cast<std::int64_t>(j));
    auto b = task.batch(s, idx);
    BatchContext ctx{b.mask, static_cast<std::int64_t>(idx.size())};
    auto logits = edge.forward(b.x, ctx);
    if (cloud) logits = cloud->forward(logits, ctx);
    correct += logits.argmax(1).eq(b.labels).sum().item<double>();
  }
  edge.train(true);
  if (cloud) cloud->train(true);
  return n ? correct / double(n) : 0.0;
}

std::string PretrainedLoad::describe() const {
  std::string s = "pretrained '" + path + "' (" + kind + "): loaded " + std::to_string(loaded.size()) + " of " +
                  std::to_string(loaded.size() + skipped.size()) + " tensors";
  if (skipped.empty()) return s + "\n";
  s += "; not loaded (they keep their fresh initialisation):\n";
  for (const auto& k : skipped) s += "  " + k + "\n";
  return s;
}

PretrainedLoad load_pretrained_report(ModelHalf& full, const std::string& path, const std::string& model_kind) {
  PretrainedLoad r;
  r.path = path;
  r.kind = checkpoint_config(path).kind;  // throws CheckpointError naming the file when it is not a checkpoint
  if (!model_kind.empty() && r.kind != model_kind)
    throw CheckpointError("pretrained checkpoint '" + path + "' holds a " + r.kind + " model, but the model is " +
                          model_kind + "; pre-train a " + model_kind + " or use --model " + r.kind);
  torch::serialize::InputArchive ar;
  try {
    ar.load_from(path);
  } catch (const c10::Error& e) {
    throw CheckpointError("cannot read pretrained checkpoint '" + path + "': " + e.what_without_backtrace());
  }
  torch::NoGradGuard ng;
  auto load = [&](const NamedTensors& named, const char* kind, bool buffer) {
    for (auto& [name, dst] : named) {
      at::Tensor t;
      if (!ar.try_read(std::string("edge/") + kind + "/" + name, t, buffer)) {
        r.skipped.push_back(name + ": not in the checkpoint");
        r.skipped_names.push_back(name);
        continue;
      }
      if (t.sizes() != dst.sizes()) {
        r.skipped.push_back(name + ": shape " + c10::str(t.sizes()) + " in the checkpoint, " +
                            c10::str(dst.sizes()) + " in the model");
        r.skipped_names.push_back(name);
        continue;
      }
      at::Tensor d = dst;
      d.copy_(t);
      r.loaded.push_back(name);
    }
  };
  load(full.named_parameters(), "p", false);
  load(full.named_buffers(), "b", true);
  if (r.loaded.empty()) throw CheckpointError("pretrained checkpoint '" + path + "' has no tensor that fits this model");
  return r;
}

std::vector<std::string> load_pretrained(ModelHalf& full, const std::string& path) {
  return load_pretrained_report(full, path, "").skipped_names;
}

PretrainedLoad check_pretrained(const ModelConfig& mc, const std::string& path) {
  auto full = build_full_model(mc);  // the unsplit model, boundary transforms left out
  return load_pretrained_report(full, path, mc.kind);
}

void check_model_fits_task(const std::string& model_kind, const Task& task) {
  if (model_kind == "torchscript") return;
  const bool text_model = model_kind == "bert" || model_kind == "gpt";
  if (text_model == task.is_text()) return;
  throw std::invalid_argument("--model " + model_kind + " reads " + (text_model ? "text" : "images") +
                              ", but task '" + task.name() + "' gives " + (task.is_text() ? "text" : "images") +
                              "; use " + (task.is_text() ? "--model bert (or gpt to pre-train)" : "--model vit or cnn") +
                              ", or a " + (text_model ? "text task (fortunes-*, jsonl:PATH)" : "fashion-mnist task"));
}

RunResult pretrain(const ModelConfig& mc, const OptimConfig& oc, const Task& task, const RunOptions& ro,
                   const std::string& out_path, const Progress& progress) {
  check_model_fits_task(mc.kind, task);
  auto full = build_full_model(mc);
  Optimizer opt(full, oc);
  Sampler sampler(task.size(Split::train), ro.data_seed);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(ro.data_seed ^ 0x5EEDull);
  RunResult r;
  double recent = 0;
  std::int64_t recent_n = 0;
  auto t0 = clock_type::now();
  for (std::int64_t s = 0; s < ro.steps; ++s) {
    auto b = task.batch(Split::train, sampler.next(ro.batch));
    at::Tensor x = b.x, labels = b.labels, mask = b.mask;
    if (mc.task == "mlm") {
      // 15% of real bytes are predicted: 80% shown as [MASK], 10% random, 10% kept.
      auto real = x.ge(0).logical_and(x.lt(256));
      auto pick = at::rand(x.sizes(), gen).lt(0.15).logical_and(real);
      labels = at::where(pick, x, at::full_like(x, -100));
      auto roll = at::rand(x.sizes(), gen);
      x = at::where(pick.logical_and(roll.lt(0.8)), at::full_like(x, ByteTokenizer::kMask), x);
      x = at::where(pick.logical_and(roll.ge(0.8)).logical_and(roll.lt(0.9)), at::randint(0, 256, x.sizes(), gen, at::kLong), x);
    } else if (mc.task == "lm") {
      x = b.x.narrow(1, 1, b.x.size(1) - 1);  // drop [CLS]
      auto next = at::cat({x.narrow(1, 1, x.size(1) - 1), at::full({x.size(0), 1}, ByteTokenizer::kPad, at::kLong)}, 1);
      labels = at::where(next.eq(ByteTokenizer::kPad), at::full_like(next, -100), next);
      mask = at::Tensor();  // causal attention: padding only ever follows the text
    }
    full.train(true);
    opt.zero_grad();
    auto loss = task_loss(mc.task, full.forward(x, BatchContext{mask, x.size(0)}), labels);
    loss.backward();
    opt.step(s);
    const double lv = loss.item<double>();
    if (s >= ro.steps - 50) {
      recent += lv;
      ++recent_n;
    }
    if (progress) {
      StepMetrics m;
      m.step = static_cast<std::uint64_t>(s);
      m.loss = lv;
      progress(m, -1);
    }
  }
  r.last_loss = recent_n ? recent / double(recent_n) : 0;
  r.seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
  r.steps = ro.steps;
  if (mc.task == "classify") r.test_accuracy = evaluate(full, nullptr, task, Split::test, ro.eval_limit);
  ModelHalf none(std::make_unique<ModelHalf::Impl>());
  CheckpointParts parts{&mc, &full, nullptr, &opt, nullptr, ro.steps, fingerprint(mc, full, none)};
  save_checkpoint(out_path, parts);
  return r;
}

}  // namespace seam::training
