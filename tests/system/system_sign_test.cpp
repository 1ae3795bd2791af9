// System tests of signed TAI for local services (issue 10): taid -x measures a real chronyd in
// another namespace, signs a file's digest over its signing socket, and the token verifies
// offline with taistamp and with the Python module; its time lies within its bound of the real
// signing instant (client and server share this kernel's clock, so the truth is known: true UTC
// is CLOCK_REALTIME, and TAI is it plus the table's 37 s). It refuses, naming why, without a
// table that speaks for today, above maxsignbound, and unsynchronized. The shared-memory record
// says plainly that this machine's kernel TAI offset (0: it must not be set here) is not vouched
// for.
//
// The table is tests/data/leap/negative-leap.list: the real entries, valid to 2028 (tzdata's own
// list expired on 2026-06-28), with a made-up deletion in 2027 that does not touch today.
#include <gtest/gtest.h>
#include <time.h>
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/system/fixture.hpp"

namespace taid::system_test {
namespace {

using json = nlohmann::json;

const std::filesystem::path kSource = TAID_SOURCE_DIR;
const std::string kGoodList = (kSource / "tests/data/leap/negative-leap.list").string();
const std::string kExpiredList = (kSource / "tests/data/leap/leap-seconds.list").string();
const std::string kPython = "/usr/bin/python3";
const std::string kPythonModule = (kSource / "python/taid_stamp.py").string();

int64_t realtime_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

int exit_code(const RunResult& r) {
  return WIFEXITED(r.wait_status) ? WEXITSTATUS(r.wait_status) : -1;
}

class SignTest : public SystemTest {
 protected:
  std::string path(const std::string& name) const { return (dir_->path() / name).string(); }

  // taid -x against chronyd (or `server` if given) with the signing socket and the clock record.
  void start_taid(const std::string& list, const std::string& max_bound,
                  const std::string& server = "") {
    if (server.empty() && !chronyd_) chronyd_.emplace(*net_, dir_->path());
    const std::string address = server.empty() ? chronyd_->address() : server;
    taid_.reset();
    taid_.emplace(net_->client_ns(), dir_->path(),
                  std::vector<std::string>{"server " + address + " iburst minpoll -2 maxpoll -2",
                                           "leapseclist " + list, "signsocket " + path("sign.sock"),
                                           "signkey " + path("sign.key"),
                                           "signserials " + path("sign.serial"),
                                           "clockrecord " + path("clock"),
                                           "maxsignbound " + max_bound});
  }

  // Waits until tracking says synchronized (bounded); the last tracking in `tracking`.
  bool wait_synchronized(json& tracking) {
    return wait_until(30s, 250ms, [&] {
      if (taid_->process().exited()) return true;
      const auto t = taid_->tracking();
      if (!t) return false;
      tracking = *t;
      return tracking.value("synchronized", false);
    }) && !taid_->process().exited();
  }

  RunResult taistamp(std::vector<std::string> args) const {
    args.insert(args.begin(), TAISTAMP_BIN);
    return run(args, 20000ms);
  }
};

TEST_F(SignTest, TokenOfAFileVerifiesOfflineAndHoldsTheTrueTime) {
  start_taid(kGoodList, "0.05");
  json tracking;
  ASSERT_TRUE(wait_synchronized(tracking)) << tracking.dump() << "\n" << taid_->process().log();
  ASSERT_TRUE(wait_until(10s, 250ms, [&] {
    const auto t = taid_->tracking();
    return t && t->at("tai").contains("table_offset_s");
  })) << taid_->tracking().value_or(json()).dump();
  EXPECT_EQ(taid_->tracking()->at("tai").value("table_offset_s", 0), 37);

  const std::string photo = path("photo.jpg");
  std::ofstream(photo) << "not really a jpeg\n";
  const int64_t before_ns = realtime_ns();
  const RunResult signed_ = taistamp({"-s", path("sign.sock"), "sign", photo, "--meta",
                                      "camera=X100", "-o", path("photo.tok")});
  const int64_t after_ns = realtime_ns();
  ASSERT_TRUE(signed_.ok()) << signed_.describe() << "\n" << taid_->process().log();

  const RunResult verified =
      taistamp({"verify", photo, path("photo.tok"), "--pubkey", path("sign.key.pub"), "--meta",
                "camera=X100", "--leapseclist", kGoodList});
  ASSERT_TRUE(verified.ok()) << verified.describe();
  std::cout << "taistamp verify:\n" << verified.out;
  const RunResult as_json =
      taistamp({"--json", "verify", photo, path("photo.tok"), "--pubkey", path("sign.key.pub"),
                "--meta", "camera=X100", "--leapseclist", kGoodList});
  ASSERT_TRUE(as_json.ok()) << as_json.describe();
  const json token = json::parse(as_json.out, nullptr, false);
  ASSERT_FALSE(token.is_discarded()) << as_json.out;
  const json& fields = token.contains("token") ? token["token"] : token;
  const int64_t tai_ns = fields.value("tai_ns", int64_t{0});
  const int64_t bound_ns = fields.value("bound_ns", int64_t{0});
  std::cout << "token: TAI " << tai_ns << " ns, bound " << bound_ns << " ns, serial "
            << fields.value("serial", 0) << ", status " << fields.value("status", "") << "\n";
  EXPECT_GT(bound_ns, 0);
  EXPECT_LE(bound_ns, 50000000);  // maxsignbound
  EXPECT_EQ(fields.value("status", ""), "measured");  // -x
  // The truth: this kernel's clock (chronyd's too), plus 37 s.
  constexpr int64_t k37 = 37LL * 1000000000;
  EXPECT_LE(tai_ns - bound_ns, after_ns + k37);
  EXPECT_GE(tai_ns + bound_ns, before_ns + k37);

  // Other metadata, or another file, do not verify.
  const RunResult other_meta =
      taistamp({"verify", photo, path("photo.tok"), "--pubkey", path("sign.key.pub"), "--meta",
                "camera=X200"});
  EXPECT_EQ(exit_code(other_meta), 1) << other_meta.describe();

  // The Python module verifies taistamp's token and gets its own from the same socket.
  const RunResult py = run({kPython, kPythonModule, "verify", photo, path("photo.tok"), "--pubkey",
                            path("sign.key.pub"), "--meta", "camera=X100"});
  EXPECT_TRUE(py.ok()) << py.describe();
  const RunResult py_bad = run({kPython, kPythonModule, "verify", photo, path("photo.tok"),
                                "--pubkey", path("sign.key.pub"), "--meta", "camera=X200"});
  EXPECT_EQ(exit_code(py_bad), 1) << py_bad.describe();
  const RunResult py_sign = run({kPython, kPythonModule, "sign", photo, "--meta", "camera=X100",
                                 "-s", path("sign.sock"), "-o", path("py.tok")});
  ASSERT_TRUE(py_sign.ok()) << py_sign.describe();
  const RunResult py_token_verified =
      taistamp({"--json", "verify", photo, path("py.tok"), "--pubkey", path("sign.key.pub"),
                "--meta", "camera=X100"});
  ASSERT_TRUE(py_token_verified.ok()) << py_token_verified.describe();
  const json second = json::parse(py_token_verified.out, nullptr, false);
  const json& second_fields = second.contains("token") ? second["token"] : second;
  EXPECT_GT(second_fields.value("serial", 0), fields.value("serial", 0));

  // The clock record: this machine's kernel TAI offset is 0 (taid -x must not set it), so the
  // record says it is not vouched for and gives no interval.
  const RunResult now = run({TAID_NOW_BIN, path("clock")});
  EXPECT_EQ(exit_code(now), 1) << now.describe();
  EXPECT_NE(now.out.find("status tai-unvouched"), std::string::npos) << now.describe();
  std::cout << "taid-now: " << now.out;
  EXPECT_EQ(taid_->process().stop(), 0) << taid_->process().describe();
}

TEST_F(SignTest, RefusalsNameTheReason) {
  const std::string photo = path("photo.jpg");
  std::ofstream(photo) << "content\n";
  const auto refused = [&](const std::string& why) {
    const RunResult r = taistamp({"-s", path("sign.sock"), "sign", photo, "-o", path("x.tok")});
    EXPECT_EQ(exit_code(r), 4) << why << ": " << r.describe();
    std::cout << why << ": " << r.err;
    EXPECT_FALSE(std::filesystem::exists(path("x.tok"))) << why;
    return r.err;
  };
  json tracking;

  // tzdata's list, expired on 2026-06-28: the table does not speak for today.
  start_taid(kExpiredList, "0.05");
  ASSERT_TRUE(wait_synchronized(tracking)) << taid_->process().log();
  EXPECT_NE(refused("expired table").find("expired"), std::string::npos);

  // A bound no measurement meets.
  start_taid(kGoodList, "0.000000001");
  ASSERT_TRUE(wait_synchronized(tracking)) << taid_->process().log();
  EXPECT_NE(refused("maxsignbound 1 ns").find("exceeds maxsignbound"), std::string::npos);

  // No server answers: never synchronized.
  start_taid(kGoodList, "0.05", net_->unused_address());
  ASSERT_TRUE(wait_until(10s, 100ms, [&] { return taid_->tracking().has_value(); }));
  EXPECT_NE(refused("unsynchronized").find("not synchronized"), std::string::npos);
  EXPECT_EQ(taid_->process().stop(), 0) << taid_->process().describe();
}


// RFC 3161 over HTTP (issue 10, item 4): `openssl ts -query` → taid's TSA in the client namespace
// (POSTed with Python's urllib) → `openssl ts -verify` prints OK against the self-signed
// certificate taid made on first start; garbage gets a rejection and the server keeps serving;
// with an expired table the time is not available.
TEST_F(SignTest, Rfc3161RepliesVerifyWithOpenssl) {
  const std::string port = std::to_string(20000 + ::getpid() % 20000);
  const auto start = [&](const std::string& list) {
    if (!chronyd_) chronyd_.emplace(*net_, dir_->path());
    taid_.reset();
    taid_.emplace(net_->client_ns(), dir_->path(),
                  std::vector<std::string>{
                      "server " + chronyd_->address() + " iburst minpoll -2 maxpoll -2",
                      "leapseclist " + list, "tsaport " + port, "tsakey " + path("tsa.key"),
                      "tsacert " + path("tsa.pem"), "tsaserials " + path("tsa.serial")});
  };
  const auto post = [&](const std::string& query, const std::string& reply) {
    const std::string script =
        "import sys, urllib.request\n"
        "req = urllib.request.Request('http://127.0.0.1:" + port + "/', data=open(sys.argv[1], "
        "'rb').read(), headers={'Content-Type': 'application/timestamp-query'})\n"
        "r = urllib.request.urlopen(req, timeout=10)\n"
        "assert r.headers['Content-Type'] == 'application/timestamp-reply', r.headers\n"
        "open(sys.argv[2], 'wb').write(r.read())\n";
    return run({"ip", "netns", "exec", net_->client_ns(), kPython, "-c", script, query, reply});
  };
  const std::string photo = path("photo.jpg");
  std::ofstream(photo) << "not really a jpeg\n";
  const RunResult query =
      run({"openssl", "ts", "-query", "-data", photo, "-sha256", "-cert", "-out", path("q.tsq")});
  ASSERT_TRUE(query.ok()) << query.describe();

  start(kGoodList);
  json tracking;
  ASSERT_TRUE(wait_synchronized(tracking)) << taid_->process().log();
  ASSERT_TRUE(std::filesystem::exists(path("tsa.pem"))) << taid_->process().log();
  const RunResult posted = post(path("q.tsq"), path("r.tsr"));
  ASSERT_TRUE(posted.ok()) << posted.describe() << "\n" << taid_->process().log();
  const RunResult verified = run({"openssl", "ts", "-verify", "-data", photo, "-in", path("r.tsr"),
                                  "-CAfile", path("tsa.pem")});
  EXPECT_TRUE(verified.ok()) << verified.describe();
  EXPECT_NE(verified.out.find("Verification: OK"), std::string::npos) << verified.describe();
  const RunResult text = run({"openssl", "ts", "-reply", "-in", path("r.tsr"), "-text"});
  ASSERT_TRUE(text.ok()) << text.describe();
  std::cout << text.out;
  EXPECT_NE(text.out.find("Status: Granted."), std::string::npos);
  EXPECT_NE(text.out.find("Accuracy:"), std::string::npos);

  // Garbage: a TimeStampResp that rejects it, and the server serves the next query.
  std::ofstream(path("garbage.tsq")) << "this is not DER";
  ASSERT_TRUE(post(path("garbage.tsq"), path("garbage.tsr")).ok());
  const RunResult garbage = run({"openssl", "ts", "-reply", "-in", path("garbage.tsr"), "-text"});
  EXPECT_NE(garbage.out.find("Status: Rejected."), std::string::npos) << garbage.describe();
  ASSERT_TRUE(post(path("q.tsq"), path("r2.tsr")).ok());
  EXPECT_TRUE(run({"openssl", "ts", "-verify", "-data", photo, "-in", path("r2.tsr"), "-CAfile",
                   path("tsa.pem")})
                  .ok());

  // tzdata's expired list: no time to give.
  start(kExpiredList);
  ASSERT_TRUE(wait_synchronized(tracking)) << taid_->process().log();
  ASSERT_TRUE(post(path("q.tsq"), path("r3.tsr")).ok());
  const RunResult refused = run({"openssl", "ts", "-reply", "-in", path("r3.tsr"), "-text"});
  EXPECT_NE(refused.out.find("Status: Rejected."), std::string::npos) << refused.describe();
  std::cout << "expired table: " << refused.out;
  EXPECT_EQ(taid_->process().stop(), 0) << taid_->process().describe();
}

}  // namespace
}  // namespace taid::system_test
