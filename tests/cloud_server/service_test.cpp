// The cloud service: job files, preparation, several jobs behind one TLS
// server, who may join which job, and a restart that loses no step.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "seam/cloud_server/service.hpp"
#include "seam/session/links.hpp"
#include "seam/transport/errors.hpp"
#include "session/session_test_util.hpp"

extern char** environ;

namespace {

namespace sc = seam::cloud;
namespace ss = seam::session;
namespace st = seam::transport;
namespace t = seam::training;
namespace fs = std::filesystem;

// The session tests' small ViT job, as a job file, with keys replaced or added.
std::string job_text(const std::map<std::string, std::string>& changes = {}, const std::string& extra = "") {
  std::map<std::string, std::string> keys = {{"model", "vit"},   {"classes", "10"}, {"width", "32"},    {"depth", "2"},
                                             {"heads", "4"},     {"mlp-ratio", "2"}, {"split", "1"},    {"seed", "7"},
                                             {"lr", "0.002"},    {"up-codec", "none"}, {"down-codec", "none"}};
  for (const auto& [k, v] : changes) keys[k] = v;
  std::string s = "# a small ViT, split after block 1\n";
  for (const auto& [k, v] : keys) s += k + " = " + v + "\n";
  return s + extra;
}

void write(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

std::string refusal_of(const std::string& path) {
  try {
    sc::read_job_file(path);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

TEST(CloudJobs, JobFilesAreReadWithSeamTrainNamesAndRefusedByKey) {
  auto dir = ss::test::temp_dir("jobfiles");
  write(dir + "/vit-small.job",
        job_text({}, "allow = CN=edge-1\nallow = CN=edge-2\ncheckpoint-every = 4\nmax-sessions = 8\ndelta-ram-mib = 32\n"));
  auto j = sc::read_job_file(dir + "/vit-small.job");
  EXPECT_EQ(j.name, "vit-small");
  EXPECT_EQ(j.spec.model.kind, "vit");
  EXPECT_EQ(j.spec.model.width, 32);
  EXPECT_EQ(j.spec.half.optim.lr, 0.002);
  EXPECT_EQ(j.allow, (std::vector<std::string>{"CN=edge-1", "CN=edge-2"}));
  EXPECT_EQ(j.checkpoint_every, 4u);
  EXPECT_EQ(j.max_sessions, 8);
  EXPECT_EQ(j.delta_ram_mib, 32);
  EXPECT_EQ(j.policy, "per-client");

  auto expect = [&](const std::string& text, const std::string& why) {
    write(dir + "/bad.job", text);
    auto got = refusal_of(dir + "/bad.job");
    EXPECT_NE(got.find("job file '" + dir + "/bad.job'"), std::string::npos) << got;
    EXPECT_NE(got.find(why), std::string::npos) << got;
  };
  expect(job_text({}, "allow = CN=edge-1\nlearning-rate = 1\n"), "unrecognised option 'learning-rate'");
  expect(job_text(), "no 'allow' line");
  expect(job_text({{"max-sessions", "0"}}, "allow = CN=edge-1\n"), "max-sessions must be at least 1");
  expect(job_text({{"policy", "sharde"}}, "allow = CN=edge-1\n"), "policy 'sharde': expected per-client");
  expect(job_text({{"up-codec", "qaunt"}}, "allow = CN=edge-1\n"), "unknown codec stage 'qaunt'");
  expect(job_text({{"split", "9"}}, "allow = CN=edge-1\n"), "split 9 out of range");
  expect(job_text({{"width", "wide"}}, "allow = CN=edge-1\n"), "width");
  EXPECT_NE(refusal_of(dir + "/missing.job").find("does not exist"), std::string::npos);
  fs::remove_all(dir);
}

struct Fixture {
  std::string root = ss::test::temp_dir("service");
  sc::ServiceOptions opts() const {
    sc::ServiceOptions o;
    o.server = ss::test::server_options(ss::test::pki_dir());
    o.jobs_dir = root + "/jobs";
    o.state_dir = root + "/state";
    return o;
  }
  explicit Fixture(int every = 0) {
    fs::create_directories(root + "/jobs");
    write(root + "/jobs/vit.job", job_text({}, "allow = CN=edge-1\ncheckpoint-every = " + std::to_string(every) + "\n"));
    write(root + "/jobs/closed.job", job_text({{"seed", "8"}}, "allow = CN=edge-2\n"));
    for (const char* name : {"vit", "closed"}) sc::prepare(sc::read_job_file(root + "/jobs/" + name + ".job"), root + "/state");
  }
  ~Fixture() { fs::remove_all(root); }
};

ss::SessionOptions edge_options(const std::string& job) {
  ss::SessionOptions o;
  o.job_name = job;
  return o;
}

// The losses of the job's first `steps` steps with both halves in this process.
std::vector<double> reference_losses(const ss::PreparedJob& job, std::uint64_t steps) {
  ss::CloudSession cloud(job, {});
  ss::EdgeSession edge(job, {});
  ss::InProcessLink link(cloud);
  edge.connect(link, "ref");
  std::vector<double> out;
  for (std::uint64_t k = 0; k < steps; ++k) out.push_back(edge.train_step(link, ss::test::batch_of(k))->loss);
  return out;
}

std::string refused(ss::EdgeSession& edge, std::uint16_t port, const std::string& id) {
  ss::TlsLink link(ss::test::client_options(ss::test::pki_dir(), port));
  try {
    edge.connect(link, id);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

TEST(CloudService, ServesJobsByNameToTheClientsOnTheirListsAndResumesAfterAStop) {
  Fixture fx;
  auto job = ss::load_job(sc::prepared_dir(fx.root + "/state", "vit"));
  const auto ref_losses = reference_losses(job, 6);
  auto service = std::make_unique<sc::Service>(fx.opts());
  EXPECT_EQ(service->jobs(), (std::vector<std::string>{"closed", "vit"}));
  service->start();
  const auto port = service->port();

  // Refusals, each with its reason.
  ss::EdgeSession stranger(job, edge_options("nope"));
  auto why = refused(stranger, port, "x");
  EXPECT_NE(why.find("job 'nope' is not served here (jobs: closed, vit)"), std::string::npos) << why;
  auto closed = ss::load_job(sc::prepared_dir(fx.root + "/state", "closed"));
  ss::EdgeSession outsider(closed, edge_options("closed"));
  why = refused(outsider, port, "x");
  EXPECT_NE(why.find("'CN=edge-1' may not join job 'closed'"), std::string::npos) << why;
  ss::EdgeSession wrong(closed, edge_options("vit"));  // another job's halves
  why = refused(wrong, port, "x");
  EXPECT_NE(why.find("not this job: field 'model.seed' differs"), std::string::npos) << why;

  // A client on the list trains 3 steps; the service stops (saving the
  // session) and a new one on the same state resumes at step 3.
  ss::EdgeSession edge(job, edge_options("vit"));
  std::vector<double> losses;
  {
    ss::TlsLink link(ss::test::client_options(ss::test::pki_dir(), port));
    edge.connect(link, "e1");
    for (std::uint64_t k = 0; k < 3; ++k) losses.push_back(edge.train_step(link, ss::test::batch_of(k))->loss);
  }
  service->stop();
  service = std::make_unique<sc::Service>(fx.opts());
  service->start();
  {
    ss::TlsLink link(ss::test::client_options(ss::test::pki_dir(), service->port()));
    EXPECT_EQ(edge.connect(link, "e1"), 3u);
    for (std::uint64_t k = 3; k < 6; ++k) losses.push_back(edge.train_step(link, ss::test::batch_of(k))->loss);
  }
  EXPECT_EQ(losses, ref_losses);
  EXPECT_EQ(service->sessions("vit").size(), 1u);
  EXPECT_EQ(service->sessions("closed").size(), 0u);
}

// seam-cloud as a process: its first line names the port.
struct CloudProcess {
  pid_t pid = 0;
  std::uint16_t port = 0;
  CloudProcess(const Fixture& fx, std::uint16_t want_port) {
    const std::string exe = SEAM_CLOUD_BIN, pki = ss::test::pki_dir();
    std::vector<std::string> args = {exe, "serve", "--cert", pki + "/server.pem", "--key", pki + "/server.key",
                                     "--client-ca", pki + "/ca.pem", "--jobs-dir", fx.root + "/jobs",
                                     "--state-dir", fx.root + "/state", "--port", std::to_string(want_port)};
    std::string line;
    pid = ss::test::spawn_reading_first_line(args, line);
    EXPECT_EQ(line.rfind("seam-cloud: serving jobs closed, vit on 127.0.0.1:", 0), 0u) << "seam-cloud said: " << line;
    port = static_cast<std::uint16_t>(std::atoi(line.c_str() + line.rfind(':') + 1));
  }
  // Sends the signal and returns the exit status (or -signal).
  int stop(int sig) {
    ::kill(pid, sig);
    int status = 0;
    ::waitpid(pid, &status, 0);
    pid = 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
  }
  ~CloudProcess() {
    if (pid) stop(SIGKILL);
  }
};

TEST(CloudService, TheProgramSavesOnSigtermAndResumesAfterSigkill) {
  Fixture fx(2);  // the job checkpoints every 2 steps
  auto job = ss::load_job(sc::prepared_dir(fx.root + "/state", "vit"));
  const auto ref = reference_losses(job, 6);
  auto eo = edge_options("vit");
  eo.state_dir = fx.root + "/edge";
  eo.checkpoint_every = 2;
  ss::EdgeSession edge(job, eo);
  std::map<std::uint64_t, std::vector<double>> losses;  // by step: a replayed step appears twice
  auto train = [&](std::uint16_t port, std::uint64_t until, std::uint64_t expect_from) {
    ss::TlsLink link(ss::test::client_options(ss::test::pki_dir(), port));
    EXPECT_EQ(edge.connect(link, "e1"), expect_from);
    while (edge.step() < until) {
      const auto k = edge.step();
      losses[k].push_back(edge.train_step(link, ss::test::batch_of(k))->loss);
    }
  };
  std::uint16_t port = 0;
  {
    CloudProcess cloud(fx, 0);
    port = cloud.port;
    train(port, 3, 0);
    EXPECT_EQ(cloud.stop(SIGTERM), 0) << "SIGTERM: finish, save, exit 0";
  }
  {
    CloudProcess cloud(fx, port);
    train(port, 5, 3);  // SIGTERM saved the session at step 3: no rollback
    EXPECT_EQ(cloud.stop(SIGKILL), -SIGKILL);
  }
  {
    CloudProcess cloud(fx, port);
    train(port, 6, 4);  // after SIGKILL both sides go back to their checkpoint of step 4
  }
  ASSERT_EQ(losses.size(), 6u);
  for (std::uint64_t k = 0; k < 6; ++k)
    for (double l : losses[k]) EXPECT_EQ(l, ref[k]) << "step " << k;
  EXPECT_EQ(losses[4].size(), 2u) << "step 4 was replayed once";
}

TEST(CloudService, AJobThatIsNotPreparedOrDiffersFromItsFileIsRefusedAtStart) {
  Fixture fx;
  auto o = fx.opts();
  write(o.jobs_dir + "/new.job", job_text({}, "allow = CN=edge-1\n"));
  try {
    sc::Service s(o);
    ADD_FAILURE() << "an unprepared job was served";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("job 'new' is not prepared: run `seam-cloud prepare"), std::string::npos) << e.what();
  }
  fs::remove(o.jobs_dir + "/new.job");
  write(o.jobs_dir + "/vit.job", job_text({{"lr", "0.01"}}, "allow = CN=edge-1\n"));
  try {
    sc::Service s(o);
    ADD_FAILURE() << "a changed job was served";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("the job file and its prepared halves differ (field 'optim.lr' differs"), std::string::npos)
        << e.what();
  }
  o.server.tls.ca_file.clear();
  try {
    sc::Service s(o);
    ADD_FAILURE() << "served without a client CA";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("--client-ca is required"), std::string::npos) << e.what();
  }
}

// A new device needs only the address, its certificate and its data: it
// downloads the front half (never the cloud half), checked against the
// manifest, then trains and runs inference through the service.
TEST(CloudService, AnEdgeDownloadsTheFrontHalfAndInfersThroughTheService) {
  Fixture fx;
  auto job = ss::load_job(sc::prepared_dir(fx.root + "/state", "vit"));
  sc::Service service(fx.opts());
  service.start();
  ss::TlsLink link(ss::test::client_options(ss::test::pki_dir(), service.port()));

  const auto fetched = ss::fetch_job(link, "vit", fx.root + "/edge-job");
  EXPECT_EQ(fetched.fingerprint, job.fingerprint);
  EXPECT_FALSE(fetched.has_cloud);
  EXPECT_FALSE(fs::exists(fx.root + "/edge-job/cloud_init.pt"));
  EXPECT_THROW(ss::load_cloud_half(fetched), std::runtime_error);
  auto refusal = [&](const std::string& job_name, const std::string& file) {
    try {
      ss::throw_if_error(link.fetch(st::Fetch{job_name, file, 0, 0}));
    } catch (const ss::SessionError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(refusal("vit", "cloud_init.pt").find("file 'cloud_init.pt' is not offered"), std::string::npos);
  EXPECT_NE(refusal("closed", "manifest").find("fetch refused: 'CN=edge-1' may not join job 'closed'"), std::string::npos);
  EXPECT_NE(refusal("nope", "manifest").find("fetch refused: job 'nope' is not served here"), std::string::npos);
  EXPECT_THROW(ss::fetch_job(link, "vit", fx.root + "/edge-job"), std::runtime_error) << "an existing folder is kept";

  ss::EdgeSession edge(fetched, edge_options("vit"));
  edge.connect(link, "e1");
  for (std::uint64_t k = 0; k < 2; ++k) ASSERT_TRUE(edge.train_step(link, ss::test::batch_of(k)));
  auto cloud = service.sessions("vit").find("CN=edge-1|e1|" + std::to_string(edge.nonce()));
  ASSERT_NE(cloud, nullptr);

  // The same two halves run here, in eval mode, without a codec.
  const auto b = ss::test::batch_of(100);
  at::Tensor local;
  {
    torch::NoGradGuard ng;
    edge.half().train(false);
    cloud->half().train(false);
    t::BatchContext ctx{{}, b.x.size(0)};
    local = cloud->half().forward(edge.half().forward(b.x, ctx), ctx);
    edge.half().train(true);
    cloud->half().train(true);
  }
  const at::Tensor logits = edge.infer(link, b);
  ASSERT_EQ(logits.sizes(), local.sizes());
  EXPECT_LE((logits - local).abs().max().item<double>(), 1e-6);
  EXPECT_TRUE(edge.infer(link, b, ss::InferOutput::classes).equal(local.argmax(1)));
  EXPECT_EQ(edge.step(), 2u) << "inference is not a step";
  EXPECT_EQ(cloud->next_step(), 2u);

  // Accuracy through the service equals the local evaluation of both halves.
  auto task = t::make_task("fashion-mnist");
  const double remote = edge.evaluate(link, *task, t::Split::test, 50, 200);
  const double here = t::evaluate(edge.half(), &cloud->half(), *task, t::Split::test, 200, 50);
  EXPECT_EQ(remote, here);
  EXPECT_GT(remote, 0.0);
}

// Vanilla split learning: 4 clients train one shared cloud half while 16
// clients of a per-client job train their own, all at once.
TEST(CloudService, FourClientsShareOneCloudHalfWhileSixteenTrainTheirOwn) {
  Fixture fx;
  write(fx.root + "/jobs/shared.job", job_text({{"policy", "shared"}, {"seed", "9"}}, "allow = CN=edge-1\n"));
  sc::prepare(sc::read_job_file(fx.root + "/jobs/shared.job"), fx.root + "/state");
  auto opts = fx.opts();
  opts.server.max_connections = 32;
  sc::Service service(opts);
  service.start();
  constexpr int kShared = 4, kOwn = 16;
  constexpr std::uint64_t kSteps = 8;
  struct Client {
    std::string job;
    std::vector<double> losses;
    std::string error;
    std::uint64_t nonce = 0;
  };
  std::vector<Client> clients;
  for (int i = 0; i < kShared + kOwn; ++i) clients.push_back({i < kShared ? "shared" : "vit", {}, {}, 0});
  std::vector<std::thread> threads;
  for (int i = 0; i < kShared + kOwn; ++i)
    threads.emplace_back([&, i] {
      auto& c = clients[i];
      try {
        auto job = ss::load_job(sc::prepared_dir(fx.root + "/state", c.job));
        ss::EdgeSession edge(job, edge_options(c.job));
        c.nonce = edge.nonce();
        ss::TlsLink link(ss::test::client_options(ss::test::pki_dir(), service.port()));
        edge.connect(link, "c" + std::to_string(i));
        const auto batch = ss::test::batch_of(500 + i);  // each client its own data, learnt by heart
        while (edge.step() < kSteps) c.losses.push_back(edge.train_step(link, batch)->loss);
      } catch (const std::exception& e) {
        c.error = e.what();
      }
    });
  for (auto& th : threads) th.join();

  auto& shared = service.sessions("shared");
  auto& own = service.sessions("vit");
  ASSERT_NE(shared.shared(), nullptr);
  EXPECT_EQ(own.shared(), nullptr);
  for (int i = 0; i < kShared + kOwn; ++i) {
    const auto& c = clients[i];
    ASSERT_EQ(c.error, "") << "client " << i;
    ASSERT_EQ(c.losses.size(), kSteps) << "client " << i;
    EXPECT_LT(c.losses.back(), c.losses.front()) << "client " << i << " (" << c.job << "): the loss falls";
    auto s = (i < kShared ? shared : own).find("CN=edge-1|c" + std::to_string(i) + "|" + std::to_string(c.nonce));
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(s->applied(), kSteps) << "client " << i << ": every step applied once";
    EXPECT_EQ(&s->half() == &shared.shared()->half(), i < kShared) << "client " << i;
  }
  EXPECT_EQ(shared.size(), static_cast<std::size_t>(kShared));
  EXPECT_EQ(own.size(), static_cast<std::size_t>(kOwn));
  EXPECT_EQ(shared.shared()->steps(), kShared * kSteps) << "the shared half applied every client's steps";
  EXPECT_EQ(own.applied(), kOwn * kSteps);
}

// Runs a shell command and returns its stdout.
std::string sh(const std::string& cmd) {
  std::string out;
  if (FILE* f = ::popen(cmd.c_str(), "r")) {
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
    ::pclose(f);
  }
  return out;
}

// The value of one sample line of a Prometheus text page (-1 when absent).
double sample(const std::string& page, const std::string& series) {
  const auto at = page.find("\n" + series + " ");
  return at == std::string::npos ? -1 : std::stod(page.substr(at + series.size() + 2));
}

std::size_t count_of(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// seam-cloud as a process, against bad peers and a good client at once:
// each refusal has its reason (an Error message where the peer can read one,
// a log line always), /metrics counts them, and the good client trains on.
TEST(CloudService, TheProgramRefusesBadPeersWithReasonsAndItsMetricsAgreeWithTheClient) {
  Fixture fx;
  const std::string pki = ss::test::pki_dir(), log = fx.root + "/cloud.log";
  std::vector<std::string> lines;
  const pid_t pid = ss::test::spawn_reading_lines(
      {SEAM_CLOUD_BIN, "serve", "--cert", pki + "/server.pem", "--key", pki + "/server.key", "--client-ca", pki + "/ca.pem",
       "--jobs-dir", fx.root + "/jobs", "--state-dir", fx.root + "/state", "--port", "0", "--metrics-port", "0",
       "--stall-timeout-ms", "1500", "--log-level", "debug"},
      2, lines, log);
  struct Reap {
    pid_t pid;
    ~Reap() {
      if (pid <= 0) return;
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  } reap{pid};
  ASSERT_EQ(lines.size(), 2u);
  ASSERT_NE(lines[1].find("seam-cloud: metrics on http://127.0.0.1:"), std::string::npos) << lines[1];
  const std::string port = lines[0].substr(lines[0].rfind(':') + 1);
  const std::string mport = lines[1].substr(lines[1].rfind(':') + 1, lines[1].rfind('/') - lines[1].rfind(':') - 1);

  auto job = ss::load_job(sc::prepared_dir(fx.root + "/state", "vit"));
  ss::EdgeSession edge(job, edge_options("vit"));
  ss::TlsLink link(ss::test::client_options(pki, static_cast<std::uint16_t>(std::stoi(port))));
  edge.connect(link, "good");
  std::vector<t::StepMetrics> steps;
  auto train = [&](int n) {
    for (int i = 0; i < n; ++i) steps.push_back(*edge.train_step(link, ss::test::batch_of(edge.step())));
  };

  const std::string tls = "timeout 20 openssl s_client -quiet -connect 127.0.0.1:" + port + " -CAfile " + pki + "/ca.pem";
  const std::string with_cert = tls + " -cert " + pki + "/client.pem -key " + pki + "/client.key";
  // A peer that stalls inside a frame: a header that promises 100 bytes of metadata, then 5 bytes, then nothing.
  std::thread stall([&] {
    sh("(printf 'SEAM\\003\\000\\001\\000\\011\\000\\000\\000\\144\\000\\000\\000'; printf '\\000%.0s' $(seq 16); "
       "printf abcde; sleep 6) | " + with_cert + " >/dev/null 2>&1");
  });
  train(4);
  const auto garbage = sh("printf 'this is not a frame, just bytes after the handshake....' | " + with_cert + " 2>/dev/null");
  EXPECT_NE(garbage.find("bad frame magic"), std::string::npos) << "the peer reads why";
  sh("timeout 20 bash -c 'exec 3<>/dev/tcp/127.0.0.1/" + port +
     "; printf \"GET / HTTP/1.0\\r\\n\\r\\n\" >&3; cat <&3' >/dev/null 2>&1");  // plaintext
  sh("printf x | " + tls + " >/dev/null 2>&1");                                 // openssl s_client without a certificate
  auto closed = ss::load_job(sc::prepared_dir(fx.root + "/state", "closed"));
  ss::EdgeSession outsider(closed, edge_options("closed")), wrong(closed, edge_options("vit")),
      lost(job, edge_options("nope"));
  const auto p = static_cast<std::uint16_t>(std::stoi(port));
  EXPECT_NE(refused(outsider, p, "x").find("'CN=edge-1' may not join job 'closed'"), std::string::npos);
  EXPECT_NE(refused(wrong, p, "x").find("not this job: field 'model.seed' differs"), std::string::npos);
  EXPECT_NE(refused(lost, p, "x").find("job 'nope' is not served here"), std::string::npos);
  train(4);
  stall.join();
  ASSERT_EQ(steps.size(), 8u);

  const auto page = sh("timeout 20 bash -c 'exec 3<>/dev/tcp/127.0.0.1/" + mport +
                       "; printf \"GET /metrics HTTP/1.0\\r\\n\\r\\n\" >&3; cat <&3'");
  ASSERT_NE(page.find("200 OK"), std::string::npos) << page;
  const auto stats = link.stats();
  std::uint64_t act = 0, grad = 0;
  for (const auto& m : steps) {
    act += m.up.tensor;
    grad += m.down.tensor;
  }
  EXPECT_EQ(sample(page, "seam_steps_total{job=\"vit\"}"), 8);
  EXPECT_EQ(sample(page, "seam_sessions{job=\"vit\"}"), 1);
  EXPECT_EQ(sample(page, "seam_bytes_up_total{job=\"vit\"}"), double(stats.bytes_up));
  EXPECT_EQ(sample(page, "seam_bytes_down_total{job=\"vit\"}"), double(stats.bytes_down));
  EXPECT_EQ(sample(page, "seam_activation_bytes_total{job=\"vit\"}"), double(act));
  EXPECT_EQ(sample(page, "seam_gradient_bytes_total{job=\"vit\"}"), double(grad));
  EXPECT_EQ(sample(page, "seam_step_seconds_count{job=\"vit\"}"), 8);
  EXPECT_EQ(sample(page, "seam_step_seconds_bucket{job=\"vit\",le=\"+Inf\"}"), 8);
  EXPECT_GE(sample(page, "seam_step_seconds_bucket{job=\"vit\",le=\"10\"}"), 0) << "bounds as written: le=\"0.1\", \"10\"";
  EXPECT_NE(page.find("le=\"0.005\""), std::string::npos) << page;
  for (const char* kind : {"not_allowed", "job_mismatch", "unknown_job", "bad_magic", "timeout"})
    EXPECT_EQ(sample(page, std::string("seam_errors_total{kind=\"") + kind + "\"}"), 1) << kind << "\n" << page;
  EXPECT_EQ(sample(page, "seam_errors_total{kind=\"tls_failure\"}"), 2) << "plaintext and no certificate";

  ::kill(pid, SIGTERM);
  int status = 0;
  ::waitpid(pid, &status, 0);
  reap.pid = 0;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  std::ifstream in(log);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(count_of(text, "event=step job=\"vit\""), 8u) << text;
  EXPECT_EQ(count_of(text, "kind=tls_failure"), 2u) << text;
  EXPECT_NE(text.find("peer did not return a certificate"), std::string::npos) << text;
  EXPECT_NE(text.find("kind=bad_magic reason=\"bad frame magic\""), std::string::npos) << text;
  EXPECT_NE(text.find("kind=timeout"), std::string::npos) << text;
  EXPECT_NE(text.find("kind=not_allowed reason=\"hello refused: 'CN=edge-1' may not join job 'closed'\""), std::string::npos)
      << text;
  EXPECT_NE(text.find("event=stopped"), std::string::npos) << text;
}

// The shared half's own checkpoints: a restarted registry resumes the half,
// its optimizer and the count of steps every session applied; a session cap
// saves and drops the least recently used idle session, whose client resumes.
TEST(CloudService, TheSharedHalfResumesFromItsCheckpointAndACapEvictsIdleSessions) {
  auto root = ss::test::temp_dir("shared");
  const auto spec = ss::test::test_job(false);
  ss::prepare_job(spec, root + "/job");
  const auto job = ss::load_job(root + "/job");
  ss::SessionOptions base;
  std::string before;
  {
    ss::CloudSessions cloud(job, root + "/sessions", base, /*shared=*/true);
    cloud.set_max_sessions(1);
    st::Server server(ss::test::server_options(ss::test::pki_dir()),
                      [&](const st::PeerInfo& p, st::Message&& m) { return cloud.handle(p, std::move(m)); });
    server.start();
    ss::EdgeSession e0(job, {}), e1(job, {});
    ss::TlsLink l0(ss::test::client_options(ss::test::pki_dir(), server.port()));
    ss::TlsLink l1(ss::test::client_options(ss::test::pki_dir(), server.port()));
    e0.connect(l0, "c0");
    for (std::uint64_t k = 0; k < 3; ++k) ASSERT_TRUE(e0.train_step(l0, ss::test::batch_of(k)));
    e1.connect(l1, "c1");  // the cap: c0's session is saved at step 3 and dropped
    for (std::uint64_t k = 0; k < 3; ++k) ASSERT_TRUE(e1.train_step(l1, ss::test::batch_of(k)));
    EXPECT_EQ(cloud.evicted(), 1u);
    // c0 is still connected: its next step finds no session, it says Hello
    // again (its session comes back from the checkpoint, c1's goes) and goes on.
    EXPECT_FALSE(e0.train_step(l0, ss::test::batch_of(3)));
    EXPECT_EQ(e0.step(), 3u);
    ASSERT_TRUE(e0.train_step(l0, ss::test::batch_of(3)));
    EXPECT_EQ(cloud.evicted(), 2u);
    EXPECT_EQ(cloud.size(), 1u);
    EXPECT_EQ(cloud.shared()->steps(), 7u);
    server.stop();
    EXPECT_EQ(cloud.save_all(), 2u) << "the open session and the shared half";
    before = ss::weights_sha256(cloud.shared()->half());
  }
  ss::CloudSessions again(job, root + "/sessions", base, true);
  EXPECT_EQ(again.shared()->steps(), 7u);
  EXPECT_EQ(ss::weights_sha256(again.shared()->half()), before);
  fs::remove_all(root);
}

}  // namespace
