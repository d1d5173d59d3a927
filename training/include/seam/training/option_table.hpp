#pragma once
// The one table of model, split, codec and optimizer option names, for every
// program and file format that takes them: seam-train's flags and --config
// files, and seam-cloud's job files. A name means the same thing everywhere
// and has the same default. Header-only; the includer links
// Boost::program_options.
//
// Left out on purpose, because their target differs by program: `task`,
// `steps` (seam-train: the run's length; a job: the schedule's length),
// `pretrained` and `classes`.
#include <boost/program_options.hpp>

#include "seam/training/model.hpp"
#include "seam/training/optim.hpp"
#include "seam/training/split_step.hpp"

namespace seam::training {

inline void add_model_options(boost::program_options::options_description& d, ModelConfig& mc) {
  namespace po = boost::program_options;
  d.add_options()("model", po::value(&mc.kind)->default_value("vit"), "vit | cnn | bert | gpt")(
      "width", po::value(&mc.width)->default_value(64), "transformer width")(
      "depth", po::value(&mc.depth)->default_value(4), "transformer blocks")(
      "heads", po::value(&mc.heads)->default_value(4), "attention heads")(
      "mlp-ratio", po::value(&mc.mlp_ratio)->default_value(4), "FFN width / width")(
      "patch", po::value(&mc.patch)->default_value(7), "ViT patch size")(
      "max-len", po::value(&mc.max_len)->default_value(128), "text length in bytes (with [CLS])")(
      "cnn-width", po::value(&mc.cnn_width)->default_value(16), "CNN base channels")(
      "cnn-stages", po::value(&mc.cnn_stages)->default_value(3), "CNN residual stages")(
      "split", po::value(&mc.split)->default_value(1), "blocks [0, split) run on the edge")(
      "sft-rank", po::value(&mc.sft_rank)->default_value(0), "SFT bottleneck rank at the split (0 = off)")(
      "sft-skip", po::value(&mc.sft_skip)->default_value("none"),
      "with SFT, the cloud's stand-in for the eliminated residual: none | zero | pinv (a learned r -> width "
      "linear map, initialised to zero or to the pseudo-inverse of the edge's projection)")(
      "c3-groups", po::value(&mc.c3_groups)->default_value(0), "C3 samples bound per group (0 = off)")(
      "c3-keys", po::value(&mc.c3_keys)->default_value("gaussian"), "gaussian | unitary")(
      "seed", po::value(&mc.seed)->default_value(0), "model, codec and data seed");
}

inline void add_codec_options(boost::program_options::options_description& d, HalfSettings& hs) {
  namespace po = boost::program_options;
  d.add_options()("up-codec", po::value(&hs.up_codec)->default_value("none"),
                  "codec spec for activations (see seam-codec list)")(
      "down-codec", po::value(&hs.down_codec)->default_value("none"), "codec spec for gradients");
}

inline void add_optimizer_options(boost::program_options::options_description& d, OptimConfig& oc) {
  namespace po = boost::program_options;
  d.add_options()("optimizer", po::value(&oc.kind)->default_value("adamw"), "adamw | sgd")(
      "lr", po::value(&oc.lr)->default_value(1e-3), "peak learning rate")(
      "weight-decay", po::value(&oc.weight_decay)->default_value(0.01), "on matrices only")(
      "warmup", po::value(&oc.warmup_steps)->default_value(100), "linear warm-up steps")(
      "schedule", po::value(&oc.schedule)->default_value("cosine"), "cosine | linear | constant")(
      "clip", po::value(&oc.clip_norm)->default_value(1.0), "gradient-norm clip per half (0 = off)");
}

}  // namespace seam::training
