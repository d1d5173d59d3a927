#include <gtest/gtest.h>

#include "seam/edge_client/options.hpp"

namespace se = seam::edge;

namespace {
const char* kGood =
    "# an app's edge config\n"
    "server = 10.0.0.2:7443\nca = ca.pem\ncert = edge.pem\nkey = edge.key\njob = fmnist-vit\n"
    "state-dir = /data/seam\ncheckpoint-every = 50\n";

std::string refusal(const std::string& text) {
  try {
    se::options_from_text(text);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST(EdgeOptions, ConfigTextFillsTheOptions) {
  auto o = se::options_from_text(kGood);
  EXPECT_EQ(o.host(), "10.0.0.2");
  EXPECT_EQ(o.port(), 7443);
  EXPECT_EQ(o.job, "fmnist-vit");
  EXPECT_EQ(o.checkpoint_every, 50u);
  EXPECT_EQ(o.resolved_job_dir(), "/data/seam/job");
  EXPECT_EQ(o.client_id, "edge");
}

TEST(EdgeOptions, RefusalsNameTheKey) {
  EXPECT_NE(refusal(std::string(kGood) + "colour = blue\n").find("unrecognised option 'colour'"), std::string::npos);
  EXPECT_NE(refusal(std::string(kGood) + "max-attempts = many\n").find("max-attempts"), std::string::npos);
  EXPECT_NE(refusal("server = host-without-port\n").find("server 'host-without-port' must be HOST:PORT"), std::string::npos);
  auto all = refusal("server = 127.0.0.1:70000\n");
  EXPECT_NE(all.find("port 1..65535"), std::string::npos) << all;
  EXPECT_NE(all.find("ca is required"), std::string::npos) << all;
  EXPECT_NE(all.find("job is required"), std::string::npos) << all;
  EXPECT_NE(refusal("server = a:1\nca = c\ncert = c\nkey = k\njob = j\njob-dir = d\ncheckpoint-every = 5\n")
                .find("checkpoint-every needs a state-dir"),
            std::string::npos);
}
