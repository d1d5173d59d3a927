#include <gtest/gtest.h>

#include "seam/edge_client/options.hpp"

TEST(EdgeOptions, DefaultsAreValid) { EXPECT_TRUE(seam::edge::validate({}).empty()); }

TEST(EdgeOptions, ReportsEveryProblem) {
  seam::edge::EdgeOptions o;
  o.server_port = 0;
  o.threads = -2;
  o.cert_file = "client.pem";  // key missing
  auto errors = seam::edge::validate(o);
  ASSERT_EQ(errors.size(), 3u);
  EXPECT_NE(errors[2].find("together"), std::string::npos);
}
