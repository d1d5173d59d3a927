// The compact step framing: the compact forms decode to exactly the tensors
// the edge had, for every mask the models produce, and the byte breakdown of
// a BERT step and a ViT step is pinned, computed from their shapes.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "seam/compression/codec.hpp"
#include "seam/session/protocol.hpp"
#include "seam/training/job.hpp"
#include "seam/transport/message.hpp"

namespace {

namespace ss = seam::session;
namespace t = seam::training;
namespace st = seam::transport;
namespace sc = seam::compression;

ss::StepSpec spec_for(const std::string& task, std::int64_t classes, std::int64_t vocab, std::int64_t max_len,
                      const std::string& up) {
  ss::StepSpec s;
  s.task = task;
  s.up_codec = sc::make_codec(up)->spec();
  s.down_codec = "none";
  s.classes = classes;
  s.vocab = vocab;
  s.max_len = max_len;
  s.send_ids = ss::codec_needs_ids(s.up_codec);
  return s;
}

// Through the encoder and the transport's gate, as the network would carry it.
t::StepRequest over_the_wire(const t::StepRequest& r, const ss::StepSpec& spec, st::FrameBytes* bytes = nullptr) {
  st::Message m = ss::forward_message(r, spec);
  auto f = st::encode_frame(m, 1);
  if (bytes) *bytes = f.bytes;
  auto wire = f.to_bytes();
  st::Message out;
  std::string why;
  EXPECT_FALSE(st::decode_frame_bytes(wire.data(), wire.size(), {}, out, &why)) << why;
  return ss::parse_forward(std::move(out), spec);
}

std::vector<std::uint8_t> encoded(const at::Tensor& a, const std::string& spec, const std::vector<std::int64_t>& ids = {}) {
  sc::CodecContext ctx(3);
  ctx.sample_ids = ids;
  return sc::make_codec(spec)->encode(a, ctx);
}

void expect_same(const t::StepRequest& a, const t::StepRequest& b, bool ids) {
  EXPECT_EQ(a.step, b.step);
  EXPECT_EQ(b.sample_ids, ids ? a.sample_ids : std::vector<std::int64_t>{});
  EXPECT_EQ(b.labels.scalar_type(), torch::kLong);
  EXPECT_TRUE(torch::equal(a.labels, b.labels)) << a.labels << b.labels;
  ASSERT_EQ(a.attention_mask.defined(), b.attention_mask.defined());
  if (a.attention_mask.defined()) {
    EXPECT_EQ(b.attention_mask.scalar_type(), torch::kLong);
    EXPECT_TRUE(torch::equal(a.attention_mask, b.attention_mask)) << a.attention_mask << b.attention_mask;
  }
  EXPECT_EQ(a.activations, b.activations);
}

TEST(StepFrame, CompactFormsDecodeToTheSameTensorsForEveryMask) {
  auto task = t::make_task("fortunes-topic", 64, 40);
  t::Sampler sampler(task->size(t::Split::train), 5);
  auto b = task->batch(t::Split::train, sampler.next(24));
  ASSERT_TRUE(b.mask.defined());
  ASSERT_LT(b.mask.sum().item<std::int64_t>(), b.mask.numel()) << "the text batch should have padding";
  const std::int64_t bs = b.labels.size(0), l = b.mask.size(1);
  t::StepRequest r;
  r.step = 3;
  r.sample_ids = b.ids;
  r.labels = b.labels;
  r.activations = encoded(torch::randn({bs, l, 4}), "quant:bits=4");
  for (const std::string up : {"quant:bits=4", "delta:bits=4"}) {
    auto spec = spec_for("classify", task->num_classes(), 0, 64, up);
    if (up != "quant:bits=4") r.activations = encoded(torch::randn({bs, l, 4}), up, r.sample_ids);
    // The text tasks' prefix masks travel as lengths.
    r.attention_mask = b.mask;
    st::FrameBytes by;
    expect_same(r, over_the_wire(r, spec, &by), spec.send_ids);
    EXPECT_LE(by.mask, 4u + static_cast<std::uint64_t>(bs));  // lengths: at most a byte each
    // No padding at all: lengths of width 0: kind, L, base (64, zigzag 128: 2 bytes), width.
    r.attention_mask = torch::ones({bs, l}, torch::kLong);
    expect_same(r, over_the_wire(r, spec, &by), spec.send_ids);
    EXPECT_EQ(by.mask, 5u);
    // Any other 0/1 pattern (left padding, holes) travels as a bitmap.
    auto g = at::make_generator<at::CPUGeneratorImpl>(9);
    r.attention_mask = torch::randint(0, 2, {bs, l}, g, torch::kLong);
    expect_same(r, over_the_wire(r, spec, &by), spec.send_ids);
    EXPECT_EQ(by.mask, 2u + static_cast<std::uint64_t>((bs * l + 7) / 8));
    // Rows with no token at all are lengths of 0.
    r.attention_mask = torch::zeros({bs, l}, torch::kLong);
    expect_same(r, over_the_wire(r, spec, &by), spec.send_ids);
    // No mask (image tasks).
    r.attention_mask = at::Tensor();
    expect_same(r, over_the_wire(r, spec, &by), spec.send_ids);
    EXPECT_EQ(by.mask, 1u);
  }
  // Token labels: masked-LM (mostly -100) and next-token, with their masks.
  auto spec = spec_for("mlm", 0, 260, 64, "none");
  r.sample_ids = b.ids;
  r.activations = encoded(torch::randn({bs, l, 8}), "none");
  auto g = at::make_generator<at::CPUGeneratorImpl>(4);
  r.labels = torch::where(torch::rand({bs, l}, g) < 0.15, torch::randint(0, 260, {bs, l}, g, torch::kLong),
                          torch::full({bs, l}, -100, torch::kLong));
  r.attention_mask = b.mask;
  expect_same(r, over_the_wire(r, spec), false);
  spec.task = "lm";
  r.labels = torch::randint(0, 260, {bs, l}, g, torch::kLong);
  r.attention_mask = at::Tensor();
  expect_same(r, over_the_wire(r, spec), false);
}

// The bytes of one step, by part, from the shapes alone: B samples, C
// classes, the mask's L, the codec message size n. Varints: v(x) bytes.
std::uint64_t v(std::uint64_t x) {
  std::uint64_t n = 1;
  while (x >= 128) {
    x >>= 7;
    ++n;
  }
  return n;
}
std::uint64_t bits(std::uint64_t x) {
  std::uint64_t w = 0;
  while (x) {
    ++w;
    x >>= 1;
  }
  return w;
}

TEST(StepFrame, TheByteBreakdownOfABertAndAViTStepIsPinned) {
  // BERT on fortunes-topic as in docs/results.md: B 32, L 64, SFT r=4, 4-bit.
  // Labels in [0, C), lengths in [lo, hi].
  const std::int64_t bs = 32, l = 64, classes = 12;
  t::StepRequest r;
  r.step = 1000;
  r.sample_ids.resize(bs);
  for (std::int64_t i = 0; i < bs; ++i) r.sample_ids[i] = 9000 + 37 * i;
  r.labels = torch::arange(bs, torch::kLong).remainder(classes);
  auto lengths = torch::div(torch::arange(bs, torch::kLong) * 54, 31, "floor") + 10;  // 10..64
  r.attention_mask = torch::arange(l, torch::kLong).unsqueeze(0).lt(lengths.unsqueeze(1)).to(torch::kLong);
  r.activations = encoded(torch::randn({bs, l, 4}), "quant:bits=4");
  const std::uint64_t n = r.activations.size();
  auto spec = spec_for("classify", classes, 0, l, "quant:bits=4");
  st::FrameBytes by;
  over_the_wire(r, spec, &by);
  EXPECT_EQ(by.header, 32u);
  EXPECT_EQ(by.sections, n);
  EXPECT_EQ(by.ids, 1u);  // quant needs no ids: a count of 0
  EXPECT_EQ(by.labels, 1u + 1 + 1 + (bs * bits(classes - 1) + 7) / 8);  // label_len, base, width, bits
  EXPECT_EQ(by.mask, 1u + 1 + 1 + 1 + (bs * bits(64 - 10) + 7) / 8);   // kind, L, base, width, bits
  // cereal flag, section count, the section (name, dtype, dims, length, codec), step, batch.
  EXPECT_EQ(by.metadata, 1u + 1 + (1 + 11 + 1 + 1 + v(n) + 1) + v(1000) + v(bs));
  const std::uint64_t overhead = by.total() - by.sections;
  EXPECT_LT(double(overhead), 0.05 * double(n)) << overhead << " bytes beside a " << n << "-byte tensor";

  // With a delta stage the ids travel too: 32 ids spread over 1147 values.
  r.activations = encoded(torch::randn({bs, l, 4}), "delta:bits=4", r.sample_ids);
  spec = spec_for("classify", classes, 0, l, "delta:bits=4");
  over_the_wire(r, spec, &by);
  EXPECT_EQ(by.ids, v(bs) + v(2 * 9000) + 1 + (bs * bits(37 * 31) + 7) / 8);

  // ViT on Fashion-MNIST: B 32, 10 classes, no mask, 4-bit activations of
  // [B, 17, 64]. Target: under 64 bytes per step plus 1 per sample.
  const std::int64_t vb = 32;
  t::StepRequest vr;
  vr.step = 1000;
  vr.labels = torch::arange(vb, torch::kLong).remainder(10);
  vr.activations = encoded(torch::randn({vb, 17, 64}), "quant:bits=4");
  const std::uint64_t vn = vr.activations.size();
  auto vspec = spec_for("classify", 10, 0, 0, "quant:bits=4");
  over_the_wire(vr, vspec, &by);
  EXPECT_EQ(by.ids, 1u);
  EXPECT_EQ(by.mask, 1u);
  EXPECT_EQ(by.labels, 1u + 1 + 1 + (vb * 4 + 7) / 8);
  EXPECT_EQ(by.metadata, 1u + 1 + (1 + 11 + 1 + 1 + v(vn) + 1) + v(1000) + v(vb));
  const std::uint64_t fixed = by.header + by.metadata + by.ids + by.mask + 3;  // 3: label_len, base, width
  const std::uint64_t per_sample = by.labels - 3;
  EXPECT_LT(fixed, 64u);
  EXPECT_LE(per_sample, static_cast<std::uint64_t>(vb));
}

// The activation's recorded shape is checked before decoding: more rows than
// the batch, or more elements than the limit, is refused with the reason,
// and so is a stateful (delta) inference codec.
TEST(StepFrame, AnActivationTooLargeForItsBatchOrWithAStatefulCodecIsRefusedBeforeDecoding) {
  ss::StepSpec spec;
  spec.up_codec = sc::make_codec("quant:bits=8")->spec();
  spec.down_codec = spec.up_codec;
  spec.classes = 10;
  auto why = [&](const at::Tensor& a, std::int64_t b, const std::string& codec, bool infer) {
    sc::CodecContext ctx(1);
    for (std::int64_t i = 0; i < a.size(0); ++i) ctx.sample_ids.push_back(i);  // for delta
    auto bytes = sc::make_codec(codec)->encode(a, ctx);
    try {
      if (infer) {
        ss::InferRequest r;
        r.batch = b;
        r.activations = bytes;
        ss::parse_infer(ss::infer_message(r), spec);
      } else {
        t::StepRequest r;
        r.labels = at::zeros({b}, at::kLong);
        r.activations = bytes;
        ss::parse_forward(ss::forward_message(r, spec), spec);
      }
    } catch (const ss::SessionError& e) {
      EXPECT_EQ(e.code(), ss::SessionErrc::bad_field);
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_EQ(why(at::randn({4, 8}), 4, "quant:bits=8", false), "");
  EXPECT_EQ(why(at::randn({4, 8}), 4, "quant:bits=8", true), "");
  EXPECT_NE(why(at::randn({5, 8}), 4, "quant:bits=8", false).find("shape [5, 8] does not fit a batch of 4"),
            std::string::npos);
  EXPECT_NE(why(at::randn({1, (1 << 22) + 1}), 1, "quant:bits=8", true).find("would decode to more than 4194304 elements"),
            std::string::npos);
  EXPECT_EQ(why(at::randn({4, 8}), 4, "none", true), "") << "any stateless codec (a pipeline hop switches in-band)";
  EXPECT_NE(why(at::randn({4, 8}), 4, "delta:bits=4", true).find("keeps per-sample state"), std::string::npos);
}

}  // namespace
