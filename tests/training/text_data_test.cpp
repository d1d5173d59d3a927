#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>

#include "seam/training/text_data.hpp"

namespace t = seam::training;

namespace {

bool has(const std::vector<std::string>& v, const std::string& s) { return std::find(v.begin(), v.end(), s) != v.end(); }

TEST(Fortunes, TopicTaskHasTheBigEnglishCategoriesAndDeterministicSplits) {
  auto d = t::load_fortunes("topic");
  for (const char* c : {"computers", "science", "men-women", "wisdom", "literature"}) EXPECT_TRUE(has(d.classes, c)) << c;
  EXPECT_FALSE(has(d.classes, "riddles"));  // fewer than 150 entries
  const auto total = d.train.size() + d.valid.size() + d.test.size();
  EXPECT_GT(total, 10000u);
  EXPECT_NEAR(double(d.train.size()) / total, 0.8, 0.03);
  auto again = t::load_fortunes("topic");
  ASSERT_EQ(again.test.size(), d.test.size());
  for (std::size_t i = 0; i < d.test.size(); ++i) {
    EXPECT_EQ(again.test[i].id, d.test[i].id);
    EXPECT_EQ(again.test[i].text, d.test[i].text);
  }
  // No text is in two splits.
  std::set<std::string> train_texts;
  for (auto& e : d.train) train_texts.insert(e.text);
  for (auto& e : d.test) EXPECT_FALSE(train_texts.count(e.text)) << e.text;
}

TEST(Fortunes, LanguageTaskHasFourLanguagesAndCapsPerClass) {
  auto d = t::load_fortunes("language", 500);
  EXPECT_EQ(d.classes, (std::vector<std::string>{"en", "de", "es", "it"}));
  std::vector<int> count(4, 0);
  for (auto* split : {&d.train, &d.valid, &d.test})
    for (auto& e : *split) ++count[static_cast<std::size_t>(e.label)];
  for (int c : count) EXPECT_EQ(c, 500);
  EXPECT_THROW(t::load_fortunes("sentiment"), std::runtime_error);
  EXPECT_THROW(t::load_fortunes("topic", 0, "/nonexistent"), std::runtime_error);
}

TEST(Fortunes, SampleIdsAreUniqueAcrossLanguageDirectories) {
  // de/computer and it/computer share a file name; their entries must not share ids.
  auto d = t::load_fortunes("language");
  std::set<std::int64_t> ids;
  std::size_t n = 0;
  for (auto* s : {&d.train, &d.valid, &d.test})
    for (auto& e : *s) {
      ids.insert(e.id);
      ++n;
    }
  EXPECT_EQ(ids.size(), n);
}

TEST(TextData, ByteTokenizerAndBatches) {
  auto ids = t::ByteTokenizer::encode("hé", 6, true);
  EXPECT_EQ(ids, (std::vector<std::int64_t>{257, 'h', 0xC3, 0xA9, 256, 256}));
  EXPECT_EQ(t::ByteTokenizer::encode("abcdef", 3, false), (std::vector<std::int64_t>{'a', 'b', 'c'}));
  std::vector<t::TextExample> data = {{"ab", 1, 10}, {"xyz", 0, 11}};
  auto b = t::make_text_batch(data, {1, 0}, 4);
  EXPECT_EQ(b.ids, (std::vector<std::int64_t>{11, 10}));
  EXPECT_TRUE(torch::equal(b.labels, torch::tensor({0, 1}, torch::kLong)));
  EXPECT_TRUE(torch::equal(b.mask, torch::tensor({{1, 1, 1, 1}, {1, 1, 1, 0}}, torch::kLong)));
}

TEST(TextData, ShuffleIsASeededPermutation) {
  auto a = t::shuffled_indices(1000, 7, 0), b = t::shuffled_indices(1000, 7, 0), c = t::shuffled_indices(1000, 7, 1);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  std::sort(c.begin(), c.end());
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(c[static_cast<std::size_t>(i)], i);
}

TEST(TextData, JsonlLoaderReadsLabelsAndReportsBadLines) {
  auto dir = std::filesystem::temp_directory_path() / ("seam_jsonl_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  {
    std::ofstream f(dir / "ok.jsonl");
    for (int i = 0; i < 50; ++i)
      f << "{\"text\": \"line " << i << " \\\"quoted\\\" \\u00e9\", \"label\": \"" << (i % 2 ? "pos" : "neg") << "\"}\n";
    f << "\n{\"label\": 3, \"text\": \"int label\", \"extra\": \"ignored\"}\n";
  }
  auto d = t::load_jsonl((dir / "ok.jsonl").string());
  EXPECT_EQ(d.classes, (std::vector<std::string>{"3", "neg", "pos"}));
  EXPECT_EQ(d.train.size() + d.valid.size() + d.test.size(), 51u);
  bool found = false;
  for (auto* s : {&d.train, &d.valid, &d.test})
    for (auto& e : *s)
      if (e.text == "line 0 \"quoted\" \xc3\xa9") found = true;
  EXPECT_TRUE(found);
  {
    std::ofstream f(dir / "bad.jsonl");
    f << "{\"text\": \"a\", \"label\": 1}\n{\"text\": \"no label\"}\n";
  }
  try {
    t::load_jsonl((dir / "bad.jsonl").string());
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("JSONL file '" + (dir / "bad.jsonl").string() + "', line 2"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(t::load_jsonl((dir / "missing.jsonl").string()), std::runtime_error);
  std::filesystem::remove_all(dir);
}

}  // namespace
