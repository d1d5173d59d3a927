#include "seam/pipeline/profiler.hpp"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <stdexcept>

#include "seam/compression/codec.hpp"
#include "seam/training/checkpoint.hpp"
#include "seam/training/stages.hpp"

namespace seam::pipeline {

namespace {
std::uint64_t tensor_bytes(const at::Tensor& t) { return static_cast<std::uint64_t>(t.numel() * t.element_size()); }
}  // namespace

ModelProfile profile_model(const training::ModelConfig& config, const std::string& checkpoint, const ProfileOptions& o) {
  if (o.micro_batch < 1) throw std::invalid_argument("profile: micro_batch must be >= 1");
  if (o.repeats < 1) throw std::invalid_argument("profile: repeats must be >= 1");
  const training::ModelConfig c = checkpoint.empty() ? config : training::checkpoint_config(checkpoint);
  const auto n = training::block_count(c);
  auto codec = compression::make_codec(o.codec);
  compression::CodecContext ctx;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  const bool text = c.kind == "bert" || c.kind == "gpt";
  const std::int64_t len = o.seq_len > 0 ? o.seq_len : c.max_len;
  at::Tensor x, mask;
  if (text) {
    x = at::randint(0, 256, {o.micro_batch, len}, gen, at::TensorOptions().dtype(at::kLong));
    mask = at::ones({o.micro_batch, len}, at::TensorOptions().dtype(at::kLong));
  } else {
    x = at::rand({o.micro_batch, c.channels, c.image_size, c.image_size}, gen);
  }
  training::BatchContext bc;
  bc.attention_mask = mask;
  bc.batch_size = o.micro_batch;

  ModelProfile p;
  p.model = c.kind + " width=" + std::to_string(c.width) + " depth=" + std::to_string(c.depth) +
            (checkpoint.empty() ? "" : " checkpoint=" + checkpoint);
  p.codec = codec->spec();
  p.micro_batch = o.micro_batch;
  for (std::int64_t k = 0; k < n; ++k) {
    auto block = training::build_model_range(c, k, k + 1, checkpoint);
    block.train(false);
    c10::InferenceMode guard;
    at::Tensor y;
    for (int w = 0; w < o.warmup; ++w) y = block.forward(x, bc);
    std::vector<double> times;
    for (int r = 0; r < o.repeats; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      y = block.forward(x, bc).contiguous();
      times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::nth_element(times.begin(), times.begin() + static_cast<std::ptrdiff_t>(times.size() / 2), times.end());
    BlockProfile b;
    b.name = block.block_names().at(0);
    b.compute_s = times[times.size() / 2];
    for (const auto& [name, t] : block.named_parameters()) b.param_bytes += tensor_bytes(t);
    for (const auto& [name, t] : block.named_buffers()) b.param_bytes += tensor_bytes(t);
    b.activation_bytes = tensor_bytes(x) + tensor_bytes(y);
    b.output_bytes = codec->encode(y.to(at::kFloat), ctx).size();
    p.blocks.push_back(b);
    x = y;
  }
  return p;
}

}  // namespace seam::pipeline
