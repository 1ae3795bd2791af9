// TsaServer over loopback TCP: `openssl ts -query` → HTTP → `openssl ts -verify` OK; genTime,
// accuracy, nonce, serial; bad queries and refusals as RFC 3161 rejections; HTTP errors; limits.
#include "daemon/tsa_server.hpp"

#include <gtest/gtest.h>
#include <openssl/objects.h>
#include <openssl/pkcs7.h>
#include <openssl/ts.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <sstream>
#include <thread>

namespace taid::daemon {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

constexpr std::int64_t kTaiMinusUtcNs = 37'000'000'000;
// 2026-12-01T12:00:00.123456789Z, as TAI.
constexpr std::int64_t kUtcNs = 1'796'126'400'123'456'789;
constexpr std::uint64_t kBoundNs = 1'234'567;  // accuracy: ceil((1234567 + 999) / 1000) = 1236 us

struct RunResult {
  int status = -1;
  std::string output;  // stdout and stderr
};

RunResult run(const std::string& command) {
  RunResult r;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return r;
  char chunk[4096];
  while (std::size_t n = std::fread(chunk, 1, sizeof chunk, pipe)) r.output.append(chunk, n);
  r.status = ::pclose(pipe);
  return r;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void spit(const std::string& path, std::string_view data) {
  std::ofstream out(path, std::ios::binary);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

struct HttpReply {
  unsigned status = 0;
  std::string content_type;
  std::string allow;
  std::string body;
};

// A blocking Beast client: one request on a fresh connection.
HttpReply http_request(std::uint16_t port, http::verb method, const std::string& target,
                       const std::string& content_type, std::string body) {
  asio::io_context io;
  tcp::socket socket(io);
  socket.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  timeval tv{5, 0};  // a hung server fails the test instead of hanging it
  ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  http::request<http::string_body> request(method, target, 11);
  request.set(http::field::host, "127.0.0.1");
  if (!content_type.empty()) request.set(http::field::content_type, content_type);
  request.body() = std::move(body);
  request.prepare_payload();
  http::write(socket, request);
  beast::flat_buffer buffer;
  http::response<http::string_body> response;
  http::read(socket, buffer, response);
  HttpReply reply;
  reply.status = response.result_int();
  reply.content_type = std::string(response[http::field::content_type]);
  reply.allow = std::string(response[http::field::allow]);
  reply.body = std::move(response.body());
  return reply;
}

HttpReply post_query(std::uint16_t port, std::string der) {
  return http_request(port, http::verb::post, "/", "application/timestamp-query", std::move(der));
}

// A TimeStampReq built with OpenSSL's API: any algorithm OID, digest length and version.
std::string make_query(const char* algorithm_oid, std::size_t digest_length, long version = 1) {
  TS_REQ* req = TS_REQ_new();
  TS_MSG_IMPRINT* imprint = TS_MSG_IMPRINT_new();
  X509_ALGOR* algorithm = X509_ALGOR_new();
  X509_ALGOR_set0(algorithm, OBJ_txt2obj(algorithm_oid, 1), V_ASN1_NULL, nullptr);
  std::string digest(digest_length, '\x5a');
  TS_MSG_IMPRINT_set_algo(imprint, algorithm);
  TS_MSG_IMPRINT_set_msg(imprint, reinterpret_cast<unsigned char*>(digest.data()),
                         static_cast<int>(digest.size()));
  TS_REQ_set_version(req, version);
  TS_REQ_set_msg_imprint(req, imprint);
  TS_REQ_set_cert_req(req, 1);
  const int length = i2d_TS_REQ(req, nullptr);
  std::string der(static_cast<std::size_t>(length), '\0');
  auto* out = reinterpret_cast<unsigned char*>(der.data());
  i2d_TS_REQ(req, &out);
  X509_ALGOR_free(algorithm);
  TS_MSG_IMPRINT_free(imprint);
  TS_REQ_free(req);
  return der;
}

constexpr const char* kSha256 = "2.16.840.1.101.3.4.2.1";

// The reply's status, failInfo bits, text, and for a granted one serial/genTime/accuracy.
struct ParsedReply {
  long status = -1;
  std::vector<int> fail_bits;
  std::string text;
  std::uint64_t serial = 0;
  std::string gen_time;  // GeneralizedTime as sent
  long accuracy_s = 0, accuracy_ms = 0, accuracy_us = 0;
};

ParsedReply parse_reply(const std::string& der) {
  ParsedReply p;
  const auto* in = reinterpret_cast<const unsigned char*>(der.data());
  TS_RESP* resp = d2i_TS_RESP(nullptr, &in, static_cast<long>(der.size()));
  if (resp == nullptr) return p;
  TS_STATUS_INFO* info = TS_RESP_get_status_info(resp);
  p.status = ASN1_INTEGER_get(TS_STATUS_INFO_get0_status(info));
  if (const ASN1_BIT_STRING* bits = TS_STATUS_INFO_get0_failure_info(info))
    for (int bit = 0; bit < 32; ++bit)
      if (ASN1_BIT_STRING_get_bit(bits, bit)) p.fail_bits.push_back(bit);
  if (const auto* texts = TS_STATUS_INFO_get0_text(info))
    for (int i = 0; i < sk_ASN1_UTF8STRING_num(texts); ++i) {
      const ASN1_UTF8STRING* t = sk_ASN1_UTF8STRING_value(texts, i);
      p.text.append(reinterpret_cast<const char*>(ASN1_STRING_get0_data(t)),
                    static_cast<std::size_t>(ASN1_STRING_length(t)));
    }
  if (TS_TST_INFO* tst = TS_RESP_get_tst_info(resp)) {
    ASN1_INTEGER_get_uint64(&p.serial, TS_TST_INFO_get_serial(tst));
    const ASN1_GENERALIZEDTIME* t = TS_TST_INFO_get_time(tst);
    p.gen_time.assign(reinterpret_cast<const char*>(ASN1_STRING_get0_data(t)),
                      static_cast<std::size_t>(ASN1_STRING_length(t)));
    if (TS_ACCURACY* a = TS_TST_INFO_get_accuracy(tst)) {
      auto get = [](const ASN1_INTEGER* i) { return i ? ASN1_INTEGER_get(i) : 0L; };
      p.accuracy_s = get(TS_ACCURACY_get_seconds(a));
      p.accuracy_ms = get(TS_ACCURACY_get_millis(a));
      p.accuracy_us = get(TS_ACCURACY_get_micros(a));
    }
  }
  TS_RESP_free(resp);
  return p;
}

// The server on its own io thread, a temp dir with a self-signed pair, and a settable verdict.
class TsaServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/taid-tsa-test-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
    key_ = dir_ + "/tsa.key";
    cert_ = dir_ + "/tsa.pem";
    auto made = make_self_signed_tsa(key_, cert_);
    ASSERT_TRUE(made) << made.error().message();
  }
  void TearDown() override {
    stop();
    std::filesystem::remove_all(dir_);
  }

  TsaSettings settings() const {
    TsaSettings s;
    s.key_path = key_;
    s.cert_path = cert_;
    return s;
  }

  void start(TsaSettings s) {
    io_.restart();
    work_.emplace(asio::make_work_guard(io_));
    auto server = TsaServer::open(
        io_, std::move(s),
        [this]() -> TimeVerdict {
          if (refuse_) return SignRefusal{stamp::ReplyCode::unsynchronized, "test: no sources"};
          stamp::BatchTime t;
          t.tai_ns = utc_ns_.load() + kTaiMinusUtcNs;
          t.bound_ns = kBoundNs;
          t.leap = leap_ ? stamp::Leap::insert : stamp::Leap::none;
          return t;
        },
        [](std::int64_t tai_ns) -> std::optional<std::int64_t> { return tai_ns - kTaiMinusUtcNs; });
    ASSERT_TRUE(server) << server.error().message();
    server_ = std::move(*server);
    port_ = server_->port();
    ASSERT_NE(port_, 0);
    thread_ = std::thread([this] { io_.run(); });
  }

  // Stops the io thread, then destroys the server (allowed while io is not running).
  void stop() {
    if (thread_.joinable()) {
      work_.reset();
      io_.stop();
      thread_.join();
    }
    if (server_) {
      counters_ = server_->counters();
      server_.reset();
    }
  }

  // The counters read on the io thread, once `done` holds or after 2 s.
  TsaCounters counters_when(const std::function<bool(const TsaCounters&)>& done) {
    const auto deadline = std::chrono::steady_clock::now() + 2s;
    for (;;) {
      std::promise<TsaCounters> read;
      asio::post(io_, [&] { read.set_value(server_->counters()); });
      const TsaCounters c = read.get_future().get();
      if (done(c) || std::chrono::steady_clock::now() > deadline) return c;
      std::this_thread::sleep_for(10ms);
    }
  }

  std::string path(const char* name) const { return dir_ + "/" + name; }

  std::string dir_, key_, cert_;
  asio::io_context io_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_{
      asio::make_work_guard(io_)};
  std::unique_ptr<TsaServer> server_;
  std::thread thread_;
  std::uint16_t port_ = 0;
  TsaCounters counters_;
  std::atomic<bool> refuse_{false};
  std::atomic<bool> leap_{false};
  std::atomic<std::int64_t> utc_ns_{kUtcNs};
};

std::string line_with(const std::string& text, std::string_view prefix) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(prefix, 0) == 0) return line;
  return "";
}

TEST_F(TsaServerTest, OpensslQueryOverHttpVerifies) {
  start(settings());
  spit(path("photo.jpg"), "not really a photo, but bytes to stamp\n");
  for (const char* digest : {"sha256", "sha384", "sha512"}) {
    SCOPED_TRACE(digest);
    // With -cert the reply carries the TSA certificate and -CAfile alone verifies it; without,
    // the verifier brings the certificate (-untrusted).
    const bool cert_req = std::string_view(digest) != "sha512";
    const RunResult q = run("openssl ts -query -data " + path("photo.jpg") + " -" + digest +
                            (cert_req ? " -cert" : "") + " -out " + path("q.tsq"));
    ASSERT_EQ(q.status, 0) << q.output;
    const HttpReply reply = post_query(port_, slurp(path("q.tsq")));
    ASSERT_EQ(reply.status, 200u) << reply.body;
    EXPECT_EQ(reply.content_type, "application/timestamp-reply");
    spit(path("r.tsr"), reply.body);

    const RunResult verify =
        run("openssl ts -verify -data " + path("photo.jpg") + " -in " + path("r.tsr") +
            " -CAfile " + cert_ + (cert_req ? "" : " -untrusted " + cert_));
    std::printf("openssl ts -verify (%s): %s", digest, verify.output.c_str());
    EXPECT_EQ(verify.status, 0);
    EXPECT_NE(verify.output.find("Verification: OK"), std::string::npos) << verify.output;
    // Other bytes do not verify against the same reply.
    spit(path("other.jpg"), "not really a photo, but bytes to stamp!\n");
    const RunResult other = run("openssl ts -verify -data " + path("other.jpg") + " -in " +
                                path("r.tsr") + " -CAfile " + cert_ + " -untrusted " + cert_);
    EXPECT_NE(other.status, 0);
    EXPECT_NE(other.output.find("Verification: FAILED"), std::string::npos) << other.output;

    const RunResult text = run("openssl ts -reply -in " + path("r.tsr") + " -text");
    const RunResult query_text = run("openssl ts -query -in " + path("q.tsq") + " -text");
    ASSERT_EQ(text.status, 0) << text.output;
    if (std::string_view(digest) == "sha256") std::printf("%s", text.output.c_str());
    EXPECT_EQ(line_with(text.output, "Status: "), "Status: Granted.");
    EXPECT_EQ(line_with(text.output, "Policy OID: "),
              std::string("Policy OID: ") + kDefaultTsaPolicyOid);
    EXPECT_EQ(line_with(text.output, "Time stamp: "),
              "Time stamp: Dec  1 12:00:00.123456 2026 GMT");
    EXPECT_EQ(line_with(text.output, "Accuracy: "),
              "Accuracy: unspecified seconds, 0x01 millis, 0xEC micros")
        << "1236 us";
    const std::string nonce = line_with(query_text.output, "Nonce: ");
    ASSERT_FALSE(nonce.empty()) << query_text.output;
    EXPECT_EQ(line_with(text.output, "Nonce: "), nonce);
    EXPECT_EQ(line_with(text.output, "TSA: "), "TSA: DirName:/CN=taid demo TSA");
  }
}

// Number of certificates in a reply's SignedData (0 without a token).
int reply_certificates(const std::string& der) {
  const auto* in = reinterpret_cast<const unsigned char*>(der.data());
  TS_RESP* resp = d2i_TS_RESP(nullptr, &in, static_cast<long>(der.size()));
  if (resp == nullptr) return -1;
  PKCS7* token = TS_RESP_get_token(resp);
  const int n = token != nullptr && PKCS7_type_is_signed(token) && token->d.sign->cert != nullptr
                    ? sk_X509_num(token->d.sign->cert)
                    : 0;
  TS_RESP_free(resp);
  return n;
}

TEST_F(TsaServerTest, ChainIsSentWhenTheQueryAsksForCertificates) {
  ASSERT_TRUE(make_self_signed_tsa(path("ca.key"), path("ca.pem"), "stand-in CA"));
  TsaSettings s = settings();
  s.chain_path = path("ca.pem");
  start(s);
  EXPECT_EQ(reply_certificates(post_query(port_, make_query(kSha256, 32)).body), 2);  // certReq
  spit(path("photo.jpg"), "bytes\n");
  const RunResult q = run("openssl ts -query -data " + path("photo.jpg") + " -out " + path("q"));
  ASSERT_EQ(q.status, 0) << q.output;
  const std::string reply = post_query(port_, slurp(path("q"))).body;
  EXPECT_EQ(reply_certificates(reply), 0);  // no -cert: no certificates
  spit(path("r"), reply);
  const RunResult verify = run("openssl ts -verify -data " + path("photo.jpg") + " -in " +
                               path("r") + " -CAfile " + cert_ + " -untrusted " + cert_);
  EXPECT_NE(verify.output.find("Verification: OK"), std::string::npos) << verify.output;
}

TEST_F(TsaServerTest, GenTimeAccuracyAndIncreasingSerials) {
  start(settings());
  const ParsedReply a = parse_reply(post_query(port_, make_query(kSha256, 32)).body);
  utc_ns_ = kUtcNs + 1'000'999;  // + 1.000999 ms
  const ParsedReply b = parse_reply(post_query(port_, make_query(kSha256, 32)).body);
  ASSERT_EQ(a.status, TS_STATUS_GRANTED) << a.text;
  ASSERT_EQ(b.status, TS_STATUS_GRANTED) << b.text;
  EXPECT_EQ(a.gen_time, "20261201120000.123456Z");
  EXPECT_EQ(b.gen_time, "20261201120000.124457Z");
  EXPECT_EQ(a.accuracy_s, 0);
  EXPECT_EQ(a.accuracy_ms, 1);
  EXPECT_EQ(a.accuracy_us, 236);
  EXPECT_EQ(b.serial, a.serial + 1);
  // In memory, serials start at CLOCK_REALTIME in ns at open(): above any earlier run's.
  timespec now{};
  ::clock_gettime(CLOCK_REALTIME, &now);
  const std::uint64_t now_ns =
      static_cast<std::uint64_t>(now.tv_sec) * 1000000000 + static_cast<std::uint64_t>(now.tv_nsec);
  EXPECT_LT(a.serial, now_ns);
  EXPECT_GT(a.serial, now_ns - 60'000'000'000ULL);
}

TEST_F(TsaServerTest, PersistedSerialsIncreaseAcrossRestart) {
  TsaSettings s = settings();
  s.serial_path = path("serials");
  start(s);
  const ParsedReply a = parse_reply(post_query(port_, make_query(kSha256, 32)).body);
  const ParsedReply b = parse_reply(post_query(port_, make_query(kSha256, 32)).body);
  stop();
  start(s);
  const ParsedReply c = parse_reply(post_query(port_, make_query(kSha256, 32)).body);
  EXPECT_EQ(a.serial, 1u);
  EXPECT_EQ(b.serial, 2u);
  EXPECT_GT(c.serial, b.serial);
}

TEST_F(TsaServerTest, BadQueriesAreRejectedAndTheServerKeepsServing) {
  start(settings());
  struct Case {
    const char* name;
    std::string der;
    int fail_bit;
  };
  const Case cases[] = {
      {"sha256 with a 20-byte digest", make_query(kSha256, 20), TS_INFO_BAD_DATA_FORMAT},
      {"unknown algorithm 1.2.3.4", make_query("1.2.3.4", 32), TS_INFO_BAD_ALG},
      {"sha1 (refused)", make_query("1.3.14.3.2.26", 20), TS_INFO_BAD_ALG},
      {"version 2", make_query(kSha256, 32, 2), TS_INFO_BAD_REQUEST},
      {"garbage", "this is not DER at all", TS_INFO_BAD_DATA_FORMAT},
      {"empty body", "", TS_INFO_BAD_DATA_FORMAT},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const HttpReply reply = post_query(port_, c.der);
    ASSERT_EQ(reply.status, 200u);
    EXPECT_EQ(reply.content_type, "application/timestamp-reply");
    const ParsedReply p = parse_reply(reply.body);
    EXPECT_EQ(p.status, TS_STATUS_REJECTION);
    EXPECT_EQ(p.fail_bits, std::vector<int>{c.fail_bit}) << p.text;
    EXPECT_EQ(p.serial, 0u);  // no token
    std::printf("%-30s -> rejection, failInfo bit %d, \"%s\"\n", c.name, c.fail_bit,
                p.text.c_str());
  }
  const ParsedReply good = parse_reply(post_query(port_, make_query(kSha256, 32)).body);
  EXPECT_EQ(good.status, TS_STATUS_GRANTED) << good.text;
  stop();
  EXPECT_EQ(counters_.granted, 1u);
  EXPECT_EQ(counters_.rejected, std::size(cases));
}

TEST_F(TsaServerTest, RefusingVerdictGivesTimeNotAvailable) {
  start(settings());
  refuse_ = true;
  const ParsedReply refused = parse_reply(post_query(port_, make_query(kSha256, 32)).body);
  EXPECT_EQ(refused.status, TS_STATUS_REJECTION);
  EXPECT_EQ(refused.fail_bits, std::vector<int>{TS_INFO_TIME_NOT_AVAILABLE});
  EXPECT_EQ(refused.text, "time not available: test: no sources");
  refuse_ = false;
  // Within 1 s + accuracy of a leap midnight: refused; a day earlier with the flag: granted.
  leap_ = true;
  utc_ns_ = 1'798'761'599'500'000'000;  // 2026-12-31T23:59:59.5Z
  const ParsedReply leap = parse_reply(post_query(port_, make_query(kSha256, 32)).body);
  EXPECT_EQ(leap.fail_bits, std::vector<int>{TS_INFO_TIME_NOT_AVAILABLE});
  EXPECT_EQ(leap.text, "time not available: leap second");
  utc_ns_ = 1'798'761'597'000'000'000;  // 23:59:57Z: 3 s before, outside 1 s + 1236 us
  const ParsedReply before = parse_reply(post_query(port_, make_query(kSha256, 32)).body);
  EXPECT_EQ(before.status, TS_STATUS_GRANTED) << before.text;
  EXPECT_EQ(before.gen_time, "20261231235957Z");
}

TEST_F(TsaServerTest, HttpErrors) {
  start(settings());
  const std::string query = make_query(kSha256, 32);
  const HttpReply get = http_request(port_, http::verb::get, "/", "", "");
  EXPECT_EQ(get.status, 405u);
  EXPECT_EQ(get.allow, "POST");
  EXPECT_EQ(
      http_request(port_, http::verb::post, "/other", "application/timestamp-query", query).status,
      404u);
  EXPECT_EQ(http_request(port_, http::verb::post, "/", "text/plain", query).status, 415u);
  EXPECT_EQ(http_request(port_, http::verb::post, "/", "", query).status, 415u);
  // Parameters and case do not matter.
  EXPECT_EQ(
      http_request(port_, http::verb::post, "/", "Application/Timestamp-Query; x=1", query).status,
      200u);
  EXPECT_EQ(post_query(port_, std::string(64 * 1024 + 1, 'x')).status, 413u);
  EXPECT_EQ(post_query(port_, std::string(64 * 1024, 'x')).status, 200u);  // at the limit
  EXPECT_EQ(parse_reply(post_query(port_, query).body).status, TS_STATUS_GRANTED);
}

TEST_F(TsaServerTest, KeepAliveServesSeveralQueriesOnOneConnection) {
  start(settings());
  asio::io_context io;
  tcp::socket socket(io);
  socket.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_));
  beast::flat_buffer buffer;
  std::uint64_t last_serial = 0;
  for (int i = 0; i < 5; ++i) {
    http::request<http::string_body> request(http::verb::post, "/", 11);
    request.set(http::field::content_type, "application/timestamp-query");
    request.body() = make_query(kSha256, 32);
    request.prepare_payload();
    http::write(socket, request);
    http::response<http::string_body> response;
    http::read(socket, buffer, response);
    ASSERT_EQ(response.result_int(), 200u);
    const ParsedReply p = parse_reply(response.body());
    EXPECT_EQ(p.status, TS_STATUS_GRANTED);
    EXPECT_GT(p.serial, last_serial);
    last_serial = p.serial;
  }
}

// Reads until EOF or error; how long that took.
std::chrono::milliseconds time_to_close(tcp::socket& socket) {
  const auto start = std::chrono::steady_clock::now();
  char c;
  boost::system::error_code ec;
  while (!ec) socket.read_some(asio::buffer(&c, 1), ec);
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               start);
}

TEST_F(TsaServerTest, SlowClientIsCutOffAndOthersAreServed) {
  TsaSettings s = settings();
  s.io_timeout = 300ms;
  start(s);
  asio::io_context io;
  tcp::socket slow(io);
  slow.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_));
  asio::write(slow, asio::buffer(std::string_view("POST / HTTP/1.1\r\nHost: x\r\n")));
  // Served meanwhile.
  EXPECT_EQ(parse_reply(post_query(port_, make_query(kSha256, 32)).body).status, TS_STATUS_GRANTED);
  const auto waited = time_to_close(slow);
  EXPECT_LT(waited, 2000ms);
  // The socket is closed by the timer; the read's handler, which counts, may run just after.
  EXPECT_EQ(counters_when([](const TsaCounters& c) { return c.timeouts > 0; }).timeouts, 1u);
}

TEST_F(TsaServerTest, ConnectionsBeyondTheCapAreClosed) {
  TsaSettings s = settings();
  s.max_connections = 2;
  start(s);
  asio::io_context io;
  tcp::socket a(io), b(io), c(io);
  const tcp::endpoint server(asio::ip::make_address("127.0.0.1"), port_);
  a.connect(server);
  b.connect(server);
  EXPECT_EQ(counters_when([](const TsaCounters& n) { return n.connections == 2; }).connections, 2u);
  c.connect(server);
  EXPECT_LT(time_to_close(c), 1000ms);
  a.close();
  b.close();
  EXPECT_EQ(counters_when([](const TsaCounters& n) { return n.connections == 0; }).connections,
            0u);  // their sessions have ended
  EXPECT_EQ(parse_reply(post_query(port_, make_query(kSha256, 32)).body).status, TS_STATUS_GRANTED);
  stop();
  EXPECT_EQ(counters_.busy, 1u);
}

TEST_F(TsaServerTest, DestroyedWhileConnectedClosesConnectionsAndIoRunsOn) {
  start(settings());
  asio::io_context io;
  tcp::socket idle(io);
  idle.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_));
  EXPECT_EQ(counters_when([](const TsaCounters& n) { return n.connections == 1; }).connections,
            1u);  // accepted, its read pending
  std::promise<void> destroyed;
  asio::post(io_, [&] {
    server_.reset();
    destroyed.set_value();
  });
  destroyed.get_future().wait();
  EXPECT_LT(time_to_close(idle), 1000ms);
  tcp::socket late(io);
  boost::system::error_code ec;
  late.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_), ec);
  EXPECT_EQ(ec, asio::error::connection_refused);
  work_.reset();
  thread_.join();  // io_.run() returns: no handler of the server is left behind
}

TEST_F(TsaServerTest, RefusesCertificateWithoutTimeStampingAndMismatchedKey) {
  const RunResult plain =
      run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
          "-subj /CN=plain -keyout " +
          path("plain.key") + " -out " + path("plain.pem"));
  ASSERT_EQ(plain.status, 0) << plain.output;
  asio::io_context io;
  auto verdict = []() -> TimeVerdict { return stamp::BatchTime{}; };
  auto utc = [](std::int64_t t) -> std::optional<std::int64_t> { return t; };
  TsaSettings s = settings();
  s.key_path = path("plain.key");
  s.cert_path = path("plain.pem");
  auto no_eku = TsaServer::open(io, s, verdict, utc);
  ASSERT_FALSE(no_eku);
  EXPECT_NE(no_eku.error().message().find("not a time-stamping certificate"), std::string::npos)
      << no_eku.error().message();
  s.key_path = path("plain.key");
  s.cert_path = cert_;
  auto mismatched = TsaServer::open(io, s, verdict, utc);
  ASSERT_FALSE(mismatched);
  EXPECT_NE(mismatched.error().message().find("does not match"), std::string::npos)
      << mismatched.error().message();
  s = settings();
  s.policy_oid = "not an oid";
  EXPECT_FALSE(TsaServer::open(io, s, verdict, utc));
}

TEST(MakeSelfSignedTsa, KeyIsPrivateAndCertificateHasCriticalTimeStamping) {
  char pattern[] = "/tmp/taid-tsa-cert-XXXXXX";
  ASSERT_NE(::mkdtemp(pattern), nullptr);
  const std::string dir = pattern;
  ASSERT_TRUE(make_self_signed_tsa(dir + "/k", dir + "/c", "unit test TSA", 7));
  struct stat st {};
  ASSERT_EQ(::stat((dir + "/k").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  const RunResult text = run("openssl x509 -in " + dir + "/c -noout -text");
  EXPECT_NE(text.output.find("X509v3 Extended Key Usage: critical\n                Time Stamping"),
            std::string::npos)
      << text.output;
  EXPECT_NE(text.output.find("Subject: CN = unit test TSA"), std::string::npos);
  const RunResult purpose = run("openssl x509 -in " + dir + "/c -noout -purpose");
  EXPECT_NE(purpose.output.find("Time Stamp signing : Yes"), std::string::npos) << purpose.output;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace taid::daemon
