// seam-cloud: the cloud service. `prepare JOBFILE` builds a job's initial
// halves once; `serve` trains every prepared job in --jobs-dir with the edge
// clients that join it over mutual TLS.
#include <signal.h>

#include <boost/program_options.hpp>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "command_line.hpp"
#include "seam/cloud_server/service.hpp"

namespace po = boost::program_options;
namespace sc = seam::cloud;

namespace {

const char* kUsage =
    "usage: seam-cloud prepare JOBFILE [--state-dir DIR]\n"
    "       seam-cloud serve --cert PEM --key PEM --client-ca PEM [--jobs-dir DIR] [--state-dir DIR] [options]\n"
    "\n"
    "prepare reads a job file (key = value lines; docs/cloud.md) and builds the job's initial halves\n"
    "once, with a manifest of hashes, into STATE_DIR/NAME/job. serve loads every *.job in --jobs-dir\n"
    "(each must be prepared) and trains them with the edge clients that join over mutual TLS: a client\n"
    "may join a job only if its certificate subject is on the job's `allow` list. Sessions checkpoint\n"
    "into STATE_DIR/NAME/sessions; a restarted server resumes them. SIGTERM or SIGINT lets in-flight\n"
    "steps finish, saves every session and exits 0. Log lines (key=value) go to stderr; with\n"
    "--metrics-port, Prometheus metrics are served on http://METRICS_ADDRESS:PORT/metrics.\n"
    "Options may also come from --config FILE (key = value lines, same names as the flags).\n";

}  // namespace

int main(int argc, char** argv) {
  sc::ServiceOptions so;
  auto& s = so.server;
  std::int64_t stall_ms = s.stall_timeout.count(), idle_ms = s.idle_timeout.count(),
               keepalive_ms = s.keepalive_interval.count();
  std::string config, log_level = "info";
  std::vector<std::string> args;
  po::options_description opts("Options");
  opts.add_options()("help,h", "show this help")("config", po::value(&config), "key = value file with these options")(
      "bind-address", po::value(&s.bind_address)->default_value("127.0.0.1"), "address to listen on")(
      "port", po::value(&s.port)->default_value(7433), "TCP port (0 = any free port)")(
      "cert", po::value(&s.tls.cert_file), "server certificate (PEM, may hold the chain)")(
      "key", po::value(&s.tls.key_file), "server private key (PEM)")(
      "client-ca", po::value(&s.tls.ca_file), "CA that signs the clients' certificates (mutual TLS)")(
      "jobs-dir", po::value(&so.jobs_dir)->default_value("jobs"), "folder of NAME.job files")(
      "state-dir", po::value(&so.state_dir)->default_value("state"), "prepared jobs and session checkpoints")(
      "max-connections", po::value(&s.max_connections)->default_value(64), "connections served at once")(
      "worker-threads", po::value(&s.worker_threads)->default_value(2), "threads that run steps")(
      "stall-timeout-ms", po::value(&stall_ms)->default_value(stall_ms), "cut a connection after this long without progress")(
      "idle-timeout-ms", po::value(&idle_ms)->default_value(idle_ms), "cut a connection idle between requests this long")(
      "keepalive-ms", po::value(&keepalive_ms)->default_value(keepalive_ms), "Working notices while a step computes (0 = none)")(
      "max-metadata", po::value(&s.limits.max_metadata)->default_value(s.limits.max_metadata), "bytes of metadata per frame")(
      "max-payload", po::value(&s.limits.max_payload)->default_value(s.limits.max_payload), "bytes of tensors per frame")(
      "metrics-port", po::value(&so.metrics_port)->default_value(-1), "Prometheus /metrics port (-1 = off, 0 = any free port)")(
      "metrics-address", po::value(&so.metrics_address)->default_value("127.0.0.1"), "address of the /metrics endpoint")(
      "log-level", po::value(&log_level)->default_value("info"), "trace | debug | info | warn | error | off (debug logs every step)");
  po::options_description hidden;
  hidden.add_options()("args", po::value(&args));
  po::options_description all;
  all.add(opts).add(hidden);
  po::positional_options_description pos;
  pos.add("args", -1);
  try {
    po::variables_map vm;
    po::store(po::command_line_parser(argc, argv).options(all).positional(pos).run(), vm);
    if (vm.count("config")) seam::tools::store_config_file(vm["config"].as<std::string>(), opts, vm);
    po::notify(vm);
    if (vm.count("help") || args.empty()) {
      std::cout << kUsage << "\n" << opts;
      return vm.count("help") ? 0 : 2;
    }
    const std::string cmd = args[0];
    if (cmd == "prepare") {
      if (args.size() != 2) throw std::invalid_argument("prepare takes one JOBFILE");
      auto job = sc::read_job_file(args[1]);
      std::printf("seam-cloud: preparing job '%s' (%s, split %lld) into %s\n", job.name.c_str(),
                  job.spec.model.kind.c_str(), static_cast<long long>(job.spec.model.split),
                  sc::prepared_dir(so.state_dir, job.name).c_str());
      auto p = sc::prepare(job, so.state_dir);
      std::printf("seam-cloud: prepared; fingerprint %s\n", p.fingerprint.c_str());
      return 0;
    }
    if (cmd != "serve") throw std::invalid_argument("unknown command '" + cmd + "' (prepare or serve)");
    if (args.size() != 1) throw std::invalid_argument("serve takes no positional arguments");
    if (stall_ms < 1) throw std::invalid_argument("--stall-timeout-ms must be >= 1");
    if (idle_ms < 1) throw std::invalid_argument("--idle-timeout-ms must be >= 1");
    if (keepalive_ms < 0) throw std::invalid_argument("--keepalive-ms must be >= 0");
    const auto level = spdlog::level::from_str(log_level);
    if (level == spdlog::level::off && log_level != "off")
      throw std::invalid_argument("--log-level '" + log_level + "': expected trace, debug, info, warn, error or off");
    // Not registered in spdlog's global registry: the service gets it passed in.
    so.log = std::make_shared<spdlog::logger>("seam-cloud", std::make_shared<spdlog::sinks::stderr_sink_mt>());
    so.log->set_pattern("%Y-%m-%dT%H:%M:%S.%e%z level=%l %v");
    so.log->set_level(level);
    so.log->flush_on(spdlog::level::trace);
    s.stall_timeout = seam::transport::Millis(stall_ms);
    s.idle_timeout = seam::transport::Millis(idle_ms);
    s.keepalive_interval = seam::transport::Millis(keepalive_ms);
    // The program, not the library, owns the signals: block them before any
    // thread starts, then wait for one here.
    // A closed stdout (a supervisor that stopped reading) must not kill the
    // server with SIGPIPE before it saves its sessions.
    ::signal(SIGPIPE, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    sc::Service service(so);
    service.start();
    std::string names;
    for (const auto& j : service.jobs()) names += (names.empty() ? "" : ", ") + j;
    std::printf("seam-cloud: serving jobs %s on %s:%u\n", names.c_str(), s.bind_address.c_str(), unsigned(service.port()));
    if (service.metrics_port() >= 0)
      std::printf("seam-cloud: metrics on http://%s:%d/metrics\n", so.metrics_address.c_str(), service.metrics_port());
    std::fflush(stdout);
    int sig = 0;
    sigwait(&set, &sig);
    std::printf("seam-cloud: %s: finishing in-flight steps and saving sessions\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    std::fflush(stdout);
    service.stop();
    std::printf("seam-cloud: stopped\n");
    return 0;
  } catch (const po::error& e) {
    std::cerr << "seam-cloud: " << e.what() << "\n\n" << kUsage;
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "seam-cloud: error: " << e.what() << "\n";
    return 1;
  }
}
