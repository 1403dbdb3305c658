#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <sys/wait.h>

#include "support/test_certs.hpp"

namespace sluice::test {
namespace {

// Runs a shell command, throwing with its combined output when it fails.
void run_or_throw(const std::string& command) {
    const std::string full = command + " 2>&1";
    std::unique_ptr<FILE, int (*)(FILE*)> pipe(::popen(full.c_str(), "r"), ::pclose);
    if (!pipe) throw std::runtime_error("popen failed: " + command);
    std::string output;
    char buffer[512];
    while (const auto n = std::fread(buffer, 1, sizeof buffer, pipe.get())) output.append(buffer, n);
    const int status = ::pclose(pipe.release());
    if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        throw std::runtime_error("command failed: " + command + "\n" + output);
    }
}

void write_file(const std::string& path, const std::string& text) {
    std::ofstream out(path, std::ios::trunc);
    out << text;
    if (!out) throw std::runtime_error("cannot write " + path);
}

// P-256 keys: fast to generate, supported by every OpenSSL the proxy may link.
constexpr const char* kNewKey = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";

CertPair make_leaf(const std::string& dir, const std::string& name, const std::string& cn,
                   const std::string& san) {
    CertPair pair{dir + "/" + name + ".pem", dir + "/" + name + ".key"};
    const std::string csr = dir + "/" + name + ".csr";
    const std::string ext = dir + "/" + name + ".ext";
    write_file(ext, "subjectAltName=" + san +
                        "\nbasicConstraints=critical,CA:FALSE"
                        "\nkeyUsage=critical,digitalSignature,keyEncipherment"
                        "\nextendedKeyUsage=serverAuth\n");
    run_or_throw(std::string("openssl req -new ") + kNewKey + " -keyout '" + pair.key + "' -out '" + csr +
                 "' -subj '/CN=" + cn + "'");
    run_or_throw("openssl x509 -req -in '" + csr + "' -CA '" + dir + "/ca.pem' -CAkey '" + dir +
                 "/ca.key' -CAcreateserial -days 2 -sha256 -out '" + pair.cert + "' -extfile '" + ext + "'");
    return pair;
}

struct GeneratedCerts {
    TestCerts certs;

    GeneratedCerts() {
        std::string pattern = (std::filesystem::temp_directory_path() / "sluice-certs-XXXXXX").string();
        if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed for test certificates");
        certs.dir = pattern;
        const auto& dir = certs.dir;
        certs.ca_cert = dir + "/ca.pem";
        run_or_throw(std::string("openssl req -x509 ") + kNewKey + " -keyout '" + dir + "/ca.key' -out '" +
                     certs.ca_cert +
                     "' -days 2 -sha256 -subj '/CN=sluice e2e test CA'"
                     " -addext 'basicConstraints=critical,CA:TRUE'"
                     " -addext 'keyUsage=critical,keyCertSign,cRLSign'");
        certs.server = make_leaf(dir, "server", "localhost", "DNS:localhost,IP:127.0.0.1");
        certs.wrong_host = make_leaf(dir, "wrong", "wrong.example", "DNS:wrong.example");
        certs.self_signed = {dir + "/self.pem", dir + "/self.key"};
        run_or_throw(std::string("openssl req -x509 ") + kNewKey + " -keyout '" + certs.self_signed.key +
                     "' -out '" + certs.self_signed.cert +
                     "' -days 2 -sha256 -subj '/CN=localhost'"
                     " -addext 'subjectAltName=DNS:localhost,IP:127.0.0.1'");
    }

    ~GeneratedCerts() {
        std::error_code ignored;
        std::filesystem::remove_all(certs.dir, ignored);
    }
};

}  // namespace

const TestCerts& test_certs() {
    static const GeneratedCerts generated;
    return generated.certs;
}

}  // namespace sluice::test
