#pragma once

// The PEM files of --tls-cert-file, --tls-key-file and --tls-client-ca-file, read and checked
// at start-up so that a bad file is an error naming its flag rather than a gRPC listener that
// silently fails to start. Holds no gRPC types (server/pagoda_server.cc builds the
// credentials). Pure functions; thread-safe.

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace pagoda::server {

struct TlsFilePaths {
  std::string cert_file;  // PEM certificate chain, the server's own certificate first
  std::string key_file;   // PEM private key of that certificate
  std::optional<std::string> client_ca_file;  // PEM CA certificates; set: clients need a cert
};

struct TlsFiles {
  std::string cert_chain_pem;
  std::string private_key_pem;
  std::optional<std::string> client_ca_pem;
  // Of the server's certificate, for the start-up log.
  std::string subject;
  absl::Time not_after;
};

// Reads and checks the files: each is readable PEM, the certificate and CA files hold
// certificates, the key is a private key that matches the (first) certificate.
// InvalidArgument naming the offending flag otherwise. An expired certificate is not an error
// here (the log says so): clients refuse it with a clear message of their own.
absl::StatusOr<TlsFiles> LoadTlsFiles(const TlsFilePaths& paths);

}  // namespace pagoda::server
