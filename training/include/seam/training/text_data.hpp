#pragma once
// Text classification data: Debian's fortunes packages (topic and language
// tasks) or the user's JSONL. Splits are deterministic and hash-based; ids are
// stable (a hash of where the example came from), as AC-SGD needs.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace seam::training {

inline constexpr const char* kFortunesDir = "/usr/share/games/fortunes";

struct TextExample {
  std::string text;
  std::int64_t label = 0;
  std::int64_t id = 0;  // stable sample id
};

struct TextDataset {
  std::vector<std::string> classes;
  std::vector<TextExample> train, valid, test;  // 80 / 10 / 10 by hash of the text
};

// task "topic": English category files (from the fortunes and fortunes-min
// packages) with at least `min_entries` entries; task "language": en/de/es/it.
// max_per_class > 0 keeps a deterministic (hash-chosen) subset per class.
// Throws std::runtime_error naming the missing directory or unknown task.
TextDataset load_fortunes(const std::string& task, std::size_t max_per_class = 0,
                          const std::string& root = kFortunesDir, std::size_t min_entries = 150);

// One JSON object per line: {"text": "...", "label": <string or integer>}.
// Classes are the sorted distinct labels. Throws with the line number on bad input.
TextDataset load_jsonl(const std::string& path);

// Byte-level tokenizer: ids 0..255 are bytes; no vocabulary file, any language.
struct ByteTokenizer {
  static constexpr std::int64_t kPad = 256, kCls = 257, kSep = 258, kMask = 259, kVocab = 260;
  // [CLS] (if cls) + bytes, truncated to max_len, padded with kPad.
  static std::vector<std::int64_t> encode(const std::string& text, std::int64_t max_len, bool cls);
};

struct TextBatch {
  at::Tensor tokens;  // [B, L] int64
  at::Tensor mask;    // [B, L] int64, 1 = token
  at::Tensor labels;  // [B] int64
  std::vector<std::int64_t> ids;
};

TextBatch make_text_batch(const std::vector<TextExample>& data, const std::vector<std::int64_t>& indices,
                          std::int64_t max_len, bool cls = true);

// A seeded, deterministic permutation of 0..n-1 for an epoch (independent of
// LibTorch's global generator).
std::vector<std::int64_t> shuffled_indices(std::size_t n, std::uint64_t seed, std::int64_t epoch);

std::uint64_t stable_hash(const std::string& s);

}  // namespace seam::training
