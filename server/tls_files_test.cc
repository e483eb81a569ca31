#include "server/tls_files.h"

#include <string>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pagoda::server {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

std::string TestFile(const std::string& name) {
  return std::string(PAGODA_SERVER_TESTDATA) + "/" + name;
}

TEST(TlsFilesTest, LoadsAMatchingPair) {
  const absl::StatusOr<TlsFiles> files =
      LoadTlsFiles({.cert_file = TestFile("server.pem"), .key_file = TestFile("server.key")});
  ASSERT_TRUE(files.ok()) << files.status();
  EXPECT_THAT(files->cert_chain_pem, StartsWith("-----BEGIN CERTIFICATE-----"));
  EXPECT_THAT(files->private_key_pem, HasSubstr("PRIVATE KEY-----"));
  EXPECT_FALSE(files->client_ca_pem.has_value());
  EXPECT_THAT(files->subject, HasSubstr("CN=localhost"));
  EXPECT_GT(files->not_after, absl::Now() + absl::Hours(24 * 365 * 50));

  const absl::StatusOr<TlsFiles> mtls = LoadTlsFiles({.cert_file = TestFile("server.pem"),
                                                      .key_file = TestFile("server.key"),
                                                      .client_ca_file = TestFile("ca.pem")});
  ASSERT_TRUE(mtls.ok()) << mtls.status();
  EXPECT_THAT(mtls->client_ca_pem.value_or(""), StartsWith("-----BEGIN CERTIFICATE-----"));
}

TEST(TlsFilesTest, ErrorsNameTheFlag) {
  struct Case {
    TlsFilePaths paths;
    std::string error_start;
  };
  const Case cases[] = {
      {{.cert_file = "/nonexistent.pem", .key_file = TestFile("server.key")},
       "--tls-cert-file: '/nonexistent.pem' cannot be read"},
      {{.cert_file = TestFile("server.pem"), .key_file = "/nonexistent.key"},
       "--tls-key-file: '/nonexistent.key' cannot be read"},
      {{.cert_file = TestFile("server.key"), .key_file = TestFile("server.key")},
       "--tls-cert-file: "},  // a key is no certificate
      {{.cert_file = TestFile("server.pem"), .key_file = TestFile("server.pem")},
       "--tls-key-file: "},  // a certificate is no key
      {{.cert_file = TestFile("server.pem"), .key_file = TestFile("client.key")},
       "--tls-key-file: "},  // the key of another certificate
      {{.cert_file = TestFile("server.pem"),
        .key_file = TestFile("server.key"),
        .client_ca_file = "/nonexistent-ca.pem"},
       "--tls-client-ca-file: '/nonexistent-ca.pem' cannot be read"},
      {{.cert_file = TestFile("server.pem"),
        .key_file = TestFile("server.key"),
        .client_ca_file = TestFile("README.md")},
       "--tls-client-ca-file: "},
  };
  for (const Case& c : cases) {
    const absl::StatusOr<TlsFiles> files = LoadTlsFiles(c.paths);
    ASSERT_FALSE(files.ok()) << c.error_start;
    EXPECT_EQ(files.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(files.status().message()), StartsWith(c.error_start)) << files.status();
  }
  const absl::StatusOr<TlsFiles> mismatch =
      LoadTlsFiles({.cert_file = TestFile("server.pem"), .key_file = TestFile("client.key")});
  EXPECT_THAT(std::string(mismatch.status().message()),
              HasSubstr("does not match the certificate"));
}

}  // namespace
}  // namespace pagoda::server
