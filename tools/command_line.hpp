#pragma once
// Shared by Seam's programs: "PROGRAM COMMAND --options", parsed with
// Boost.Program_options into a variables_map (not yet notified).
#include <boost/program_options.hpp>
#include <stdexcept>

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

}  // namespace seam::tools
