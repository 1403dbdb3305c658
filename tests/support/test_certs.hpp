#pragma once
// Certificates for the TLS end-to-end tests, generated once per test process
// with the `openssl` CLI into a temporary directory (removed at exit), so no
// key material is checked in and nothing expires between runs.
//
// All leaf certificates except `self_signed` are signed by `ca_cert`; a client
// that trusts only `ca_cert` must accept `server` for "localhost"/127.0.0.1,
// reject `wrong_host` on hostname verification, and reject `self_signed` on
// chain verification.

#include <string>

namespace sluice::test {

struct CertPair {
    std::string cert;  // PEM file path
    std::string key;   // PEM file path (unencrypted)
};

struct TestCerts {
    std::string dir;
    std::string ca_cert;   // the test CA (PEM), for tls.ca_file
    CertPair server;       // CN localhost, SAN DNS:localhost, IP:127.0.0.1; signed by the CA
    CertPair wrong_host;   // CN/SAN wrong.example; signed by the same CA
    CertPair self_signed;  // CN/SAN localhost + 127.0.0.1, self-signed: not trusted by the CA
};

// Generates on first use (throws std::runtime_error with openssl's output on failure).
const TestCerts& test_certs();

}  // namespace sluice::test
