#!/bin/sh
# Regenerates the PKCS#12 files the token tests use (OpenSSL 3). Run from this directory.
# Nothing here protects anything: the keys are test keys, published on purpose.
set -eu
days=36500
subj_rsa="/CN=nmi-test-sp"
openssl req -x509 -newkey rsa:2048 -nodes -keyout rsa_key.pem -out rsa_cert.pem -days "$days" \
  -subj "$subj_rsa" 2>/dev/null
# Modern PKCS#12 (AES-256-CBC, PBKDF2, SHA-256 MAC), password "test-password".
openssl pkcs12 -export -inkey rsa_key.pem -in rsa_cert.pem -out rsa.pfx -passout pass:test-password
# Legacy PKCS#12 (RC2-40-CBC certificates, 3DES key, SHA-1 MAC): needs OpenSSL's legacy provider.
openssl pkcs12 -export -legacy -inkey rsa_key.pem -in rsa_cert.pem -out rsa_legacy.pfx \
  -passout pass:test-password
# No password.
openssl pkcs12 -export -inkey rsa_key.pem -in rsa_cert.pem -out rsa_nopass.pfx -passout pass:
# An EC (P-256) key: not usable for RS256.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ec_key.pem \
  -out ec_cert.pem -days "$days" -subj "/CN=nmi-test-ec" 2>/dev/null
openssl pkcs12 -export -inkey ec_key.pem -in ec_cert.pem -out ec.pfx -passout pass:test-password
rm -f rsa_key.pem ec_key.pem ec_cert.pem
