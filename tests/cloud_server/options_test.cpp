#include <gtest/gtest.h>

#include "seam/cloud_server/options.hpp"

TEST(ServiceOptions, MutualTlsMaterialIsRequiredAndNamedByFlag) {
  auto errors = seam::cloud::validate({});
  ASSERT_EQ(errors.size(), 3u);
  EXPECT_NE(errors[0].find("--cert is required"), std::string::npos) << errors[0];
  EXPECT_NE(errors[1].find("--key is required"), std::string::npos) << errors[1];
  EXPECT_NE(errors[2].find("--client-ca is required"), std::string::npos) << errors[2];
}

TEST(ServiceOptions, ValidWithCertificatesAndRefusesPlaintext) {
  seam::cloud::ServiceOptions o;
  o.server.tls.cert_file = "server.pem";
  o.server.tls.key_file = "server.key";
  o.server.tls.ca_file = "ca.pem";
  EXPECT_TRUE(seam::cloud::validate(o).empty());
  o.server.max_connections = 0;
  ASSERT_EQ(seam::cloud::validate(o).size(), 1u);
  EXPECT_NE(seam::cloud::validate(o)[0].find("--max-connections"), std::string::npos);
  o.server.max_connections = 4;
  o.server.tls.insecure_plaintext = true;
  ASSERT_EQ(seam::cloud::validate(o).size(), 1u);
  EXPECT_NE(seam::cloud::validate(o)[0].find("plaintext"), std::string::npos);
}
