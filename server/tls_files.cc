#include "server/tls_files.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <fstream>
#include <memory>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace pagoda::server {
namespace {

struct BioFree {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
struct X509Free {
  void operator()(X509* x509) const { X509_free(x509); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

absl::Status FlagError(absl::string_view flag, const std::string& path, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("--", flag, ": '", path, "' ", what));
}

absl::StatusOr<std::string> ReadFile(absl::string_view flag, const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return FlagError(flag, path, "cannot be read");
  std::stringstream contents;
  contents << file.rdbuf();
  if (file.bad()) return FlagError(flag, path, "cannot be read");
  return contents.str();
}

BioPtr MemoryBio(const std::string& pem) {
  return BioPtr(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

// The PEM certificates in `pem`, the first one returned; an error when there is none.
absl::StatusOr<X509Ptr> FirstCertificate(absl::string_view flag, const std::string& path,
                                         const std::string& pem) {
  BioPtr bio = MemoryBio(pem);
  X509Ptr first(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  ERR_clear_error();
  if (first == nullptr) return FlagError(flag, path, "holds no PEM certificate");
  return first;
}

absl::Time NotAfter(const X509* cert) {
  struct tm tm = {};
  if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) != 1) return absl::InfinitePast();
  return absl::FromTM(tm, absl::UTCTimeZone());
}

}  // namespace

absl::StatusOr<TlsFiles> LoadTlsFiles(const TlsFilePaths& paths) {
  TlsFiles files;
  absl::StatusOr<std::string> cert = ReadFile("tls-cert-file", paths.cert_file);
  if (!cert.ok()) return cert.status();
  files.cert_chain_pem = *std::move(cert);
  absl::StatusOr<std::string> key = ReadFile("tls-key-file", paths.key_file);
  if (!key.ok()) return key.status();
  files.private_key_pem = *std::move(key);

  absl::StatusOr<X509Ptr> leaf =
      FirstCertificate("tls-cert-file", paths.cert_file, files.cert_chain_pem);
  if (!leaf.ok()) return leaf.status();
  BioPtr key_bio = MemoryBio(files.private_key_pem);
  PkeyPtr pkey(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
  ERR_clear_error();
  if (pkey == nullptr) {
    return FlagError("tls-key-file", paths.key_file, "holds no unencrypted PEM private key");
  }
  if (X509_check_private_key(leaf->get(), pkey.get()) != 1) {
    ERR_clear_error();
    return FlagError(
        "tls-key-file", paths.key_file,
        absl::StrCat("does not match the certificate of --tls-cert-file '", paths.cert_file, "'"));
  }
  char subject[256] = {};
  X509_NAME_oneline(X509_get_subject_name(leaf->get()), subject, sizeof(subject));
  files.subject = subject;
  files.not_after = NotAfter(leaf->get());

  if (paths.client_ca_file.has_value()) {
    absl::StatusOr<std::string> ca = ReadFile("tls-client-ca-file", *paths.client_ca_file);
    if (!ca.ok()) return ca.status();
    absl::StatusOr<X509Ptr> ca_cert =
        FirstCertificate("tls-client-ca-file", *paths.client_ca_file, *ca);
    if (!ca_cert.ok()) return ca_cert.status();
    files.client_ca_pem = *std::move(ca);
  }
  return files;
}

}  // namespace pagoda::server
