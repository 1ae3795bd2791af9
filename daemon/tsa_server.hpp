// RFC 3161 time-stamp authority over HTTP: POST application/timestamp-query → timestamp-reply.
//
// Replies are built by OpenSSL's TS_RESP_CTX (no ASN.1 by hand). Each request asks the engine's
// verdict function (the signing socket's, daemon/sign_server.hpp) for the time, then:
//   genTime  = UTC of the verdict's TAI, from `utc_from_tai` (the engine owns TAI − UTC), floored
//              to the microsecond (clock precision 6 digits; OpenSSL drops trailing zeros);
//   accuracy = bound_ns + 999 ns (the flooring) rounded UP to the microsecond, sent as
//              seconds/millis/micros, so |true UTC − genTime| ≤ accuracy always holds;
//   nonce    = the query's, copied by OpenSSL;
//   serial   = strictly increasing: from `serial_path` (stamp::SerialStore, persisted, survives
//              kill -9) when set, else in memory from CLOCK_REALTIME in ns at open() (unique across
//              restarts unless the clock went back or > 10^9 replies/s were issued);
//   policy   = `policy_oid`; a query asking for another policy gets unacceptedPolicy;
//   ESS      = SigningCertificateV2 with a SHA-256 cert id; signature digest SHA-256;
//              the signer certificate is included when the query sets certReq.
// Digests accepted: SHA-256/384/512 and SHA3-256/384/512. SHA-1 is refused (badAlg): it no
// longer binds a document (OpenSSL 3's `openssl ts -query` defaults to SHA-256).
//
// Refusals are TimeStampResp statuses, not HTTP errors (RFC 3161 §2.4.2), status "rejection":
//   verdict refuses, no UTC, or a leap second within genTime ± (accuracy + 1 s) → timeNotAvailable
//     (the status text carries the verdict's reason);
//   garbage body (not DER TimeStampReq)  → badDataFormat      (OpenSSL's check)
//   digest length wrong for the algorithm → badDataFormat     (OpenSSL's check, RFC 3161 fits it)
//   algorithm not accepted / with params → badAlg
//   version ≠ 1                          → badRequest
//   another policy asked for             → unacceptedPolicy;  any extension → unacceptedExtension
// HTTP errors only for HTTP mistakes: target other than "/" → 404, method other than POST → 405
// (Allow: POST), Content-Type other than application/timestamp-query → 415, body above
// max_body_bytes → 413 (then close), unparsable HTTP → 400 (then close).
//
// Limits: at most `max_connections` at once (beyond: accepted and closed at once); a request
// (headers and body) must arrive within `io_timeout` of the connection opening or of the last
// reply, and a reply must be taken within `io_timeout`: else the connection is closed. Keep-alive
// is honoured. Everything runs on the io_context's thread (run it from one thread).
//
// Key and certificate: PEM files. The certificate must carry extendedKeyUsage timeStamping
// (critical), as RFC 3161 §2.3 asks and TS_RESP_CTX_set_signer_cert checks. For a demo,
// make_self_signed_tsa() writes a pair; the same with the CLI:
//   openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650
//     -subj "/CN=taid demo TSA" -keyout tsa.key -out tsa.pem
//     -addext "basicConstraints=critical,CA:FALSE"
//     -addext "keyUsage=critical,digitalSignature"
//     -addext "extendedKeyUsage=critical,timeStamping"
// (one command line, split here for width).
// A client verifies with `openssl ts -verify -data FILE -in r.tsr -CAfile tsa.pem`.
#pragma once

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "core/result.hpp"
#include "daemon/sign_server.hpp"  // VerdictFunction, TimeVerdict

namespace taid::daemon {

// A placeholder policy of our own: an OID under the UUID arc 2.25 (ITU-T X.667), which needs no
// registration, made from a random UUID (1b3eb1b1-33ef-4779-bae7-3332f6ae9b1e). A deployment
// whose users need a registered policy sets tsapolicy.
inline constexpr const char* kDefaultTsaPolicyOid = "2.25.36214682317379505557145075166777088798";

struct TsaSettings {
  std::string bind_address = "127.0.0.1";  // tsabind (IPv4 or IPv6 literal)
  std::uint16_t port = 0;                  // tsaport; 0 = ephemeral (see TsaServer::port())
  std::string key_path;                    // tsakey: PEM private key (RSA or EC)
  std::string cert_path;                   // tsacert: PEM certificate, EKU timeStamping critical
  std::string chain_path;                  // optional PEM bundle added to replies with certReq
  std::string policy_oid = kDefaultTsaPolicyOid;  // tsapolicy (dotted)
  std::string serial_path;  // optional serial file (see above); empty: in memory
  std::size_t max_body_bytes = 64 * 1024;
  std::size_t max_connections = 64;
  std::chrono::milliseconds io_timeout{5000};
};

// UTC in POSIX ns for a verdict's TAI ns, or nullopt when the engine cannot say (no vouched
// TAI − UTC). The engine converts with the same offset it used for the verdict: both are called
// back to back on the io_context's thread.
using UtcFromTaiFunction = std::function<std::optional<std::int64_t>(std::int64_t tai_ns)>;

struct TsaCounters {
  std::uint64_t granted = 0;      // replies with status granted
  std::uint64_t rejected = 0;     // TimeStampResp rejections (bad query, time not available)
  std::uint64_t http_errors = 0;  // 400/404/405/413/415 replies
  std::uint64_t busy = 0;         // connections closed at accept (max_connections)
  std::uint64_t timeouts = 0;     // connections cut off by io_timeout
  std::uint64_t connections = 0;  // open now
};

class TsaServer {
 public:
  // Loads key and certificate (refusing a pair that does not match or a certificate without
  // the timeStamping purpose), parses the policy, opens the serial file, binds and starts
  // accepting on `io`. An error leaves nothing behind: log it and run without the TSA.
  static Result<std::unique_ptr<TsaServer>> open(boost::asio::io_context& io, TsaSettings settings,
                                                 VerdictFunction verdict,
                                                 UtcFromTaiFunction utc_from_tai);
  // Closes the acceptor and every connection. Call it on the io_context's thread (or while it is
  // not running).
  ~TsaServer();
  TsaServer(const TsaServer&) = delete;
  TsaServer& operator=(const TsaServer&) = delete;

  std::uint16_t port() const;    // the bound port (the ephemeral one when settings.port == 0)
  TsaCounters counters() const;  // read on the io_context's thread
  struct Impl;

 private:
  explicit TsaServer(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;  // shared with in-flight handlers, which may outlive the server
};

// Writes a new self-signed TSA pair for demos and tests: an EC P-256 key (mode 0600) and a
// certificate (0644) valid for `days`, CN = common_name, basicConstraints CA:FALSE, keyUsage
// digitalSignature and extendedKeyUsage timeStamping, all critical; the same as the CLI command
// above. Existing files are replaced.
Result<void> make_self_signed_tsa(const std::string& key_path, const std::string& cert_path,
                                  const std::string& common_name = "taid demo TSA",
                                  int days = 3650);

}  // namespace taid::daemon
