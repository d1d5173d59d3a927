// The EdgePipe planner against brute force, memory limits and refusals; the
// profile and fleet files.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>

#include "seam/pipeline/planner.hpp"

namespace seam::pipeline {
namespace {

constexpr std::uint64_t MiB = 1024 * 1024;

ModelProfile random_model(std::mt19937& rng, int blocks) {
  std::uniform_real_distribution<double> ms(1, 20);
  std::uniform_int_distribution<std::uint64_t> mb(1, 60), out(10000, 2000000);
  ModelProfile m;
  m.micro_batch = 8;
  for (int k = 0; k < blocks; ++k)
    m.blocks.push_back({"b" + std::to_string(k), ms(rng) * 1e-3, mb(rng) * MiB, mb(rng) * MiB / 4, out(rng)});
  return m;
}

Fleet random_fleet(std::mt19937& rng) {
  std::uniform_int_distribution<int> types(1, 3), count(1, 2);
  std::uniform_real_distribution<double> speed(0.3, 3), bw_mbit(20, 1000);
  std::uniform_int_distribution<std::uint64_t> mem(40, 300);
  Fleet f;
  const int n = types(rng);
  for (int t = 0; t < n; ++t)
    f.types.push_back({"t" + std::to_string(t), count(rng), speed(rng), {}, mem(rng) * MiB, bw_mbit(rng) * 1e6 / 8});
  return f;
}

// What any plan must be: contiguous stages over every block, on devices the
// fleet has, each stage within its device's memory, its bottleneck the
// slowest stage.
void expect_valid(const Plan& p, const ModelProfile& m, const Fleet& f) {
  ASSERT_FALSE(p.stages.empty());
  std::vector<int> used(f.types.size(), 0);
  std::int64_t next = 0;
  double worst = 0;
  for (const auto& s : p.stages) {
    EXPECT_EQ(s.begin, next);
    EXPECT_LT(s.begin, s.end);
    next = s.end;
    const auto& t = f.types.at(static_cast<std::size_t>(s.type));
    EXPECT_LE(s.memory_bytes, t.memory_bytes) << "stage on '" << t.name << "' does not fit";
    ++used[static_cast<std::size_t>(s.type)];
    worst = std::max(worst, s.time());
  }
  EXPECT_EQ(next, static_cast<std::int64_t>(m.blocks.size()));
  for (std::size_t t = 0; t < f.types.size(); ++t) EXPECT_LE(used[t], f.types[t].count) << f.types[t].name;
  EXPECT_EQ(worst, p.bottleneck_s);
}

TEST(Planner, MatchesBruteForceExactlyOnSmallInstances) {
  std::mt19937 rng(2026);
  int feasible = 0, refused = 0, multi_stage = 0;
  for (int trial = 0; trial < 300; ++trial) {
    const auto m = random_model(rng, 2 + trial % 6);
    const auto f = random_fleet(rng);
    Plan bf;
    try {
      bf = brute_force_plan(m, f);
    } catch (const PlanError&) {
      EXPECT_THROW(plan_pipeline(m, f), PlanError) << "trial " << trial;
      ++refused;
      continue;
    }
    const Plan dp = plan_pipeline(m, f);
    EXPECT_EQ(dp.bottleneck_s, bf.bottleneck_s) << "trial " << trial << "\nDP:\n"
                                                << describe(dp, m, f) << "brute force:\n" << describe(bf, m, f);
    // Ties go to the fewest stages, as in brute force's order.
    EXPECT_EQ(dp.stages.size(), bf.stages.size()) << "trial " << trial << "\nDP:\n"
                                                  << describe(dp, m, f) << "brute force:\n" << describe(bf, m, f);
    expect_valid(dp, m, f);
    ++feasible;
    multi_stage += dp.stages.size() > 1;
  }
  // The instances exercise both outcomes and real pipelines.
  EXPECT_GT(feasible, 150);
  EXPECT_GT(refused, 5);
  EXPECT_GT(multi_stage, 100);
}

// A fast device with little memory takes only what fits; without the limit
// it would take the whole model.
TEST(Planner, RespectsMemory) {
  ModelProfile m;
  for (int k = 0; k < 4; ++k) m.blocks.push_back({"b" + std::to_string(k), 0.010, 100 * MiB, 1 * MiB, 1000});
  Fleet f;
  f.types.push_back({"fast", 1, 4.0, {}, 150 * MiB, 1e9});
  f.types.push_back({"slow", 1, 1.0, {}, 1024 * MiB, 1e9});
  const Plan p = plan_pipeline(m, f);
  expect_valid(p, m, f);
  ASSERT_EQ(p.stages.size(), 2u);
  for (const auto& s : p.stages)
    if (s.type == 0) {
      EXPECT_EQ(s.end - s.begin, 1) << "150 MiB holds one 101 MiB block";
    }
  // The slow device takes 3 blocks: 30 ms; the fast one 1 block: 2.5 ms.
  EXPECT_DOUBLE_EQ(p.bottleneck_s, 0.030);
  f.types[0].memory_bytes = 1024 * MiB;
  const Plan unlimited = plan_pipeline(m, f);
  EXPECT_LT(unlimited.bottleneck_s, p.bottleneck_s);
  EXPECT_EQ(unlimited.bottleneck_s, brute_force_plan(m, f).bottleneck_s);
}

// A slow link makes the planner keep a cut away from a large output.
TEST(Planner, AvoidsCuttingWhereTheOutputIsLargeOnASlowLink) {
  ModelProfile m;
  m.blocks = {{"a", 0.010, MiB, MiB, 10'000'000}, {"b", 0.010, MiB, MiB, 1000}, {"c", 0.010, MiB, MiB, 1000}};
  Fleet f;
  f.types.push_back({"dev", 2, 1.0, {}, 64 * MiB, 10e6 / 8});  // 10 Mbit/s: 10 MB takes 8 s
  const Plan p = plan_pipeline(m, f);
  expect_valid(p, m, f);
  ASSERT_EQ(p.stages.size(), 2u);
  EXPECT_EQ(p.stages[0].end, 2) << describe(p, m, f);
}

TEST(Planner, ABlockThatFitsNowhereIsNamed) {
  ModelProfile m;
  m.blocks = {{"embed", 0.001, 10 * MiB, MiB, 100}, {"huge", 0.001, 3000 * MiB, 100 * MiB, 100}};
  Fleet f;
  f.types.push_back({"small", 4, 1.0, {}, 512 * MiB, 1e8});
  f.types.push_back({"big", 1, 1.0, {}, 2048 * MiB, 1e8});
  try {
    plan_pipeline(m, f);
    FAIL() << "block 1 needs 3100 MiB";
  } catch (const PlanError& e) {
    EXPECT_STREQ(e.what(),
                 "block 1 ('huge') fits on no device: it needs 3100.0 MiB (parameters 3000.0 MiB, activations "
                 "100.0 MiB) and the largest device memory is 2048.0 MiB (type 'big')");
  }
}

TEST(Planner, TooFewDevicesForTheWholeModelIsRefused) {
  ModelProfile m;
  for (int k = 0; k < 4; ++k) m.blocks.push_back({"b" + std::to_string(k), 0.001, 100 * MiB, 0, 100});
  Fleet f;
  f.types.push_back({"dev", 2, 1.0, {}, 150 * MiB, 1e8});  // each holds one block; four are needed
  try {
    plan_pipeline(m, f);
    FAIL() << "two devices cannot hold four blocks one each";
  } catch (const PlanError& e) {
    EXPECT_NE(std::string(e.what()).find("no plan fits: the model's parameters need 400.0 MiB and the fleet's 2 "
                                         "devices hold 300.0 MiB"),
              std::string::npos)
        << e.what();
  }
}

// Device counts are per type: three of one type and one of another give a
// four-stage chain using each type no more than it has.
TEST(Planner, CountsDevicesByType) {
  ModelProfile m;
  for (int k = 0; k < 8; ++k) m.blocks.push_back({"b" + std::to_string(k), 0.010, MiB, 0, 100});
  Fleet f;
  f.types.push_back({"a", 3, 1.0, {}, 64 * MiB, 1e9});
  f.types.push_back({"b", 1, 1.0, {}, 64 * MiB, 1e9});
  const Plan p = plan_pipeline(m, f);
  expect_valid(p, m, f);
  EXPECT_EQ(p.stages.size(), 4u);
  EXPECT_DOUBLE_EQ(p.bottleneck_s, 0.020);
  const Plan single = best_single_device(m, f);
  EXPECT_DOUBLE_EQ(single.bottleneck_s, 0.080);
  const Plan even = even_split(m, f);
  EXPECT_DOUBLE_EQ(even.bottleneck_s, 0.020);
}

// A measured per-type profile replaces the speed factor.
TEST(Planner, AMeasuredProfileOverridesTheSpeedFactor) {
  ModelProfile m;
  for (int k = 0; k < 2; ++k) m.blocks.push_back({"b" + std::to_string(k), 0.010, MiB, 0, 100});
  Fleet f;
  f.types.push_back({"measured", 1, 100.0, {0.5, 0.25}, 64 * MiB, 1e9});
  const Stage s = stage_cost(m, f, 0, 2, 0);
  EXPECT_DOUBLE_EQ(s.compute_s, 0.75);
}

TEST(PlannerFiles, ProfileRoundTripsAndBadLinesAreNamed) {
  const auto dir = std::filesystem::temp_directory_path() / ("seam_plan_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  ModelProfile m;
  m.model = "vit width=64";
  m.codec = "none";
  m.micro_batch = 8;
  m.blocks = {{"0", 0.00125, 4096, 8192, 12000}, {"1", 0.5, 1, 2, 3}};
  write_profile(m, (dir / "p.txt").string());
  const auto back = read_profile((dir / "p.txt").string());
  EXPECT_EQ(back.model, m.model);
  EXPECT_EQ(back.micro_batch, 8);
  ASSERT_EQ(back.blocks.size(), 2u);
  EXPECT_DOUBLE_EQ(back.blocks[0].compute_s, 0.00125);
  EXPECT_EQ(back.blocks[1].output_bytes, 3u);
  {
    std::ofstream o(dir / "bad.txt");
    o << "seam-profile 1\nmicro_batch 8\nblock x 0.1 1 2\n";
  }
  try {
    read_profile((dir / "bad.txt").string());
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("line 3: expected 'block <name>"), std::string::npos) << e.what();
  }
  {
    std::ofstream o(dir / "fleet.txt");
    o << "# two kinds\nname=nano count=4 speed=0.5 memory_mb=2048 bandwidth_mbit=100\n\n"
         "name=agx count=1 speed=2 memory_mb=16384 bandwidth_mbit=1000\n";
  }
  const Fleet f = read_fleet((dir / "fleet.txt").string());
  ASSERT_EQ(f.types.size(), 2u);
  EXPECT_EQ(f.devices(), 5);
  EXPECT_EQ(f.types[0].memory_bytes, 2048 * MiB);
  EXPECT_DOUBLE_EQ(f.types[1].bandwidth_bytes_per_s, 125e6);
  {
    std::ofstream o(dir / "badfleet.txt");
    o << "name=nano count=4 sped=0.5 memory_mb=2048 bandwidth_mbit=100\n";
  }
  try {
    read_fleet((dir / "badfleet.txt").string());
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("line 1: unknown key 'sped'"), std::string::npos) << e.what();
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace seam::pipeline
