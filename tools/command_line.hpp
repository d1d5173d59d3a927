#pragma once
// Shared by Seam's programs: "PROGRAM COMMAND --options", parsed with
// Boost.Program_options into a variables_map (not yet notified).
#include <boost/program_options.hpp>

namespace seam::tools {

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
