#pragma once
// Native LibTorch models as ordered lists of blocks. A split index k puts
// blocks [0, k) on the edge and [k, n) in the cloud. LibTorch's module types
// stay inside the library: halves are used through ModelHalf.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace seam::training {

struct ModelConfig {
  std::string kind = "vit";     // vit | cnn | bert | gpt | torchscript
  std::string task = "classify";  // classify | mlm (bert) | lm (gpt)
  // images (vit, cnn)
  std::int64_t image_size = 28, channels = 1, patch = 7;
  std::int64_t classes = 10;
  // transformers (vit, bert, gpt)
  std::int64_t width = 64, depth = 4, heads = 4, mlp_ratio = 4;
  std::int64_t max_len = 128, vocab = 260;  // byte tokenizer: 256 bytes + 4 specials
  // cnn
  std::int64_t cnn_width = 16, cnn_stages = 3;
  // split
  std::int64_t split = 1;      // blocks [0, split) run on the edge
  std::int64_t sft_rank = 0;   // > 0: SFT bottleneck in the last edge block (transformers)
  // With SFT, what the cloud puts in place of the eliminated FFN residual:
  // none (link elimination, as the paper) | zero | pinv (a learned linear map
  // from the r bottleneck features back to the width, initialised to zero or to
  // the pseudo-inverse of the edge's projection). Nothing more crosses the link.
  std::string sft_skip = "none";
  std::int64_t c3_groups = 0;  // R > 0: C3 bind on the edge, unbind in the cloud
  std::string c3_keys = "gaussian";  // gaussian | unitary
  std::uint64_t seed = 0;      // initialisation and C3 keys
  // torchscript: a scripted nn.Sequential (or a module whose only child is a
  // ModuleList), split at child index `split`; or a front/back pair of files.
  std::string script_path;
  std::string script_back_path;  // set: script_path is the front, this the back
};

// Per-batch inputs besides the tensor that flows through the blocks.
struct BatchContext {
  at::Tensor attention_mask;  // [B, L], 1 = token, 0 = padding (text models)
  std::int64_t batch_size = 0;
};

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

class ModelHalf {
 public:
  struct Impl;
  explicit ModelHalf(std::unique_ptr<Impl> impl);
  ~ModelHalf();
  ModelHalf(ModelHalf&&) noexcept;
  ModelHalf& operator=(ModelHalf&&) noexcept;

  at::Tensor forward(const at::Tensor& x, const BatchContext& ctx);
  NamedTensors named_parameters() const;
  NamedTensors named_buffers() const;
  std::vector<at::Tensor> parameters() const;
  void train(bool on = true);
  std::int64_t num_blocks() const;
  std::vector<std::string> block_names() const;

 private:
  std::unique_ptr<Impl> impl_;
};

struct SplitModel {
  ModelHalf edge;
  ModelHalf cloud;
  std::int64_t total_blocks;
};

// Throws std::invalid_argument naming the problem (unknown kind, split out of
// range, SFT on a CNN, ...); what build_split_model refuses, without building.
void check_model_config(const ModelConfig& c);

// Number of blocks of the unsplit model (valid split indices are 1..n-1).
std::int64_t block_count(const ModelConfig& c);

// Builds the whole model (weights drawn from an explicit generator seeded
// with `c.seed`; LibTorch's global generator is never seeded), then splits it. Throws
// std::invalid_argument naming the problem (unknown kind, split out of range,
// SFT on a CNN, ...).
// `pretrained`: a pre-training checkpoint whose weights are loaded before the
// split (so an SFT bottleneck factorises pretrained weights); tensors whose
// shapes differ, such as a new head, keep their fresh initialisation.
// `derive` = false skips computing derived weights (the SFT factors' SVD): the
// caller loads them from a prepared job's files, so they are computed once.
SplitModel build_split_model(const ModelConfig& c, const std::string& pretrained = "", bool derive = true);

// The same model, same initialisation, unsplit (no SFT/C3): the reference for
// equivalence tests and the form pre-training uses.
ModelHalf build_full_model(const ModelConfig& c);

// Copies tensors from a Python state_dict saved with torch.save(dict(sd), f)
// into the half's parameters and buffers with the same names. Returns how many
// were loaded; throws std::runtime_error on a shape mismatch, an unreadable file,
// or when nothing matched.
std::size_t load_state_dict(ModelHalf& half, const std::string& path);

// Hash of the config fields that shape the model and of every parameter's
// name and shape: two halves with the same fingerprint fit together.
std::string fingerprint(const ModelConfig& c, const ModelHalf& edge, const ModelHalf& cloud);

}  // namespace seam::training
