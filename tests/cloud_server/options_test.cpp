#include <gtest/gtest.h>

#include "seam/cloud_server/options.hpp"

TEST(ServerOptions, TlsMaterialIsRequired) {
  auto errors = seam::cloud::validate({});
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("TLS"), std::string::npos);
}

TEST(ServerOptions, ValidWithCertificate) {
  seam::cloud::ServerOptions o;
  o.cert_file = "server.pem";
  o.key_file = "server.key";
  EXPECT_TRUE(seam::cloud::validate(o).empty());
  o.max_sessions = 0;
  EXPECT_EQ(seam::cloud::validate(o).size(), 1u);
}
