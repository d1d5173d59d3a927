#pragma once
// Shared by Seam's programs: "PROGRAM COMMAND --options", parsed with
// Boost.Program_options into a variables_map (not yet notified).
#include <boost/program_options.hpp>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

namespace seam::tools {

// A bad command line that Boost.Program_options cannot see (a value out of
// range, flags that do not go together). Programs exit 2 on it, as on po::error;
// a bad file or a failed run exits 1.
struct UsageError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

inline boost::program_options::variables_map parse_command_line(
    int argc, char** argv, const boost::program_options::options_description& visible) {
  namespace po = boost::program_options;
  po::options_description hidden;
  hidden.add_options()("command", po::value<std::string>());
  po::options_description all;
  all.add(visible).add(hidden);
  po::positional_options_description pos;
  pos.add("command", 1);
  po::variables_map vm;
  po::store(po::command_line_parser(argc, argv).options(all).positional(pos).run(), vm);
  return vm;
}

// Reads --config FILE into vm; errors name the file.
inline void store_config_file(const std::string& path, const boost::program_options::options_description& opts,
                              boost::program_options::variables_map& vm) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(path, ec)) throw std::invalid_argument("--config '" + path + "' does not exist");
  if (fs::is_directory(path, ec)) throw std::invalid_argument("--config '" + path + "' is a directory, not a file");
  std::ifstream f(path);
  if (!f) throw std::invalid_argument("cannot open --config '" + path + "'");
  try {
    boost::program_options::store(boost::program_options::parse_config_file(f, opts), vm);
  } catch (const boost::program_options::error& e) {
    throw std::invalid_argument("--config '" + path + "': " + e.what());
  }
}

}  // namespace seam::tools
