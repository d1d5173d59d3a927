// A cloud process for the kill test: serves one prepared job over TLS until
// killed. Usage: seam_session_test_server JOB_DIR STATE_ROOT PKI_DIR PORT
#include <chrono>
#include <cstdio>
#include <thread>

#include "session/session_test_util.hpp"

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s JOB_DIR STATE_ROOT PKI_DIR PORT\n", argv[0]);
    return 2;
  }
  using namespace seam::session;
  auto job = load_job(argv[1]);
  CloudSessions sessions(job, argv[2]);
  seam::transport::Server server(test::server_options(argv[3], static_cast<std::uint16_t>(std::atoi(argv[4]))),
                                 [&](const seam::transport::PeerInfo& p, seam::transport::Message&& m) {
                                   return sessions.handle(p, std::move(m));
                                 });
  server.start();
  std::printf("listening %u\n", static_cast<unsigned>(server.port()));
  std::fflush(stdout);
  for (;;) std::this_thread::sleep_for(std::chrono::seconds(60));
}
