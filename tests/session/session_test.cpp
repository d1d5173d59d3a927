// Split sessions: the step protocol over real TLS equals the in-process run
// bit for bit, through faults at every phase of a step, restarts of either
// side, duplicates and bad messages.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <set>
#include <fstream>
#include <mutex>
#include <thread>

#include "seam/compression/codec.hpp"
#include "seam/session/links.hpp"
#include "seam/session/run.hpp"
#include "seam/transport/errors.hpp"
#include "session/session_test_util.hpp"

extern char** environ;

namespace {

namespace ss = seam::session;
namespace t = seam::training;
namespace st = seam::transport;
using ss::test::batch_of;

struct Params {
  t::NamedTensors edge, cloud;
};

Params snapshot(t::ModelHalf& edge, t::ModelHalf& cloud) {
  Params p;
  for (auto& [n, x] : edge.named_parameters()) p.edge.emplace_back(n, x.detach().clone());
  for (auto& [n, x] : cloud.named_parameters()) p.cloud.emplace_back(n, x.detach().clone());
  return p;
}

void expect_identical(const Params& a, const Params& b) {
  ASSERT_EQ(a.edge.size(), b.edge.size());
  ASSERT_EQ(a.cloud.size(), b.cloud.size());
  for (const auto* side : {&a.edge, &a.cloud}) {
    const auto& other = side == &a.edge ? b.edge : b.cloud;
    for (std::size_t i = 0; i < side->size(); ++i) {
      EXPECT_EQ((*side)[i].first, other[i].first);
      EXPECT_TRUE(torch::equal((*side)[i].second, other[i].second)) << "parameter " << (*side)[i].first << " differs";
    }
  }
}

const ss::PreparedJob& prepared(bool chain) {
  static std::map<bool, ss::PreparedJob> jobs;
  static std::mutex mu;
  std::lock_guard<std::mutex> l(mu);
  auto it = jobs.find(chain);
  if (it != jobs.end()) return it->second;
  auto dir = ss::test::temp_dir(chain ? "job_chain" : "job_none") + "/job";
  ss::prepare_job(ss::test::test_job(chain), dir);
  return jobs[chain] = ss::load_job(dir);
}

// The uninterrupted reference: both halves in this process.
Params reference(const ss::PreparedJob& job, std::uint64_t steps) {
  ss::CloudSession cloud(job, {});
  ss::EdgeSession edge(job, {});
  ss::InProcessLink link(cloud);
  edge.connect(link, "ref");
  while (edge.step() < steps) EXPECT_TRUE(edge.train_step(link, batch_of(edge.step())).has_value());
  return snapshot(edge.half(), cloud.half());
}

// An edge that checkpoints every `every` steps in ROOT/edge.
ss::SessionOptions edge_options(const std::string& root, std::uint64_t every) {
  ss::SessionOptions o;
  o.state_dir = root + "/edge";
  o.checkpoint_every = every;
  return o;
}

// Trains until `steps`, calling before(k) ahead of each attempt at step k.
template <class Before>
void train(ss::EdgeSession& edge, ss::SessionLink& link, std::uint64_t steps, Before before) {
  while (edge.step() < steps) {
    before(edge.step());
    edge.train_step(link, batch_of(edge.step()));
  }
}

Params cloud_params_of(ss::CloudSessions& sessions, ss::EdgeSession& edge) {
  auto key = std::string("CN=edge-1|edge|") + std::to_string(edge.nonce());
  auto s = sessions.find(key);
  if (!s) {
    ADD_FAILURE() << "no cloud session " << key;
    return {};
  }
  return snapshot(edge.half(), s->half());
}

// The folders this binary made under the temp directory go at exit.
struct RemoveTempDirs : ::testing::Environment {
  void TearDown() override {
    const std::string prefix = "seam_session_" + std::to_string(::getpid()) + "_";
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(std::filesystem::temp_directory_path(), ec))
      if (e.path().filename().string().rfind(prefix, 0) == 0) std::filesystem::remove_all(e.path(), ec);
  }
};
[[maybe_unused]] auto* const kRemoveTempDirs = ::testing::AddGlobalTestEnvironment(new RemoveTempDirs);

// ------------------------------------------------------------ a faulty TCP proxy

// Forwards bytes between the edge and the server, and cuts connections on
// command: now, or after N more bytes in one direction.
class Proxy {
 public:
  explicit Proxy(std::uint16_t target) : target_(target) {
    lfd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(lfd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(lfd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(lfd_, 16) != 0)
      throw std::runtime_error("proxy: cannot listen");
    socklen_t n = sizeof a;
    ::getsockname(lfd_, reinterpret_cast<sockaddr*>(&a), &n);
    port_ = ntohs(a.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~Proxy() {
    stop_ = true;
    ::shutdown(lfd_, SHUT_RDWR);
    ::close(lfd_);
    acceptor_.join();
    cut_all();
    for (auto& th : pumps_) th.join();
    std::lock_guard<std::mutex> l(mu_);
    for (int fd : fds_) ::close(fd);
  }
  std::uint16_t port() const { return port_; }
  void cut_all() {
    std::lock_guard<std::mutex> l(mu_);
    for (int fd : fds_) ::shutdown(fd, SHUT_RDWR);
    ++cuts_;
  }
  void cut_up_after(std::int64_t n) { up_budget_ = n; }
  void cut_down_after(std::int64_t n) { down_budget_ = n; }
  int cuts() const { return cuts_.load(); }

 private:
  void accept_loop() {
    while (!stop_) {
      int c = ::accept(lfd_, nullptr, nullptr);
      if (c < 0) return;
      int s = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      a.sin_port = htons(target_);
      if (::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(c);
        ::close(s);
        continue;
      }
      std::lock_guard<std::mutex> l(mu_);
      fds_.push_back(c);
      fds_.push_back(s);
      pumps_.emplace_back([this, c, s] { pump(c, s, up_budget_); });
      pumps_.emplace_back([this, c, s] { pump(s, c, down_budget_); });
    }
  }
  // Copies from -> to; when `budget` (armed >= 0) runs out mid-chunk, forwards
  // exactly the budget and cuts the connection.
  void pump(int from, int to, std::atomic<std::int64_t>& budget) {
    std::vector<char> buf(1 << 14);
    for (;;) {
      ssize_t n = ::read(from, buf.data(), buf.size());
      if (n <= 0) break;
      std::int64_t b = budget.load();
      std::size_t send = static_cast<std::size_t>(n);
      bool cut = false;
      if (b >= 0) {
        if (b < n) {
          send = static_cast<std::size_t>(b);
          cut = true;
          budget = -1;
        } else {
          budget = b - n;
        }
      }
      for (std::size_t off = 0; off < send;) {
        // MSG_NOSIGNAL: a peer that has closed must not kill the test with SIGPIPE.
        ssize_t w = ::send(to, buf.data() + off, send - off, MSG_NOSIGNAL);
        if (w <= 0) break;
        off += static_cast<std::size_t>(w);
      }
      if (cut) {
        ::shutdown(from, SHUT_RDWR);
        ::shutdown(to, SHUT_RDWR);
        ++cuts_;
        break;
      }
    }
    ::shutdown(to, SHUT_WR);
  }
  std::uint16_t target_, port_ = 0;
  int lfd_ = -1;
  std::atomic<bool> stop_{false};
  std::atomic<std::int64_t> up_budget_{-1}, down_budget_{-1};
  std::atomic<int> cuts_{0};
  std::mutex mu_;
  std::vector<int> fds_;
  std::vector<std::thread> pumps_;
  std::thread acceptor_;
};

// ------------------------------------------------------------ tests

class SessionOverTls : public ::testing::TestWithParam<bool> {};

TEST_P(SessionOverTls, NetworkEqualsInProcessBitForBit) {
  const auto& job = prepared(GetParam());
  const std::uint64_t steps = 6;
  auto ref = reference(job, steps);
  ss::test::CloudServer cloud(job, "");
  ss::EdgeSession edge(job, {});
  ss::TlsLink link(ss::test::client_options(ss::test::pki_dir(), cloud.server.port()));
  edge.connect(link, "edge");
  train(edge, link, steps, [](std::uint64_t) {});
  expect_identical(ref, cloud_params_of(cloud.sessions, edge));
  EXPECT_EQ(cloud.sessions.applied(), steps);
  EXPECT_GT(link.stats().bytes_up, 0u);
}

INSTANTIATE_TEST_SUITE_P(Codecs, SessionOverTls, ::testing::Values(false, true),
                         [](const auto& p) { return p.param ? std::string("SftDeltaQuant") : std::string("None"); });

TEST(SessionFaults, EveryPhaseOfAStepSeveralTimesGivesTheUninterruptedResult) {
  const auto& job = prepared(false);  // codec none: frames of ~35 KB, so a cut can land inside one
  const std::uint64_t steps = 10;
  auto ref = reference(job, steps);
  ss::test::CloudServer cloud(job, "");
  Proxy proxy(cloud.server.port());
  std::atomic<int> cut_after_apply{-1};
  cloud.sessions.on_create = [&](ss::CloudSession& s) {
    s.after_apply = [&](std::uint64_t step) {
      if (static_cast<int>(step) == cut_after_apply.load()) {
        cut_after_apply = -1;
        proxy.cut_all();  // the step is applied; its reply cannot leave
      }
    };
  };
  ss::EdgeSession edge(job, {});
  ss::TlsLink link(ss::test::client_options(ss::test::pki_dir(), proxy.port()));
  edge.connect(link, "edge");
  std::set<std::uint64_t> done;
  train(edge, link, steps, [&](std::uint64_t k) {
    if (!done.insert(k).second) return;
    switch (k) {
      case 1: case 6: proxy.cut_all(); break;               // before the send
      case 2: case 7: proxy.cut_up_after(8000); break;      // mid-upload
      case 3: case 8: cut_after_apply = static_cast<int>(k); break;  // applied, reply not sent
      case 4: case 9: proxy.cut_down_after(8000); break;    // mid-download
      default: break;
    }
  });
  EXPECT_GE(proxy.cuts(), 8);
  EXPECT_GE(link.client().reconnects(), 8u);
  EXPECT_EQ(cloud.sessions.applied(), steps) << "a step was applied twice";
  expect_identical(ref, cloud_params_of(cloud.sessions, edge));
}

TEST(SessionRestart, CloudRebuiltFromItsCheckpointsResumesBitForBit) {
  const auto& job = prepared(true);
  const std::uint64_t steps = 10;
  auto ref = reference(job, steps);
  auto root = ss::test::temp_dir("cloud_restart");
  auto cloud = std::make_unique<ss::test::CloudServer>(job, root + "/cloud");
  const auto port = cloud->server.port();
  auto eo = edge_options(root, 3);
  ss::EdgeSession edge(job, eo);
  ss::TlsLink link(ss::test::client_options(ss::test::pki_dir(), port));
  edge.connect(link, "edge");
  bool restarted = false;
  std::uint64_t rolled_back_to = 0;
  train(edge, link, steps, [&](std::uint64_t k) {
    if (k == 7 && !restarted) {  // the cloud checkpointed at 6 and applied step 6 since
      restarted = true;
      cloud.reset();
      cloud = std::make_unique<ss::test::CloudServer>(job, root + "/cloud", port);
    }
    if (restarted && rolled_back_to == 0 && k < 7) rolled_back_to = k;
  });
  EXPECT_EQ(rolled_back_to, 6u);
  expect_identical(ref, cloud_params_of(cloud->sessions, edge));
  EXPECT_EQ(cloud->sessions.applied(), 4u);  // steps 6..9 after the restart
}

TEST(SessionRestart, KilledCloudProcessResumesBitForBit) {
  const auto& job = prepared(true);
  const std::uint64_t steps = 8;  // a multiple of the checkpoint interval: both sides save the end state
  auto ref = reference(job, steps);
  auto root = ss::test::temp_dir("cloud_kill");
  const std::string exe = SEAM_SESSION_SERVER;
  auto spawn = [&](std::uint16_t port) {
    std::vector<std::string> args = {exe, job.dir, root + "/cloud", ss::test::pki_dir(), std::to_string(port)};
    std::string line;
    pid_t pid = ss::test::spawn_reading_first_line(args, line);
    EXPECT_EQ(line.rfind("listening ", 0), 0u) << "server said: " << line;
    return std::pair<pid_t, std::uint16_t>(pid, static_cast<std::uint16_t>(std::atoi(line.c_str() + 10)));
  };
  auto [pid, port] = spawn(0);
  ASSERT_GT(port, 0);
  auto eo = edge_options(root, 4);
  ss::EdgeSession edge(job, eo);
  ss::TlsLink link(ss::test::client_options(ss::test::pki_dir(), port));
  edge.connect(link, "edge");
  bool killed = false;
  std::uint64_t replayed_from = 0;
  train(edge, link, steps, [&](std::uint64_t k) {
    if (k == 6 && !killed) {  // the cloud checkpointed at 4 and applied 4 and 5 since
      killed = true;
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
      pid = spawn(port).first;
    }
    if (killed && replayed_from == 0 && k < 6) replayed_from = k;
  });
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  EXPECT_EQ(replayed_from, 4u);
  // The cloud half lives in the other process: its checkpoint of the last
  // step, loaded here, must equal the reference's cloud half.
  const std::string key = "CN=edge-1|edge|" + std::to_string(edge.nonce());
  ss::SessionOptions co;
  co.state_dir = root + "/cloud/" + ss::sha256_hex(key).substr(0, 24);
  ss::CloudSession saved(job, co);
  EXPECT_EQ(saved.next_step(), steps);
  expect_identical(ref, snapshot(edge.half(), saved.half()));
}

TEST(SessionRestart, EdgeRestartedFromItsCheckpointResumesBitForBit) {
  const auto& job = prepared(true);
  const std::uint64_t steps = 10;
  auto ref = reference(job, steps);
  auto root = ss::test::temp_dir("edge_restart");
  ss::test::CloudServer cloud(job, root + "/cloud");
  auto eo = edge_options(root, 3);
  std::uint64_t nonce = 0;
  {
    ss::EdgeSession edge(job, eo);
    nonce = edge.nonce();
    ss::TlsLink link(ss::test::client_options(ss::test::pki_dir(), cloud.server.port()));
    edge.connect(link, "edge");
    train(edge, link, 8, [](std::uint64_t) {});
    EXPECT_EQ(edge.checkpoints(), (std::vector<std::uint64_t>{0, 3, 6}));
  }  // the edge process "dies" at step 8; its newest checkpoint is step 6
  ss::EdgeSession edge(job, eo);
  EXPECT_EQ(edge.nonce(), nonce);
  EXPECT_EQ(edge.step(), 6u);
  ss::TlsLink link(ss::test::client_options(ss::test::pki_dir(), cloud.server.port()));
  EXPECT_EQ(edge.connect(link, "edge"), 6u);  // the cloud, at 8, rolled back to its checkpoint of 6
  train(edge, link, steps, [](std::uint64_t) {});
  expect_identical(ref, cloud_params_of(cloud.sessions, edge));
}

// Saves at eviction or shutdown (save_now) are uncoordinated: the edge has no
// checkpoint of their step. With keep-checkpoints 2 and two such saves, the
// coordinated checkpoints an edge can roll back to survive, and a cloud
// rebuilt from its folder (it loads the newest save) resumes bit for bit
// both with an edge that restarted from its checkpoint (behind the cloud) and
// with an edge that trained on past the save (ahead of it).
TEST(SessionRestart, UncoordinatedSavesNeverPushOutTheCheckpointAnEdgeNeeds) {
  const auto& job = prepared(true);
  const std::uint64_t steps = 11;
  auto ref = reference(job, steps);
  for (const bool edge_restarts : {true, false}) {
    SCOPED_TRACE(edge_restarts ? "the edge restarts from its checkpoint" : "the edge trains on past the save");
    auto root = ss::test::temp_dir(edge_restarts ? "uncoord_behind" : "uncoord_ahead");
    ss::SessionOptions co;
    co.state_dir = root + "/cloud";
    co.keep_checkpoints = 2;
    auto eo = edge_options(root, 5);
    auto cloud = std::make_unique<ss::CloudSession>(job, co);
    auto edge = std::make_unique<ss::EdgeSession>(job, eo);
    {
      ss::InProcessLink link(*cloud);
      edge->connect(link, "edge");
      train(*edge, link, 6, [](std::uint64_t) {});  // coordinated: 0, 5
      EXPECT_FALSE(cloud->save_now().empty());       // step 6, as at an eviction
      train(*edge, link, 7, [](std::uint64_t) {});
      EXPECT_FALSE(cloud->save_now().empty());  // step 7, as at SIGTERM
      if (!edge_restarts) train(*edge, link, 8, [](std::uint64_t) {});  // the cloud then loses step 7
    }
    std::vector<std::uint64_t> kept;
    for (const auto& e : std::filesystem::directory_iterator(co.state_dir))
      if (e.path().filename().string().rfind("step-", 0) == 0) kept.push_back(std::stoull(e.path().filename().string().substr(5)));
    std::sort(kept.begin(), kept.end());
    EXPECT_EQ(kept, (std::vector<std::uint64_t>{0, 5, 7}));  // 2 coordinated + the newest other one
    cloud = std::make_unique<ss::CloudSession>(job, co);  // restarted: loads step 7
    EXPECT_EQ(cloud->next_step(), 7u);
    if (edge_restarts) edge = std::make_unique<ss::EdgeSession>(job, eo);  // back at its checkpoint of 5
    EXPECT_EQ(edge->step(), edge_restarts ? 5u : 8u);
    ss::InProcessLink link(*cloud);
    EXPECT_EQ(edge->connect(link, "edge"), 5u);  // both go back to the coordinated checkpoint of 5
    // The save of 7 belonged to the abandoned run: gone, so that it cannot
    // outrank the replay's own saves.
    EXPECT_FALSE(std::filesystem::exists(co.state_dir + "/step-00000000000000000007"));
    train(*edge, link, steps, [](std::uint64_t) {});
    expect_identical(ref, snapshot(edge->half(), cloud->half()));
  }
}

TEST(SessionSteps, ADuplicateWhileInFlightGetsTheSameReplyAndTheStepIsAppliedOnce) {
  const auto& job = prepared(false);
  ss::CloudSession cloud(job, {});
  ss::EdgeSession edge(job, {});
  ss::InProcessLink link(cloud);
  edge.connect(link, "dup");
  // Build step 0's forward frame as the edge would.
  auto b = batch_of(0);
  auto a = edge.half().forward(b.x, t::BatchContext{{}, ss::test::kBatch});
  seam::compression::CodecContext ctx(job.spec.half.seed);
  t::StepRequest req;
  req.step = 0;
  req.sample_ids = b.ids;
  req.labels = b.labels;
  req.activations = seam::compression::make_codec("none")->encode(a.detach(), ctx);
  const st::Message fw = ss::forward_message(req, ss::step_spec(job.spec.model, job.spec.half));

  std::atomic<bool> release{false};
  cloud.after_apply = [&](std::uint64_t) {
    for (int i = 0; i < 20000 && !release; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  };
  st::Message first, second;
  std::thread t1([&] { first = cloud.handle(fw); });
  ASSERT_TRUE([&] {
    for (int i = 0; i < 20000; ++i) {
      if (cloud.applied() == 1) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return false;
  }()) << "the first request never reached the step";
  std::thread t2([&] { second = cloud.handle(fw); });
  bool waited = false;
  for (int i = 0; i < 20000 && !waited; ++i) {
    waited = cloud.waiters() == 1;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  release = true;
  t1.join();
  t2.join();
  EXPECT_TRUE(waited) << "the duplicate did not wait for the step in flight";
  ASSERT_TRUE(first.as<st::Backward>()) << (first.as<st::ErrorInfo>() ? first.as<st::ErrorInfo>()->text : "");
  ASSERT_TRUE(second.as<st::Backward>());
  EXPECT_EQ(first.as<st::Backward>()->loss, second.as<st::Backward>()->loss);
  EXPECT_EQ(first.sections.at(0).bytes, second.sections.at(0).bytes);
  EXPECT_EQ(cloud.applied(), 1u);
  EXPECT_EQ(cloud.replayed(), 1u);
  // A third repeat after the fact is answered from the saved reply too.
  auto third = cloud.handle(fw);
  EXPECT_EQ(third.sections.at(0).bytes, first.sections.at(0).bytes);
  EXPECT_EQ(cloud.applied(), 1u);
}

// Error text of a refused request sent through a raw transport client.
std::string refusal(st::Client& c, st::Message m, std::uint32_t want_code) {
  try {
    c.request(std::move(m));
  } catch (const st::TransportError& e) {
    EXPECT_EQ(e.peer_code(), want_code) << e.what();
    return e.peer_text();
  }
  ADD_FAILURE() << "request was not refused";
  return "";
}

TEST(SessionSteps, BadStepMessagesAreRefusedByFieldWhileAnotherSessionTrainsOn) {
  const auto& job = prepared(false);
  const std::uint64_t steps = 4;
  auto ref = reference(job, steps);
  ss::test::CloudServer cloud(job, "");
  // A good session trains two steps, the bad client sends its messages, the good one trains on.
  ss::EdgeSession good(job, {});
  ss::TlsLink good_link(ss::test::client_options(ss::test::pki_dir(), cloud.server.port()));
  good.connect(good_link, "edge");
  train(good, good_link, 2, [](std::uint64_t) {});

  ss::EdgeSession bad_edge(job, {});
  st::Client bad(ss::test::client_options(ss::test::pki_dir(), cloud.server.port()));
  bad.connect(bad_edge.hello("bad"));
  auto b = batch_of(0);
  auto a = bad_edge.half().forward(b.x, t::BatchContext{{}, ss::test::kBatch});
  seam::compression::CodecContext ctx(0);
  t::StepRequest req;
  req.sample_ids = b.ids;
  req.labels = b.labels;
  req.activations = seam::compression::make_codec("none")->encode(a.detach(), ctx);
  const auto bad_field = static_cast<std::uint32_t>(ss::SessionErrc::bad_field);
  const auto spec = ss::step_spec(job.spec.model, job.spec.half);  // codec 'none': no ids travel
  auto with_ids = spec;
  with_ids.send_ids = true;

  auto r = req;
  r.labels = b.labels.unsqueeze(1).repeat({1, 2});
  auto why = refusal(bad, ss::forward_message(r, spec), bad_field);
  EXPECT_NE(why.find("field 'labels': shape [16, 2], expected [16] (one per sample)"), std::string::npos) << why;

  why = refusal(bad, ss::forward_message(req, with_ids), bad_field);
  EXPECT_NE(why.find("field 'sample_ids': sent, but the codec 'none' needs none"), std::string::npos) << why;

  r = req;
  r.activations = seam::compression::make_codec("quant:bits=8")->encode(a.detach(), ctx);
  why = refusal(bad, ss::forward_message(r, spec), bad_field);
  EXPECT_NE(why.find("field 'activations': codec 'quant:bits=8"), std::string::npos) << why;
  EXPECT_NE(why.find("is not the negotiated 'none'"), std::string::npos) << why;

  r = req;
  r.step = 5;
  why = refusal(bad, ss::forward_message(r, spec), static_cast<std::uint32_t>(ss::SessionErrc::step_order));
  EXPECT_NE(why.find("step 5 refused: the cloud expects step 0 (a step from the future)"), std::string::npos) << why;

  auto m = ss::forward_message(req, spec);
  m.sections.clear();
  why = refusal(bad, m, bad_field);
  EXPECT_NE(why.find("field 'activations': missing section"), std::string::npos) << why;

  // Duplicate ids never pass the transport's gate (which then closes the
  // connection; the client reconnects for the next request).
  r = req;
  r.sample_ids[1] = r.sample_ids[0];
  why = refusal(bad, ss::forward_message(r, with_ids), static_cast<std::uint32_t>(st::Errc::malformed_metadata));
  EXPECT_NE(why.find("forward: sample id 0 appears twice in one batch"), std::string::npos) << why;

  r = req;
  r.labels = b.labels.clone();
  r.labels[3] = 10;
  why = refusal(bad, ss::forward_message(r, spec), bad_field);
  EXPECT_NE(why.find("field 'labels': value 10 out of range [0, 10)"), std::string::npos) << why;

  // A mask that is not 0/1 cannot even be sent.
  r = req;
  r.attention_mask = torch::full({ss::test::kBatch, 4}, 2, torch::kLong);
  try {
    ss::forward_message(r, spec);
    ADD_FAILURE() << "a mask of 2s was sent";
  } catch (const ss::SessionError& e) {
    EXPECT_NE(std::string(e.what()).find("field 'attention_mask': values other than 0 and 1"), std::string::npos) << e.what();
  }

  // None of it was applied: the good session ends equal to the reference.
  train(good, good_link, steps, [](std::uint64_t) {});
  EXPECT_EQ(cloud.sessions.size(), 2u);
  expect_identical(ref, cloud_params_of(cloud.sessions, good));
  EXPECT_EQ(cloud.sessions.applied(), steps);
}

TEST(SessionJob, AMismatchedJobIsRefusedNamingTheField) {
  const auto& job = prepared(false);
  auto other = ss::test::test_job(false);
  other.model.seed = 8;  // other initial weights and C3 keys
  auto dir = ss::test::temp_dir("job_other") + "/job";
  ss::prepare_job(other, dir);
  auto other_job = ss::load_job(dir);
  ss::CloudSession cloud(job, {});
  ss::EdgeSession edge(other_job, {});
  ss::InProcessLink link(cloud);
  try {
    edge.connect(link, "x");
    FAIL() << "hello was accepted";
  } catch (const ss::SessionError& e) {
    EXPECT_EQ(e.code(), ss::SessionErrc::job_mismatch);
    EXPECT_NE(std::string(e.what()).find("field 'model.seed' differs: here '7', peer '8'"), std::string::npos) << e.what();
  }
  // Through the registry, such a Hello creates no session at all.
  ss::CloudSessions sessions(job, ss::test::temp_dir("job_other_root"));
  st::PeerInfo peer;
  peer.session_key = "CN=x|x|1";
  st::Message hm;
  hm.body = edge.hello("x");
  auto r = sessions.handle(peer, std::move(hm));
  ASSERT_TRUE(r.as<st::ErrorInfo>());
  EXPECT_EQ(r.as<st::ErrorInfo>()->code, static_cast<std::uint32_t>(ss::SessionErrc::job_mismatch));
  EXPECT_EQ(sessions.size(), 0u);
}

TEST(SessionJob, ThePreparedFilesAreCheckedAgainstTheManifest) {
  auto dir = ss::test::temp_dir("job_tamper") + "/job";
  ss::prepare_job(ss::test::test_job(true), dir);
  EXPECT_NO_THROW(ss::load_job(dir));
  {
    std::ofstream f(dir + "/cloud_init.pt", std::ios::app | std::ios::binary);
    f << "x";
  }
  try {
    ss::load_job(dir);
    FAIL() << "a changed file was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("cloud_init.pt' does not match its manifest hash"), std::string::npos) << e.what();
  }
  try {
    ss::prepare_job(ss::test::test_job(true), dir);
    FAIL() << "an existing job was overwritten";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("exists"), std::string::npos);
  }
}

TEST(SessionJob, TheEdgeFingerprintNeedsOnlyTheEdgeFilesAndCoversSeedAndCodecs) {
  const auto& job = prepared(true);
  // The fields name the seed, the canonical codec specs and the edge weights' hash.
  EXPECT_NE(job.fields.find("model.seed=7\n"), std::string::npos);
  EXPECT_NE(job.fields.find("codec_seed=11\n"), std::string::npos);
  EXPECT_NE(job.fields.find("up_codec=delta:bits=4"), std::string::npos);
  EXPECT_NE(job.fields.find("edge_weights_sha256=" + job.edge_weights_sha256), std::string::npos);
  ss::EdgeSession edge(job, {});
  EXPECT_EQ(edge.hello("e").job_fingerprint, ss::sha256_hex(job.fields));
  EXPECT_EQ(ss::weights_sha256(edge.half()), job.edge_weights_sha256);
}

TEST(SessionJob, ImpossibleCompositionsAreRefusedWithTheReason) {
  auto msg = [](ss::JobSpec j) {
    try {
      ss::check_job(j);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  auto j = ss::test::test_job(false);
  j.model.c3_groups = 4;
  j.half.up_codec = "delta:bits=4";
  EXPECT_NE(msg(j).find("uses delta after C3"), std::string::npos) << msg(j);
  j.half.up_codec = "quant:bits=4";
  EXPECT_EQ(msg(j), "accepted");
  j = ss::test::test_job(false);
  j.model.kind = "cnn";
  j.model.sft_rank = 4;
  EXPECT_NE(msg(j).find("sft_rank needs a transformer"), std::string::npos) << msg(j);
  j = ss::test::test_job(false);
  j.half.down_codec = "delta:bits=8";
  EXPECT_NE(msg(j).find("down codec 'delta"), std::string::npos) << msg(j);
  j = ss::test::test_job(false);
  j.half.up_codec = "qaunt";
  EXPECT_NE(msg(j).find("unknown codec stage 'qaunt'"), std::string::npos) << msg(j);
}

TEST(SessionState, TempFoldersOfACrashedWriterAreSweptAndNeverLoaded) {
  const auto& job = prepared(false);
  auto root = ss::test::temp_dir("sweep");
  const auto junk = root + "/cloud/.tmp-step-00000000000000000003-12345";
  std::filesystem::create_directories(junk);
  ss::SessionOptions o;
  o.state_dir = root + "/cloud";
  ss::CloudSession cloud(job, o);
  EXPECT_EQ(cloud.next_step(), 0u);
  EXPECT_FALSE(std::filesystem::exists(junk));
}

TEST(SessionState, ModelsDoNotDependOnTheGlobalGenerator) {
  auto c = ss::test::test_job(true).model;
  torch::manual_seed(1);
  auto a = t::build_split_model(c);
  torch::manual_seed(2);
  auto b = t::build_split_model(c);
  expect_identical(snapshot(a.edge, a.cloud), snapshot(b.edge, b.cloud));
}

}  // namespace

namespace {

TEST(SessionSteps, AStepThatFailsAfterChangingStateIsNeverAppliedOnTopUntilARollback) {
  const auto& job = prepared(false);
  auto root = ss::test::temp_dir("dirty");
  ss::SessionOptions co;
  co.state_dir = root + "/cloud";
  ss::CloudSession cloud(job, co);
  ss::EdgeSession edge(job, edge_options(root, 2));
  ss::InProcessLink link(cloud);
  edge.connect(link, "e");
  // NaN activations pass validation (codec none), then the loss is not finite.
  auto b = batch_of(0);
  t::StepRequest req;
  req.sample_ids = b.ids;
  req.labels = b.labels;
  seam::compression::CodecContext ctx(0);
  req.activations = seam::compression::make_codec("none")->encode(torch::full({ss::test::kBatch, 17, 32}, NAN), ctx);
  auto r = cloud.handle(ss::forward_message(req, ss::step_spec(job.spec.model, job.spec.half)));
  ASSERT_TRUE(r.as<st::ErrorInfo>());
  EXPECT_EQ(r.as<st::ErrorInfo>()->code, static_cast<std::uint32_t>(ss::SessionErrc::handler_failed));
  EXPECT_NE(r.as<st::ErrorInfo>()->text.find("loss is not finite"), std::string::npos) << r.as<st::ErrorInfo>()->text;
  // Even a valid step 0 is now refused until a Hello rolls the cloud back.
  try {
    auto m = edge.train_step(link, batch_of(0));
    EXPECT_FALSE(m.has_value()) << "the refused step should make the edge reconnect and roll back";
  } catch (const std::exception& e) {
    ADD_FAILURE() << e.what();
  }
  EXPECT_EQ(edge.step(), 0u);
  while (edge.step() < 4) edge.train_step(link, batch_of(edge.step()));
  auto ref = reference(job, 4);
  expect_identical(ref, snapshot(edge.half(), cloud.half()));
}

}  // namespace
