#include "seam/edge_client/options.hpp"

#include <boost/program_options.hpp>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace seam::edge {

namespace po = boost::program_options;

std::string EdgeOptions::host() const {
  auto colon = server.rfind(':');
  return colon == std::string::npos ? server : server.substr(0, colon);
}

std::uint16_t EdgeOptions::port() const {
  auto colon = server.rfind(':');
  if (colon == std::string::npos) return 0;
  const std::string p = server.substr(colon + 1);
  if (p.empty() || p.size() > 5 || p.find_first_not_of("0123456789") != std::string::npos) return 0;
  const long v = std::stol(p);
  return v > 0 && v <= 65535 ? static_cast<std::uint16_t>(v) : 0;
}

std::string EdgeOptions::resolved_job_dir() const {
  if (!job_dir.empty()) return job_dir;
  return state_dir.empty() ? std::string() : state_dir + "/job";
}

std::vector<std::string> validate(const EdgeOptions& o) {
  std::vector<std::string> errors;
  if (o.host().empty() || o.port() == 0)
    errors.emplace_back("server '" + o.server + "' must be HOST:PORT with a port 1..65535");
  if (o.ca_file.empty()) errors.emplace_back("ca is required (the CA that signed the server's certificate)");
  if (o.cert_file.empty() || o.key_file.empty())
    errors.emplace_back("cert and key are required (the client's certificate and key, for mutual TLS)");
  if (o.job.empty()) errors.emplace_back("job is required (the job's name at the server)");
  if (o.resolved_job_dir().empty()) errors.emplace_back("job-dir or state-dir is required (where the job's front half lives)");
  if (o.client_id.empty()) errors.emplace_back("client-id is empty");
  if (o.checkpoint_every > 0 && o.state_dir.empty())
    errors.emplace_back("checkpoint-every needs a state-dir to keep the checkpoints in");
  if (o.keep_checkpoints < 2) errors.emplace_back("keep-checkpoints must be >= 2");
  if (o.connect_timeout_ms < 1) errors.emplace_back("connect-timeout-ms must be >= 1");
  if (o.stall_timeout_ms < 1) errors.emplace_back("stall-timeout-ms must be >= 1");
  if (o.max_attempts < 1) errors.emplace_back("max-attempts must be >= 1");
  if (o.backoff_initial_ms < 1 || o.backoff_max_ms < o.backoff_initial_ms)
    errors.emplace_back("backoff-initial-ms must be >= 1 and backoff-max-ms >= backoff-initial-ms");
  return errors;
}

void describe_options(po::options_description& d, EdgeOptions& o) {
  d.add_options()("server", po::value(&o.server)->default_value(o.server), "seam-cloud address, HOST:PORT")(
      "ca", po::value(&o.ca_file), "CA that signed the server's certificate (PEM)")(
      "cert", po::value(&o.cert_file), "this client's certificate (PEM)")(
      "key", po::value(&o.key_file), "this client's private key (PEM)")(
      "job", po::value(&o.job), "the job's name at the server")(
      "job-dir", po::value(&o.job_dir), "the job's front half (default STATE_DIR/job)")(
      "state-dir", po::value(&o.state_dir), "edge checkpoints and session nonce (resume)")(
      "client-id", po::value(&o.client_id)->default_value(o.client_id), "names this client inside its identity")(
      "checkpoint-every", po::value(&o.checkpoint_every)->default_value(o.checkpoint_every),
      "steps between checkpoints taken with the cloud (0 = none)")(
      "keep-checkpoints", po::value(&o.keep_checkpoints)->default_value(o.keep_checkpoints), "newest kept")(
      "connect-timeout-ms", po::value(&o.connect_timeout_ms)->default_value(o.connect_timeout_ms), "TCP + TLS handshake")(
      "stall-timeout-ms", po::value(&o.stall_timeout_ms)->default_value(o.stall_timeout_ms),
      "reconnect when no byte moved for this long")(
      "max-attempts", po::value(&o.max_attempts)->default_value(o.max_attempts), "per request, reconnects included")(
      "backoff-initial-ms", po::value(&o.backoff_initial_ms)->default_value(o.backoff_initial_ms),
      "first reconnect delay (doubles, with jitter)")(
      "backoff-max-ms", po::value(&o.backoff_max_ms)->default_value(o.backoff_max_ms), "cap of the reconnect delay");
}

EdgeOptions options_from_text(const std::string& text) {
  EdgeOptions o;
  po::options_description d;
  describe_options(d, o);
  po::variables_map vm;
  std::istringstream is(text);
  try {
    po::store(po::parse_config_file(is, d), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    throw std::invalid_argument(std::string("edge config: ") + e.what());
  }
  auto errors = validate(o);
  if (!errors.empty()) {
    std::string all = "edge config: ";
    for (std::size_t i = 0; i < errors.size(); ++i) all += (i ? "; " : "") + errors[i];
    throw std::invalid_argument(all);
  }
  return o;
}

EdgeOptions options_from_file(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw std::invalid_argument("edge config '" + path + "' cannot be read");
  std::ostringstream s;
  s << f.rdbuf();
  try {
    return options_from_text(s.str());
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument("'" + path + "': " + e.what());
  }
}

}  // namespace seam::edge
