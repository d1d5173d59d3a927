#include "seam/training/text_data.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>

namespace seam::training {

namespace fs = std::filesystem;

namespace {

// English files shipped by the `fortunes` and `fortunes-min` packages
// (dpkg -L fortunes fortunes-min). Art and banner files are not prose.
const std::vector<std::string> kEnglishFiles = {
    "computers", "cookie", "debian", "definitions", "disclaimer", "drugs", "education", "ethnic", "food",
    "goedel", "humorists", "kids", "knghtbrd", "law", "linux", "linuxcookie", "love", "magic", "medicine",
    "men-women", "miscellaneous", "news", "paradoxum", "people", "perl", "pets", "platitudes", "politics",
    "pratchett", "science", "songs-poems", "sports", "startrek", "tao", "translate-me", "wisdom", "work",
    "zippy", "fortunes", "literature", "riddles"};

std::vector<std::string> read_entries(const fs::path& file) {
  std::ifstream f(file, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + file.string());
  std::vector<std::string> out;
  std::string line, cur;
  auto flush = [&] {
    // Trim; drop empty entries.
    auto b = cur.find_first_not_of(" \t\r\n"), e = cur.find_last_not_of(" \t\r\n");
    if (b != std::string::npos) out.push_back(cur.substr(b, e - b + 1));
    cur.clear();
  };
  while (std::getline(f, line)) {
    if (line == "%") flush();
    else cur += line + "\n";
  }
  flush();
  return out;
}

bool is_fortune_file(const fs::directory_entry& e) {
  if (!e.is_regular_file()) return false;
  auto ext = e.path().extension().string();
  return ext != ".dat" && ext != ".u8";
}

void split_into(TextDataset& d, std::vector<TextExample>&& all) {
  for (auto& ex : all) {
    auto h = stable_hash(ex.text) % 100;
    (h < 80 ? d.train : h < 90 ? d.valid : d.test).push_back(std::move(ex));
  }
}

// Keeps at most `cap` examples of each class, chosen by hash (deterministic).
void cap_per_class(std::vector<TextExample>& all, std::size_t cap, std::size_t classes) {
  if (cap == 0) return;
  std::stable_sort(all.begin(), all.end(), [](const TextExample& a, const TextExample& b) {
    return stable_hash(a.text + "#") < stable_hash(b.text + "#");
  });
  std::vector<std::size_t> count(classes, 0);
  std::vector<TextExample> kept;
  for (auto& ex : all)
    if (count[static_cast<std::size_t>(ex.label)]++ < cap) kept.push_back(std::move(ex));
  std::sort(kept.begin(), kept.end(), [](const TextExample& a, const TextExample& b) { return a.id < b.id; });
  all = std::move(kept);
}

}  // namespace

std::uint64_t stable_hash(const std::string& s) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

TextDataset load_fortunes(const std::string& task, std::size_t max_per_class, const std::string& root,
                          std::size_t min_entries) {
  if (!fs::is_directory(root)) throw std::runtime_error("fortunes directory " + root + " not found (install fortunes)");
  TextDataset d;
  std::vector<TextExample> all;
  auto add = [&](const fs::path& file, std::int64_t label) {
    auto entries = read_entries(file);
    // The path below the root, not the bare file name: de/computer and it/computer differ.
    const auto where = fs::relative(file, root).string();
    for (std::size_t i = 0; i < entries.size(); ++i) {
      auto id = static_cast<std::int64_t>(stable_hash(where + "#" + std::to_string(i)) >> 1);
      all.push_back({std::move(entries[i]), label, id});
    }
  };
  if (task == "topic") {
    for (const auto& name : kEnglishFiles) {
      fs::path p = fs::path(root) / name;
      if (!fs::exists(p)) continue;
      if (read_entries(p).size() < min_entries) continue;
      d.classes.push_back(name);
      add(p, static_cast<std::int64_t>(d.classes.size() - 1));
    }
    if (d.classes.size() < 2) throw std::runtime_error("topic task needs the fortunes package: fewer than 2 categories found");
  } else if (task == "language") {
    d.classes = {"en", "de", "es", "it"};
    for (const auto& name : kEnglishFiles)
      if (fs::exists(fs::path(root) / name)) add(fs::path(root) / name, 0);
    const char* dirs[] = {"de", "es", "it"};
    for (int l = 0; l < 3; ++l) {
      fs::path dir = fs::path(root) / dirs[l];
      if (!fs::is_directory(dir))
        throw std::runtime_error(dir.string() + " not found (install fortunes-" + dirs[l] + ")");
      std::vector<fs::path> files;
      for (auto& e : fs::directory_iterator(dir))
        if (is_fortune_file(e)) files.push_back(e.path());
      std::sort(files.begin(), files.end());
      for (auto& f : files) add(f, l + 1);
    }
  } else {
    throw std::runtime_error("fortunes task must be 'topic' or 'language', got '" + task + "'");
  }
  cap_per_class(all, max_per_class, d.classes.size());
  std::set<std::int64_t> ids;
  for (const auto& e : all)
    if (!ids.insert(e.id).second) throw std::runtime_error("fortunes: duplicate sample id " + std::to_string(e.id));
  split_into(d, std::move(all));
  return d;
}

namespace {

// Minimal JSON string reader for {"text": ..., "label": ...} lines.
struct JsonLine {
  const std::string& s;
  std::size_t i = 0;
  std::size_t line;
  const std::string& path;
  [[noreturn]] void fail(const std::string& m) {
    throw std::runtime_error("JSONL file '" + path + "', line " + std::to_string(line) + ": " + m);
  }
  void ws() {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  }
  void expect(char c) {
    ws();
    if (i >= s.size() || s[i] != c) fail(std::string("expected '") + c + "'");
    ++i;
  }
  std::string str() {
    expect('"');
    std::string out;
    while (i < s.size() && s[i] != '"') {
      char c = s[i++];
      if (c != '\\') {
        out += c;
        continue;
      }
      if (i >= s.size()) fail("bad escape");
      char e = s[i++];
      switch (e) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'u': {
          if (i + 4 > s.size()) fail("bad \\u escape");
          unsigned cp = std::stoul(s.substr(i, 4), nullptr, 16);
          i += 4;
          if (cp < 0x80) out += static_cast<char>(cp);
          else if (cp < 0x800) {
            out += static_cast<char>(0xC0 | (cp >> 6));
            out += static_cast<char>(0x80 | (cp & 0x3F));
          } else {
            out += static_cast<char>(0xE0 | (cp >> 12));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
          }
          break;
        }
        default: out += e;
      }
    }
    if (i >= s.size()) fail("unterminated string");
    ++i;
    return out;
  }
  std::string scalar() {  // a string or a bare integer, returned as text
    ws();
    if (i < s.size() && s[i] == '"') return str();
    std::size_t b = i;
    while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '-')) ++i;
    if (b == i) fail("label must be a string or an integer");
    return s.substr(b, i - b);
  }
};

}  // namespace

TextDataset load_jsonl(const std::string& path) {
  if (std::filesystem::is_directory(path)) throw std::runtime_error("JSONL file '" + path + "' is a directory");
  std::ifstream f(path);
  if (!f) throw std::runtime_error("cannot open JSONL file '" + path + "': " + std::strerror(errno));
  std::vector<std::pair<std::string, std::string>> rows;
  std::string line;
  std::size_t n = 0;
  while (std::getline(f, line)) {
    ++n;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    JsonLine j{line, 0, n, path};
    std::string text, label;
    bool have_text = false, have_label = false;
    j.expect('{');
    while (true) {
      auto key = j.str();
      j.expect(':');
      if (key == "text") {
        text = j.str();
        have_text = true;
      } else if (key == "label") {
        label = j.scalar();
        have_label = true;
      } else {
        j.scalar();
      }
      j.ws();
      if (j.i < line.size() && line[j.i] == ',') {
        ++j.i;
        continue;
      }
      j.expect('}');
      break;
    }
    if (!have_text || !have_label) j.fail("needs both \"text\" and \"label\"");
    rows.emplace_back(std::move(text), std::move(label));
  }
  if (rows.empty()) throw std::runtime_error("JSONL file '" + path + "' has no examples");
  std::set<std::string> labels;
  for (auto& r : rows) labels.insert(r.second);
  TextDataset d;
  d.classes.assign(labels.begin(), labels.end());
  std::map<std::string, std::int64_t> index;
  for (std::size_t i = 0; i < d.classes.size(); ++i) index[d.classes[i]] = static_cast<std::int64_t>(i);
  std::vector<TextExample> all;
  for (std::size_t i = 0; i < rows.size(); ++i)
    all.push_back({rows[i].first, index[rows[i].second], static_cast<std::int64_t>(i)});
  split_into(d, std::move(all));
  return d;
}

std::vector<std::int64_t> ByteTokenizer::encode(const std::string& text, std::int64_t max_len, bool cls) {
  std::vector<std::int64_t> ids;
  ids.reserve(static_cast<std::size_t>(max_len));
  if (cls) ids.push_back(kCls);
  for (unsigned char c : text) {
    if (static_cast<std::int64_t>(ids.size()) >= max_len) break;
    ids.push_back(c);
  }
  while (static_cast<std::int64_t>(ids.size()) < max_len) ids.push_back(kPad);
  return ids;
}

TextBatch make_text_batch(const std::vector<TextExample>& data, const std::vector<std::int64_t>& indices,
                          std::int64_t max_len, bool cls) {
  const auto b = static_cast<std::int64_t>(indices.size());
  TextBatch t;
  t.tokens = at::empty({b, max_len}, at::TensorOptions().dtype(at::kLong));
  t.labels = at::empty({b}, at::TensorOptions().dtype(at::kLong));
  auto tok = t.tokens.accessor<std::int64_t, 2>();
  auto lab = t.labels.accessor<std::int64_t, 1>();
  for (std::int64_t i = 0; i < b; ++i) {
    const auto& ex = data.at(static_cast<std::size_t>(indices[static_cast<std::size_t>(i)]));
    auto ids = ByteTokenizer::encode(ex.text, max_len, cls);
    for (std::int64_t j = 0; j < max_len; ++j) tok[i][j] = ids[static_cast<std::size_t>(j)];
    lab[i] = ex.label;
    t.ids.push_back(ex.id);
  }
  t.mask = t.tokens.ne(ByteTokenizer::kPad).to(at::kLong);
  return t;
}

std::vector<std::int64_t> shuffled_indices(std::size_t n, std::uint64_t seed, std::int64_t epoch) {
  std::vector<std::int64_t> idx(n);
  for (std::size_t i = 0; i < n; ++i) idx[i] = static_cast<std::int64_t>(i);
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + static_cast<std::uint64_t>(epoch));
  for (std::size_t i = n; i > 1; --i) std::swap(idx[i - 1], idx[rng() % i]);
  return idx;
}

}  // namespace seam::training
