#include "seam/training/model.hpp"
#include "seam/training/edge_half.hpp"

#include <cmath>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>

#include <ATen/CPUGeneratorImpl.h>

#include "model_impl.hpp"
#include "seam/compression/c3.hpp"
#include "seam/compression/sft.hpp"
#include "seam/training/job.hpp"
#include "seam/training/stages.hpp"

namespace seam::training {

namespace nn = torch::nn;

namespace {

struct Attention : nn::Module {
  Attention(std::int64_t w, std::int64_t heads, bool causal) : heads_(heads), causal_(causal) {
    qkv = register_module("qkv", nn::Linear(w, 3 * w));
    proj = register_module("proj", nn::Linear(w, w));
  }
  at::Tensor forward(const at::Tensor& x, const at::Tensor& mask) {
    const auto b = x.size(0), l = x.size(1), w = x.size(2), d = w / heads_;
    auto t = qkv(x).view({b, l, 3, heads_, d}).permute({2, 0, 3, 1, 4});
    auto q = t[0], k = t[1], v = t[2];
    auto scores = torch::matmul(q, k.transpose(-2, -1)) / std::sqrt(static_cast<double>(d));
    // A large finite negative instead of -inf keeps fully padded rows finite.
    if (causal_) {
      auto future = torch::ones({l, l}, torch::kBool).triu(1);
      scores = scores.masked_fill(future, -1e9);
    }
    if (mask.defined()) scores = scores.masked_fill(mask.view({b, 1, 1, l}).eq(0), -1e9);
    auto out = torch::matmul(torch::softmax(scores, -1), v).transpose(1, 2).reshape({b, l, w});
    return proj(out);
  }
  std::int64_t heads_;
  bool causal_;
  nn::Linear qkv{nullptr}, proj{nullptr};
};

// Pre-LN transformer block: x + attn(ln1 x), then + fc2(gelu(fc1(ln2 x))).
struct TransformerBlock : Block {
  TransformerBlock(const ModelConfig& c, bool causal) {
    ln1 = register_module("ln1", nn::LayerNorm(nn::LayerNormOptions({c.width})));
    attn = register_module("attn", std::make_shared<Attention>(c.width, c.heads, causal));
    ln2 = register_module("ln2", nn::LayerNorm(nn::LayerNormOptions({c.width})));
    fc1 = register_module("fc1", nn::Linear(c.width, c.width * c.mlp_ratio));
    fc2 = register_module("fc2", nn::Linear(c.width * c.mlp_ratio, c.width));
  }
  at::Tensor run(const at::Tensor& x, const BatchContext& ctx) override {
    auto h = x + attn->forward(ln1(x), ctx.attention_mask);
    return h + fc2(torch::gelu(fc1(ln2(h))));
  }
  nn::LayerNorm ln1{nullptr}, ln2{nullptr};
  std::shared_ptr<Attention> attn;
  nn::Linear fc1{nullptr}, fc2{nullptr};
};

// SFT, edge side of the split layer: attention as usual, then only the rank-r
// projection of ln2(h) leaves the device. The FFN residual h stays behind
// (link elimination), so nothing width-sized has to cross.
struct SftEdgeBlock : Block {
  SftEdgeBlock(TransformerBlock& src, const at::Tensor& down) {
    ln1 = register_module("ln1", src.ln1);
    attn = register_module("attn", src.attn);
    ln2 = register_module("ln2", src.ln2);
    sft_down = register_parameter("sft_down", down.clone());
  }
  at::Tensor run(const at::Tensor& x, const BatchContext& ctx) override {
    auto h = x + attn->forward(ln1(x), ctx.attention_mask);
    return compression::sft_edge(ln2(h), sft_down);
  }
  nn::LayerNorm ln1{nullptr}, ln2{nullptr};
  std::shared_ptr<Attention> attn;
  at::Tensor sft_down;
};

// SFT, cloud side: U_r t + b1 -> GELU -> fc2, with no residual; or, with a
// skip matrix P [width, r], plus P t (a linear stand-in for the residual, made
// from the same r features: nothing more crosses).
struct SftCloudBlock : Block {
  SftCloudBlock(TransformerBlock& src, const at::Tensor& up, const at::Tensor& bias, const at::Tensor& skip) {
    sft_up = register_parameter("sft_up", up.clone());
    sft_bias = register_parameter("sft_bias", bias.clone());
    if (skip.defined()) sft_skip = register_parameter("sft_skip", skip.clone());
    fc2 = register_module("fc2", src.fc2);
  }
  at::Tensor run(const at::Tensor& t, const BatchContext&) override {
    auto y = fc2(torch::gelu(compression::sft_cloud(t, sft_up, sft_bias)));
    return sft_skip.defined() ? y + torch::matmul(t, sft_skip.t()) : y;
  }
  at::Tensor sft_up, sft_bias, sft_skip;
  nn::Linear fc2{nullptr};
};

struct C3BindBlock : Block {
  explicit C3BindBlock(std::shared_ptr<compression::C3Transform> t) : c3(std::move(t)) {}
  at::Tensor run(const at::Tensor& x, const BatchContext&) override { return c3->bind(x); }
  std::shared_ptr<compression::C3Transform> c3;
};

struct C3UnbindBlock : Block {
  explicit C3UnbindBlock(std::shared_ptr<compression::C3Transform> t) : c3(std::move(t)) {}
  at::Tensor run(const at::Tensor& v, const BatchContext& ctx) override {
    if (ctx.batch_size <= 0) throw std::invalid_argument("c3 unbind needs BatchContext::batch_size");
    return c3->unbind(v, ctx.batch_size);
  }
  std::shared_ptr<compression::C3Transform> c3;
};

struct PatchEmbed : Block {
  explicit PatchEmbed(const ModelConfig& c) {
    const auto n = (c.image_size / c.patch) * (c.image_size / c.patch);
    conv = register_module("conv", nn::Conv2d(nn::Conv2dOptions(c.channels, c.width, c.patch).stride(c.patch)));
    cls = register_parameter("cls", torch::zeros({1, 1, c.width}));
    pos = register_parameter("pos", torch::zeros({1, n + 1, c.width}));  // drawn in init_weights
  }
  at::Tensor run(const at::Tensor& x, const BatchContext&) override {
    auto p = conv(x).flatten(2).transpose(1, 2);
    return torch::cat({cls.expand({x.size(0), 1, cls.size(2)}), p}, 1) + pos;
  }
  nn::Conv2d conv{nullptr};
  at::Tensor cls, pos;
};

struct TokenEmbed : Block {
  explicit TokenEmbed(const ModelConfig& c) : max_len(c.max_len), vocab(c.vocab) {
    tok = register_module("tok", nn::Embedding(c.vocab, c.width));
    pos = register_parameter("pos", torch::zeros({1, c.max_len, c.width}));  // drawn in init_weights
  }
  at::Tensor run(const at::Tensor& x, const BatchContext&) override {
    if (x.dim() != 2 || x.size(1) > max_len)
      throw std::invalid_argument("text input must be [batch, length <= " + std::to_string(max_len) + "] token ids");
    return tok(x) + pos.narrow(1, 0, x.size(1));
  }
  std::int64_t max_len, vocab;
  nn::Embedding tok{nullptr};
  at::Tensor pos;
};

struct ClassifyHead : Block {
  ClassifyHead(std::int64_t w, std::int64_t classes) {
    ln = register_module("ln", nn::LayerNorm(nn::LayerNormOptions({w})));
    fc = register_module("fc", nn::Linear(w, classes));
  }
  at::Tensor run(const at::Tensor& x, const BatchContext&) override { return fc(ln(x).select(1, 0)); }
  nn::LayerNorm ln{nullptr};
  nn::Linear fc{nullptr};
};

struct TokenHead : Block {  // per-token logits (MLM, LM)
  TokenHead(std::int64_t w, std::int64_t vocab) {
    ln = register_module("ln", nn::LayerNorm(nn::LayerNormOptions({w})));
    fc = register_module("fc", nn::Linear(w, vocab));
  }
  at::Tensor run(const at::Tensor& x, const BatchContext&) override { return fc(ln(x)); }
  nn::LayerNorm ln{nullptr};
  nn::Linear fc{nullptr};
};

struct ConvStem : Block {
  ConvStem(std::int64_t in, std::int64_t out) {
    conv = register_module("conv", nn::Conv2d(nn::Conv2dOptions(in, out, 3).padding(1).bias(false)));
    bn = register_module("bn", nn::BatchNorm2d(out));
  }
  at::Tensor run(const at::Tensor& x, const BatchContext&) override { return torch::relu(bn(conv(x))); }
  nn::Conv2d conv{nullptr};
  nn::BatchNorm2d bn{nullptr};
};

struct ResBlock : Block {
  ResBlock(std::int64_t in, std::int64_t out, std::int64_t stride) {
    c1 = register_module("c1", nn::Conv2d(nn::Conv2dOptions(in, out, 3).stride(stride).padding(1).bias(false)));
    b1 = register_module("b1", nn::BatchNorm2d(out));
    c2 = register_module("c2", nn::Conv2d(nn::Conv2dOptions(out, out, 3).padding(1).bias(false)));
    b2 = register_module("b2", nn::BatchNorm2d(out));
    if (in != out || stride != 1) {
      sc = register_module("sc", nn::Conv2d(nn::Conv2dOptions(in, out, 1).stride(stride).bias(false)));
      sb = register_module("sb", nn::BatchNorm2d(out));
    }
  }
  at::Tensor run(const at::Tensor& x, const BatchContext&) override {
    auto y = b2(c2(torch::relu(b1(c1(x)))));
    return torch::relu(y + (sc ? sb(sc(x)) : x));
  }
  nn::Conv2d c1{nullptr}, c2{nullptr}, sc{nullptr};
  nn::BatchNorm2d b1{nullptr}, b2{nullptr}, sb{nullptr};
};

struct PoolHead : Block {
  PoolHead(std::int64_t w, std::int64_t classes) { fc = register_module("fc", nn::Linear(w, classes)); }
  at::Tensor run(const at::Tensor& x, const BatchContext&) override { return fc(x.mean({2, 3})); }
  nn::Linear fc{nullptr};
};

void check_config(const ModelConfig& c) {
  auto bad = [](const std::string& m) { throw std::invalid_argument("model config: " + m); };
  if (c.kind != "vit" && c.kind != "cnn" && c.kind != "bert" && c.kind != "gpt")
    bad("unknown model kind '" + c.kind + "' (vit, cnn, bert, gpt)");
  const bool transformer = c.kind != "cnn";
  if (transformer && (c.width <= 0 || c.heads <= 0 || c.width % c.heads != 0))
    bad("width " + std::to_string(c.width) + " must be a positive multiple of heads " + std::to_string(c.heads));
  if (transformer && c.depth < 1) bad("depth must be >= 1");
  if ((c.kind == "vit" || c.kind == "cnn") && (c.channels < 1 || c.image_size < 1)) bad("image geometry invalid");
  if (c.kind == "vit" && (c.patch < 1 || c.image_size % c.patch != 0))
    bad("image_size " + std::to_string(c.image_size) + " must be a multiple of patch " + std::to_string(c.patch));
  if (c.kind == "cnn" && (c.cnn_width < 1 || c.cnn_stages < 1)) bad("cnn_width and cnn_stages must be >= 1");
  const std::string want_task = c.kind == "bert" ? "classify|mlm" : c.kind == "gpt" ? "lm" : "classify";
  if (want_task.find(c.task) == std::string::npos || c.task.empty())
    bad("task '" + c.task + "' does not fit model '" + c.kind + "' (" + want_task + ")");
  const auto n = block_count(c);
  if (c.split < 1 || c.split > n - 1)
    bad("split " + std::to_string(c.split) + " out of range: " + c.kind + " has " + std::to_string(n) +
        " blocks, valid splits are 1.." + std::to_string(n - 1));
  if (c.sft_rank > 0) {
    if (!transformer) bad("sft_rank needs a transformer model (vit, bert, gpt)");
    if (c.split < 2 || c.split > c.depth + 1)
      bad("with sft_rank the last edge block must be a transformer block: split in 2.." + std::to_string(c.depth + 1));
    if (c.sft_rank > std::min(c.width, c.width * c.mlp_ratio)) bad("sft_rank larger than the layer");
  }
  if (c.sft_skip != "none" && c.sft_skip != "zero" && c.sft_skip != "pinv")
    bad("sft_skip must be none, zero or pinv (got '" + c.sft_skip + "')");
  if (c.sft_skip != "none" && c.sft_rank == 0) bad("sft_skip needs an SFT bottleneck (sft_rank > 0)");
  if (c.c3_groups < 0 || c.c3_groups > 64) bad("c3_groups must be in 0..64");
  if (c.c3_keys != "gaussian" && c.c3_keys != "unitary") bad("c3_keys must be gaussian or unitary");
}

// The model's blocks in order; only the first `limit` are built (an edge
// that must not build the cloud's blocks).
std::vector<std::shared_ptr<Block>> make_blocks(const ModelConfig& c, std::size_t limit = SIZE_MAX) {
  std::vector<std::shared_ptr<Block>> b;
  auto add = [&](auto make) {
    if (b.size() < limit) b.push_back(make());
  };
  if (c.kind == "cnn") {
    add([&] { return std::make_shared<ConvStem>(c.channels, c.cnn_width); });
    std::int64_t w = c.cnn_width;
    for (std::int64_t s = 0; s < c.cnn_stages; ++s) {
      std::int64_t out = s == 0 ? w : w * 2;
      add([&] { return std::make_shared<ResBlock>(w, out, s == 0 ? 1 : 2); });
      w = out;
    }
    add([&] { return std::make_shared<PoolHead>(w, c.classes); });
    return b;
  }
  if (c.kind == "vit") add([&] { return std::make_shared<PatchEmbed>(c); });
  else add([&] { return std::make_shared<TokenEmbed>(c); });
  for (std::int64_t i = 0; i < c.depth; ++i) add([&] { return std::make_shared<TransformerBlock>(c, c.kind == "gpt"); });
  if (c.task == "classify") add([&] { return std::make_shared<ClassifyHead>(c.width, c.classes); });
  else add([&] { return std::make_shared<TokenHead>(c.width, c.vocab); });
  return b;
}

std::uint64_t fnv1a(const std::string& s, std::uint64_t h = 1469598103934665603ull) {
  for (unsigned char ch : s) {
    h ^= ch;
    h *= 1099511628211ull;
  }
  return h;
}

}  // namespace

ModelHalf::ModelHalf(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ModelHalf::~ModelHalf() = default;
ModelHalf::ModelHalf(ModelHalf&&) noexcept = default;
ModelHalf& ModelHalf::operator=(ModelHalf&&) noexcept = default;

at::Tensor ModelHalf::forward(const at::Tensor& x, const BatchContext& ctx) {
  at::Tensor h = x;
  for (auto& b : impl_->blocks) h = b->run(h, ctx);
  return h;
}

NamedTensors ModelHalf::named_parameters() const {
  NamedTensors out;
  for (auto& p : impl_->root->named_parameters()) out.emplace_back(p.key(), p.value());
  for (auto& [name, sb] : impl_->scripts)
    for (const auto& p : sb->module.named_parameters(/*recurse=*/true)) out.emplace_back(name + "." + p.name, p.value);
  return out;
}

NamedTensors ModelHalf::named_buffers() const {
  NamedTensors out;
  for (auto& p : impl_->root->named_buffers()) out.emplace_back(p.key(), p.value());
  for (auto& [name, sb] : impl_->scripts)
    for (const auto& p : sb->module.named_buffers(/*recurse=*/true)) out.emplace_back(name + "." + p.name, p.value);
  return out;
}

std::vector<at::Tensor> ModelHalf::parameters() const {
  std::vector<at::Tensor> out;
  for (auto& [n, t] : named_parameters()) out.push_back(t);
  return out;
}

void ModelHalf::train(bool on) {
  impl_->root->train(on);
  for (auto& [name, sb] : impl_->scripts) sb->module.train(on);
}
std::int64_t ModelHalf::num_blocks() const { return static_cast<std::int64_t>(impl_->blocks.size()); }
std::vector<std::string> ModelHalf::block_names() const { return impl_->names; }

namespace {

torch::jit::Module load_script(const std::string& path) {
  try {
    return torch::jit::load(path);
  } catch (const c10::Error& e) {
    throw std::invalid_argument("cannot load TorchScript file '" + path + "': " + e.what_without_backtrace());
  }
}

// The blocks of a scripted model: the children of an nn.Sequential, or the
// items of the module's only child when that is a ModuleList.
std::vector<std::pair<std::string, torch::jit::Module>> script_blocks(const torch::jit::Module& m, const std::string& path) {
  std::vector<std::pair<std::string, torch::jit::Module>> kids;
  for (const auto& c : m.named_children()) kids.emplace_back(c.name, c.value);
  const auto type = m.type()->name() ? m.type()->name()->name() : std::string();
  if (type == "Sequential") return kids;
  if (kids.size() == 1) {
    std::vector<std::pair<std::string, torch::jit::Module>> items;
    for (const auto& c : kids[0].second.named_children()) items.emplace_back(kids[0].first + "." + c.name, c.value);
    if (!items.empty() && kids[0].second.type()->name() && kids[0].second.type()->name()->name() == "ModuleList")
      return items;
  }
  throw std::invalid_argument("TorchScript model '" + path +
                              "' is neither an nn.Sequential nor a module whose only child is a ModuleList; "
                              "export a Sequential, or give a front/back pair of files");
}

// Draws every random initial weight from one explicit generator seeded with
// the config's seed, so a model never depends on (or seeds) LibTorch's global
// generator. The distributions are PyTorch's defaults: Linear and Conv weights
// and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform with a=sqrt(5)),
// Embedding N(0, 1), position tables N(0, 0.02^2); norms keep ones and zeros.
void init_weights(const std::vector<std::shared_ptr<Block>>& blocks, std::uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  torch::NoGradGuard ng;
  auto fan_uniform = [&](at::Tensor& w, at::Tensor& b) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(w.numel() / w.size(0)));
    w.uniform_(-bound, bound, gen);
    if (b.defined()) b.uniform_(-bound, bound, gen);
  };
  for (const auto& blk : blocks) {
    for (const auto& m : blk->modules(/*include_self=*/true)) {
      if (auto* l = m->as<nn::Linear>()) fan_uniform(l->weight, l->bias);
      else if (auto* cv = m->as<nn::Conv2d>()) fan_uniform(cv->weight, cv->bias);
      else if (auto* e = m->as<nn::Embedding>()) e->weight.normal_(0.0, 1.0, gen);
    }
    for (auto& p : blk->named_parameters(/*recurse=*/false))
      if (p.key() == "pos") p.value().normal_(0.0, 0.02, gen);
  }
}

}  // namespace

void check_model_config(const ModelConfig& c) {
  if (c.kind == "torchscript") {
    if (c.script_path.empty()) throw std::invalid_argument("model config: torchscript needs script_path");
    if (c.sft_rank > 0 || c.c3_groups > 0)
      throw std::invalid_argument("model config: sft_rank and c3_groups are for native models");
    return;
  }
  check_config(c);
}

std::int64_t block_count(const ModelConfig& c) {
  if (c.kind == "torchscript") {
    if (!c.script_back_path.empty()) return 2;
    return static_cast<std::int64_t>(script_blocks(load_script(c.script_path), c.script_path).size());
  }
  return c.kind == "cnn" ? c.cnn_stages + 2 : c.depth + 2;
}

namespace {

// TorchScript models: halves are script submodules. Loading the file again
// gives the same weights, so split and unsplit forms start identical.
SplitModel build_script_model(const ModelConfig& c, bool split) {
  check_model_config(c);
  auto edge = std::make_unique<ModelHalf::Impl>();
  auto cloud = std::make_unique<ModelHalf::Impl>();
  if (!c.script_back_path.empty()) {
    edge->add_script("front", std::make_shared<ScriptBlock>(load_script(c.script_path)));
    (split ? cloud : edge)->add_script("back", std::make_shared<ScriptBlock>(load_script(c.script_back_path)));
    return SplitModel{ModelHalf(std::move(edge)), ModelHalf(std::move(cloud)), 2};
  }
  auto blocks = script_blocks(load_script(c.script_path), c.script_path);
  const auto n = static_cast<std::int64_t>(blocks.size());
  if (split && (c.split < 1 || c.split > n - 1))
    throw std::invalid_argument("model config: split " + std::to_string(c.split) + " out of range: '" + c.script_path +
                                "' has " + std::to_string(n) + " blocks, valid splits are 1.." + std::to_string(n - 1));
  for (std::int64_t i = 0; i < n; ++i) {
    auto& [name, mod] = blocks[static_cast<std::size_t>(i)];
    (!split || i < c.split ? edge : cloud)->add_script(name, std::make_shared<ScriptBlock>(mod));
  }
  return SplitModel{ModelHalf(std::move(edge)), ModelHalf(std::move(cloud)), n};
}

}  // namespace

namespace {
// The whole model's config: no split and none of the boundary transforms.
ModelConfig unsplit(const ModelConfig& c) {
  ModelConfig plain = c;
  plain.split = 1;
  plain.sft_rank = 0;
  plain.sft_skip = "none";
  plain.c3_groups = 0;
  return plain;
}
}  // namespace

ModelHalf build_full_model(const ModelConfig& c) {
  if (c.kind == "torchscript") return std::move(build_script_model(c, false).edge);
  const ModelConfig plain = unsplit(c);
  check_config(plain);
  auto impl = std::make_unique<ModelHalf::Impl>();
  auto blocks = make_blocks(plain);
  init_weights(blocks, c.seed);
  for (std::size_t i = 0; i < blocks.size(); ++i) impl->add(std::to_string(i), blocks[i]);
  return ModelHalf(std::move(impl));
}


namespace {
// edge_only: the cloud's blocks are never built (the cloud half comes back
// empty); weights are placeholders for a prepared job's files to fill.
SplitModel split_model(const ModelConfig& c, const std::string& pretrained, bool derive, bool edge_only) {
  check_config(c);
  auto blocks = make_blocks(c, edge_only ? static_cast<std::size_t>(c.split) : SIZE_MAX);
  init_weights(blocks, c.seed);
  if (!pretrained.empty()) {
    auto all = std::make_unique<ModelHalf::Impl>();
    for (std::size_t i = 0; i < blocks.size(); ++i) all->add(std::to_string(i), blocks[i]);
    ModelHalf whole(std::move(all));
    load_pretrained_report(whole, pretrained, c.kind);  // refuses a checkpoint of another model kind
  }
  auto edge = std::make_unique<ModelHalf::Impl>();
  auto cloud = std::make_unique<ModelHalf::Impl>();
  const auto k = static_cast<std::size_t>(c.split);
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    const auto name = std::to_string(i);
    if (c.sft_rank > 0 && i == k - 1) {
      auto& tb = dynamic_cast<TransformerBlock&>(*blocks[i]);
      compression::SftFactors f;
      if (derive) {
        f = compression::sft_factorize(tb.fc1->weight, tb.fc1->bias, c.sft_rank);
      } else {  // filled from a prepared job's files: no SVD here
        const auto out = tb.fc1->weight.size(0), in = tb.fc1->weight.size(1);
        f.edge_weight = torch::zeros({c.sft_rank, in});
        f.cloud_weight = torch::zeros({out, c.sft_rank});
        f.cloud_bias = torch::zeros({out});
      }
      edge->add(name, std::make_shared<SftEdgeBlock>(tb, f.edge_weight));
      if (!edge_only) {
        at::Tensor skip;  // [width, r], cloud side only
        if (c.sft_skip == "pinv" && derive)  // t = E a, so a ~ pinv(E) t on E's row space
          skip = at::linalg_pinv(f.edge_weight.to(at::kDouble)).to(f.edge_weight.scalar_type()).contiguous();
        else if (c.sft_skip != "none")
          skip = torch::zeros({f.edge_weight.size(1), c.sft_rank}, f.edge_weight.options());
        cloud->add(name, std::make_shared<SftCloudBlock>(tb, f.cloud_weight, f.cloud_bias, skip));
      }
      continue;
    }
    (i < k ? edge : cloud)->add(name, blocks[i]);
  }
  if (c.c3_groups > 0) {
    // D is the size of the last dimension crossing the split, known from the model.
    // D is the last dimension crossing the split: r with SFT, the width for
    // transformers, the feature map's width for the CNN (binding runs along it).
    std::int64_t d = c.sft_rank > 0 ? c.sft_rank : c.width;
    if (c.kind == "cnn") {
      d = c.image_size;
      for (std::size_t i = 2; i < k; ++i) d = (d + 1) / 2;  // stages after the first halve (stride 2)
    }
    auto t = std::make_shared<compression::C3Transform>(static_cast<int>(c.c3_groups), d, c.seed ^ 0xC3C3C3C3ull,
                                                        c.c3_keys == "unitary" ? compression::C3KeyKind::unitary
                                                                               : compression::C3KeyKind::gaussian);
    edge->add("c3", std::make_shared<C3BindBlock>(t));
    if (!edge_only) {
      auto un = std::make_unique<ModelHalf::Impl>();
      un->add("c3", std::make_shared<C3UnbindBlock>(t));
      for (std::size_t i = 0; i < cloud->blocks.size(); ++i) un->add(cloud->names[i], cloud->blocks[i]);
      cloud = std::move(un);
    }
  }
  const auto n = static_cast<std::int64_t>(blocks.size());
  return SplitModel{ModelHalf(std::move(edge)), ModelHalf(std::move(cloud)), n};
}
}  // namespace

SplitModel build_split_model(const ModelConfig& c, const std::string& pretrained, bool derive) {
  if (c.kind == "torchscript") return build_script_model(c, true);
  return split_model(c, pretrained, derive, false);
}

ModelHalf build_edge_half(const ModelConfig& c) {
  if (c.kind == "torchscript" && !c.script_back_path.empty()) {  // the front file alone: the back is the cloud's
    check_model_config(c);
    auto edge = std::make_unique<ModelHalf::Impl>();
    edge->add_script("front", std::make_shared<ScriptBlock>(load_script(c.script_path)));
    return ModelHalf(std::move(edge));
  }
  if (c.kind == "torchscript") return std::move(build_script_model(c, true).edge);
  return std::move(split_model(c, "", /*derive=*/false, /*edge_only=*/true).edge);
}

std::size_t load_state_dict(ModelHalf& half, const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open state_dict file '" + path + "'");
  std::vector<char> bytes((std::istreambuf_iterator<char>(f)), {});
  c10::IValue v;
  try {
    v = torch::pickle_load(bytes);
  } catch (const c10::Error& e) {
    throw std::runtime_error("cannot read '" + path + "' (save it with torch.save(dict(model.state_dict()), path)): " +
                             e.what_without_backtrace());
  }
  if (!v.isGenericDict()) throw std::runtime_error("'" + path + "' does not hold a dict of tensors");
  std::map<std::string, at::Tensor> sd;
  for (const auto& kv : v.toGenericDict())
    if (kv.key().isString() && kv.value().isTensor()) sd[kv.key().toStringRef()] = kv.value().toTensor();
  torch::NoGradGuard ng;
  std::size_t loaded = 0;
  auto copy = [&](const NamedTensors& named) {
    for (auto& [name, t] : named) {
      auto it = sd.find(name);
      if (it == sd.end()) continue;
      if (it->second.sizes() != t.sizes())
        throw std::runtime_error("state_dict '" + path + "': '" + name + "' has shape " +
                                 c10::str(it->second.sizes()) + ", the model has " + c10::str(t.sizes()));
      at::Tensor dst = t;
      dst.copy_(it->second);
      ++loaded;
    }
  };
  copy(half.named_parameters());
  copy(half.named_buffers());
  if (loaded == 0) throw std::runtime_error("state_dict '" + path + "': no tensor names match the model");
  return loaded;
}

std::string fingerprint(const ModelConfig& c, const ModelHalf& edge, const ModelHalf& cloud) {
  std::ostringstream os;
  os << c.kind << '|' << c.task << '|' << c.image_size << '|' << c.channels << '|' << c.patch << '|' << c.classes
     << '|' << c.width << '|' << c.depth << '|' << c.heads << '|' << c.mlp_ratio << '|' << c.max_len << '|' << c.vocab
     << '|' << c.cnn_width << '|' << c.cnn_stages << '|' << c.split << '|' << c.sft_rank << '|' << c.c3_groups << '|'
     << c.c3_keys;  // script paths left out: the same model may sit at another path
  if (c.sft_skip != "none") os << "|sft_skip=" << c.sft_skip;  // absent: the fingerprints of older jobs stay
  for (const auto* h : {&edge, &cloud}) {
    os << "#";
    for (auto& [name, t] : h->named_parameters()) os << name << t.sizes() << ';';
    for (auto& [name, t] : h->named_buffers()) os << name << t.sizes() << ';';
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(fnv1a(os.str())));
  return buf;
}

ModelHalf build_model_range(const ModelConfig& c, std::int64_t begin, std::int64_t end, const std::string& pretrained) {
  auto range_error = [&](std::int64_t n, const std::string& what) {
    return std::invalid_argument("model config: stage blocks [" + std::to_string(begin) + ", " + std::to_string(end) +
                                 ") out of range: " + what + " has " + std::to_string(n) + " blocks");
  };
  auto impl = std::make_unique<ModelHalf::Impl>();
  if (c.kind == "torchscript") {
    check_model_config(c);
    if (!c.script_back_path.empty())
      throw std::invalid_argument("model config: a stage of a TorchScript model needs one file, not a front/back pair");
    auto blocks = script_blocks(load_script(c.script_path), c.script_path);
    const auto n = static_cast<std::int64_t>(blocks.size());
    if (begin < 0 || end > n || begin >= end) throw range_error(n, "'" + c.script_path + "'");
    for (std::int64_t i = begin; i < end; ++i) {
      auto& [name, mod] = blocks[static_cast<std::size_t>(i)];
      impl->add_script(name, std::make_shared<ScriptBlock>(mod));
    }
    return ModelHalf(std::move(impl));
  }
  const ModelConfig plain = unsplit(c);
  check_config(plain);
  auto blocks = make_blocks(plain);
  const auto n = static_cast<std::int64_t>(blocks.size());
  if (begin < 0 || end > n || begin >= end) throw range_error(n, c.kind);
  init_weights(blocks, c.seed);
  if (!pretrained.empty()) {
    auto all = std::make_unique<ModelHalf::Impl>();
    for (std::size_t i = 0; i < blocks.size(); ++i) all->add(std::to_string(i), blocks[i]);
    ModelHalf whole(std::move(all));
    load_pretrained_report(whole, pretrained, c.kind);
  }
  for (std::int64_t i = begin; i < end; ++i) impl->add(std::to_string(i), blocks[static_cast<std::size_t>(i)]);
  return ModelHalf(std::move(impl));
}

}  // namespace seam::training
