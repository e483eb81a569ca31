#!/bin/sh
# Regenerates the TEST-ONLY certificates and keys of this directory (see README.md). Never use
# them outside tests: their private keys are public.
set -eu
cd "$(dirname "$0")"
days=36500  # 100 years
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# The test CA, and a second one that signed nothing the server trusts.
key ca.key
openssl req -x509 -new -key ca.key -days "$days" -subj "/CN=Pagoda test CA" -out ca.pem
key other_ca.key
openssl req -x509 -new -key other_ca.key -days "$days" -subj "/CN=Pagoda other test CA" \
  -out other_ca.pem

# leaf NAME CA SUBJECT EXTENSIONS
leaf() {
  key "$1.key"
  openssl req -new -key "$1.key" -subj "$3" -out "$1.csr"
  printf '%s\n' "$4" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial -days "$days" \
    -extfile "$1.ext" -out "$1.pem" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
leaf server ca "/CN=localhost" \
  "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1
extendedKeyUsage=serverAuth"
leaf client ca "/CN=pagoda-test-client" "extendedKeyUsage=clientAuth"
leaf other_client other_ca "/CN=pagoda-other-test-client" "extendedKeyUsage=clientAuth"
rm -f ca.srl other_ca.srl ca.key other_ca.key
