// QuantPipe's per-hop controller over the in-process shaper on a simulated
// clock: the bitwidth steps down when the shaped rate drops and back up when
// it recovers, every change travels in-band, and the DS-ACIQ search runs once
// per window.
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "../transport/transport_test_util.hpp"
#include "seam/compression/codec.hpp"
#include "seam/pipeline/quantpipe.hpp"
#include "seam/session/protocol.hpp"

namespace seam::pipeline {
namespace {

namespace st = seam::transport;
namespace ss = seam::session;

at::Tensor activation(std::uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  // Heavy-tailed like a transformer's activations: a Laplace-ish mix.
  auto x = at::randn({8, 17, 64}, gen);
  return x * x * x.sign();
}

TEST(QuantPipe, SpecsForEveryWidth) {
  EXPECT_EQ(spec_for_bits(32, Clip::dsaciq), "none");
  EXPECT_EQ(spec_for_bits(16, Clip::dsaciq), "fp16");
  EXPECT_EQ(spec_for_bits(3, Clip::aciq), "quant:bits=3,clip=aciq");
  EXPECT_THROW(spec_for_bits(12, Clip::none), std::invalid_argument);
  EXPECT_THROW(parse_clip("minmax"), std::invalid_argument);
}

// The controller's choice against the definition: the widest candidate whose
// frame leaves at the target rate.
TEST(QuantPipe, ChoosesTheWidestWidthThatHoldsTheTargetRate) {
  ControllerOptions o;
  o.target_rate = 100;  // micro-batches/s
  o.window = 1;
  BitwidthController c(o, [](int bits) { return static_cast<std::uint64_t>(1000 * bits + 50); });
  for (double bw : {1e3, 2.5e5, 3.3e5, 4.1e5, 8.1e5, 1.61e6, 3.3e6, 1e9}) {
    int want = 2;
    for (int b : quantpipe_bits())
      if (bw / (1000.0 * b + 50) >= 100) {
        want = b;
        break;
      }
    EXPECT_EQ(c.choose(bw), want) << bw;
  }
  EXPECT_EQ(c.bits(), 32);  // nothing measured yet
  EXPECT_TRUE(c.on_sent(1e3));
  EXPECT_EQ(c.bits(), 2);
}

// Reusing the clip range of a DS-ACIQ search on the same tensor gives the
// same decoded values as the search itself (to float rounding of the range).
TEST(QuantPipe, ReusedClipRangeMatchesTheSearchOnTheSameTensor) {
  const auto x = activation(1);
  compression::CodecContext ctx;
  for (int bits : {8, 4, 2}) {
    HopEncoder enc(Clip::dsaciq);
    auto searched = enc.encode(x, bits, true);
    auto reused = enc.encode(x, bits, false);
    EXPECT_EQ(enc.searches(), 1u);
    EXPECT_EQ(compression::message_spec(searched.data(), searched.size()),
              "quant:bits=" + std::to_string(bits) + ",scale=tensor,mode=asym,round=nearest,clip=dsaciq,prior=laplace,sdtype=f32");
    // The same codes and range; only the spec string differs ("clip=dsaciq" against "clip=none").
    EXPECT_EQ(searched.size() - reused.size(), std::string("dsaciq").size() - std::string("none").size());
    auto a = compression::decode_message(searched.data(), searched.size(), ctx);
    auto b = compression::decode_message(reused.data(), reused.size(), ctx);
    const double range = (a.max() - a.min()).item<double>();
    EXPECT_LE((a - b).abs().max().item<double>(), 1e-5 * range) << bits;
    // And the search really clips: the naive range is wider.
    HopEncoder naive(Clip::none);
    auto n = naive.encode(x, bits, false);
    auto c = compression::decode_message(n.data(), n.size(), ctx);
    EXPECT_GT((c.max() - c.min()).item<double>(), range) << bits;
  }
}

struct Received {
  std::mutex mu;
  std::map<std::uint64_t, std::string> spec;  // batch id -> codec read from the message itself
};

TEST(QuantPipe, StepsDownWhenTheShapedRateDropsAndBackUpWhenItRecovers) {
  st::test::ManualClock clock;
  Received got;
  st::ServerOptions so;
  so.tls = st::test::plaintext();
  so.clock = &clock;
  st::Server server(so, [&](const st::PeerInfo& p, st::Message&& m) {
    if (!m.as<st::Infer>()) return st::test::echo(p, std::move(m));
    ss::StepSpec spec;
    spec.up_codec = "none";
    auto r = ss::parse_infer(std::move(m), spec);
    compression::CodecContext ctx;
    compression::decode_message(r.activations.data(), r.activations.size(), ctx);  // decodes without being told
    std::lock_guard<std::mutex> lock(got.mu);
    got.spec[r.batch_id] = compression::message_spec(r.activations.data(), r.activations.size());
    st::Message ack;
    ack.body = st::Pong{r.batch_id};
    return ack;
  });
  server.start();
  auto co = st::test::client_options(server.port(), st::test::plaintext());
  co.clock = &clock;
  co.max_in_flight = 4;
  co.link.rate_bits_per_s = 100e6;
  st::Client client(co);

  const auto x = activation(2);
  auto frame_of = [&](const std::vector<std::uint8_t>& act, std::uint64_t id) {
    ss::InferRequest r;
    r.batch_id = id;
    r.batch = 8;
    r.activations = act;
    return ss::infer_message(r);
  };
  std::map<int, std::uint64_t> frame_bytes;
  for (int b : quantpipe_bits()) {
    HopEncoder probe(Clip::none);
    frame_bytes[b] = st::encode_frame(frame_of(probe.encode(x, b, false), 0), 1).total_bytes();
  }
  ControllerOptions o;
  o.target_rate = 300;  // micro-batches/s
  o.window = 4;
  BitwidthController ctl(o, [&](int b) { return frame_bytes.at(b); });
  // What the definition says for each phase's link.
  auto widest = [&](double bits_per_s) {
    for (int b : quantpipe_bits())
      if (bits_per_s / 8 / static_cast<double>(frame_bytes.at(b)) >= 300) return b;
    return 2;
  };
  ASSERT_EQ(widest(100e6), 32);
  ASSERT_EQ(widest(10e6), 3);

  HopEncoder enc(Clip::dsaciq);
  bool search = true;
  std::map<std::uint64_t, std::string> sent_spec;
  std::vector<int> bits_seen;
  std::uint64_t id = 0;
  auto run_phase = [&](double rate, int batches) {
    st::LinkOptions l;
    l.rate_bits_per_s = rate;
    client.set_link(l);
    for (int i = 0; i < batches; ++i, ++id) {
      const int b = ctl.bits();
      bits_seen.push_back(b);
      auto act = enc.encode(x, b, search);
      sent_spec[id] = compression::message_spec(act.data(), act.size());
      while (client.in_flight() >= 4) client.collect();
      client.post(frame_of(act, id));
      search = ctl.on_sent(client.bandwidth().bytes_per_second());
    }
  };
  run_phase(100e6, 24);
  EXPECT_EQ(ctl.bits(), 32);
  const auto down_from = bits_seen.size();
  run_phase(10e6, 48);
  EXPECT_EQ(ctl.bits(), widest(10e6));
  for (std::size_t i = down_from + 1; i < bits_seen.size(); ++i)
    EXPECT_LE(bits_seen[i], bits_seen[i - 1]) << "the width only steps down while the rate stays low";
  run_phase(100e6, 48);
  EXPECT_EQ(ctl.bits(), 32);
  while (client.in_flight() > 0) client.collect();

  // In-band: the receiver read each micro-batch's codec from its own bytes,
  // and it is the one the sender chose.
  std::lock_guard<std::mutex> lock(got.mu);
  EXPECT_EQ(got.spec, sent_spec);
  // One DS-ACIQ search per window (plus the first use of each width), not one per micro-batch.
  EXPECT_EQ(ctl.windows(), 30u);
  EXPECT_LE(enc.searches(), ctl.windows() + 1);
  EXPECT_LT(enc.searches(), bits_seen.size() / 2);
}

}  // namespace
}  // namespace seam::pipeline
