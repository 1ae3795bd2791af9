// SignServer over real Unix sockets and threads: round trip, refusals, concurrency and ordering,
// pipelining, malformed/oversized/slow clients, restart with the same files, SO_PEERCRED allow
// list, limits.
#include "daemon/sign_server.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/wait.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <csignal>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <optional>
#include <random>
#include <thread>

#include "stamp/token.hpp"
#include "stamp/wire.hpp"

namespace taid::daemon {
namespace {

namespace asio = boost::asio;
using stamp::Bytes;
using stamp::ReplyCode;
using namespace std::chrono_literals;

constexpr std::int64_t kTaiBaseNs = 1'767'225'637'000'000'000;  // 2026-01-01T00:00:00Z in TAI
constexpr std::uint64_t kBoundNs = 200'000;

// A blocking client, as a simple C program would write one.
class Client {
 public:
  explicit Client(const std::string& path) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    timeval tv{5, 0};  // a hung server fails the test instead of hanging it
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }
  ~Client() { ::close(fd_); }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  bool connected() const { return connected_; }
  int fd() const { return fd_; }

  bool send_bytes(const Bytes& bytes) {
    std::size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
      if (n <= 0) return false;
      done += static_cast<std::size_t>(n);
    }
    return true;
  }
  bool send_request(const stamp::WireRequest& request) {
    return send_bytes(stamp::frame(stamp::encode_request_body(request)));
  }

  // The next reply, or nothing at EOF / error / timeout.
  std::optional<stamp::WireReply> read_reply() {
    std::uint8_t header[4];
    if (!read_exact(header, 4)) return std::nullopt;
    const std::size_t n = std::size_t{header[0]} << 24 | std::size_t{header[1]} << 16 |
                          std::size_t{header[2]} << 8 | header[3];
    if (n > stamp::kMaxReplyBody) return std::nullopt;
    Bytes body(n);
    if (!read_exact(body.data(), n)) return std::nullopt;
    auto reply = stamp::decode_reply_body(body);
    if (!reply) return std::nullopt;
    return *reply;
  }

  std::optional<stamp::WireReply> ask(const stamp::WireRequest& request) {
    if (!send_request(request)) return std::nullopt;
    return read_reply();
  }

  // The server closed its side: read returns 0 (or ECONNRESET) within the receive timeout.
  bool closed_by_server() {
    std::uint8_t byte;
    const ssize_t n = ::recv(fd_, &byte, 1, 0);
    return n == 0 || (n < 0 && errno == ECONNRESET);
  }

 private:
  bool read_exact(std::uint8_t* out, std::size_t n) {
    std::size_t done = 0;
    while (done < n) {
      const ssize_t got = ::recv(fd_, out + done, n - done, 0);
      if (got <= 0) return false;
      done += static_cast<std::size_t>(got);
    }
    return true;
  }
  int fd_ = -1;
  bool connected_ = false;
};

stamp::WireRequest request_for(std::string_view content, Bytes nonce = {}) {
  const auto digest = stamp::sha256(
      stamp::ByteView(reinterpret_cast<const std::uint8_t*>(content.data()), content.size()));
  return stamp::WireRequest{stamp::HashAlgorithm::sha256, Bytes(digest.begin(), digest.end()),
                            std::move(nonce)};
}

std::string text_of(const stamp::WireReply& reply) {
  return std::string(reply.payload.begin(), reply.payload.end());
}

class SignServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/taid-sign-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    io_thread_ = std::thread([this] { io_.run(); });
  }
  void TearDown() override {
    close_server();
    work_.reset();
    io_.stop();
    io_thread_.join();
    std::filesystem::remove_all(dir_);
  }

  SignSettings settings() const {
    SignSettings s;
    s.socket_path = dir_ + "/sign.sock";
    s.key_path = dir_ + "/sign.key";
    s.serial_path = dir_ + "/sign.serial";
    s.batch_window = 1ms;
    s.max_batch = 256;
    s.max_connections = 128;
    s.read_timeout = 2000ms;
    return s;
  }

  // Runs fn on the io thread (where the server lives) and waits for it.
  template <typename F>
  auto on_io(F fn) {
    std::packaged_task<decltype(fn())()> task(std::move(fn));
    auto result = task.get_future();
    asio::post(io_, [&task] { task(); });
    return result.get();
  }

  // A fake engine: synchronized at a steady time, or refusing with `refusal_code_`.
  TimeVerdict verdict() {
    ++verdicts_;
    const int code = refusal_code_.load();
    if (code != 0) return SignRefusal{static_cast<ReplyCode>(code), "refused by the test"};
    const auto since_start = std::chrono::steady_clock::now() - start_;
    // Jitter of up to ±bound/2 (the bound holds it): tokens stay in Roughtime order.
    std::uniform_int_distribution<std::int64_t> jitter(-static_cast<std::int64_t>(kBoundNs) / 2,
                                                       static_cast<std::int64_t>(kBoundNs) / 2);
    return stamp::BatchTime{
        kTaiBaseNs + std::chrono::duration_cast<std::chrono::nanoseconds>(since_start).count() +
            jitter(rng_),
        kBoundNs, stamp::Leap::none, stamp::SyncStatus::synchronized};
  }

  Result<void> open_server(const SignSettings& s) {
    return on_io([&]() -> Result<void> {
      auto server = SignServer::open(io_, s, [this] { return verdict(); });
      if (!server) return server.error();
      server_ = std::move(*server);
      return {};
    });
  }
  void close_server() {
    on_io([this] {
      server_.reset();
      return 0;
    });
  }
  SignCounters counters() {
    return on_io([this] { return server_->counters(); });
  }

  stamp::Token check_token(const stamp::WireReply& reply, const stamp::WireRequest& request) {
    EXPECT_EQ(reply.code, ReplyCode::ok) << text_of(reply);
    auto token = stamp::verify_token(reply.payload, request.algorithm, request.digest,
                                     server_->public_key());
    EXPECT_TRUE(token.ok()) << token.error().message();
    if (!token) return {};
    EXPECT_EQ(token->leaf.nonce, request.nonce);
    return *token;
  }

  std::string dir_;
  asio::io_context io_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_{
      asio::make_work_guard(io_)};
  std::thread io_thread_;
  std::unique_ptr<SignServer> server_;
  std::atomic<int> refusal_code_{0};
  std::atomic<int> verdicts_{0};
  std::mt19937_64 rng_{42};  // used on the io thread only
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

TEST_F(SignServerTest, RoundTripTokenVerifiesAndFilesAreMade) {
  ASSERT_TRUE(open_server(settings()).ok());
  EXPECT_TRUE(server_->key_created());
  Client client(settings().socket_path);
  ASSERT_TRUE(client.connected());
  const auto request = request_for("a photo", Bytes{1, 2, 3, 4});
  auto reply = client.ask(request);
  ASSERT_TRUE(reply.has_value());
  const stamp::Token token = check_token(*reply, request);
  EXPECT_EQ(token.leaf.serial, 1u);  // a fresh serial file starts at 1
  EXPECT_EQ(token.header.bound_ns, kBoundNs);
  EXPECT_EQ(token.header.status, stamp::SyncStatus::synchronized);
  // The same connection goes on: a second request gets the next serial.
  auto second = client.ask(request_for("another photo"));
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(check_token(*second, request_for("another photo")).leaf.serial, 2u);
  // A different digest does not verify.
  EXPECT_FALSE(stamp::verify_token(second->payload, stamp::HashAlgorithm::sha256, request.digest,
                                   server_->public_key())
                   .ok());

  struct stat st {};
  ASSERT_EQ(::stat(settings().socket_path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0666u);
  ASSERT_EQ(::stat(settings().key_path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  ASSERT_EQ(::stat((settings().key_path + ".pub").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0644u);
  std::ifstream pub_file(settings().key_path + ".pub");
  const std::string pem((std::istreambuf_iterator<char>(pub_file)),
                        std::istreambuf_iterator<char>());
  auto pub = stamp::PublicKey::parse(pem);
  ASSERT_TRUE(pub.ok()) << pub.error().message();
  EXPECT_EQ(*pub, server_->public_key());

  close_server();
  EXPECT_NE(::access(settings().socket_path.c_str(), F_OK), 0);  // removed at close
}

TEST_F(SignServerTest, RefusalsCarryTheVerdictsCodeAndTheConnectionGoesOn) {
  ASSERT_TRUE(open_server(settings()).ok());
  Client client(settings().socket_path);
  const auto request = request_for("x");
  for (ReplyCode code :
       {ReplyCode::unsynchronized, ReplyCode::tai_unvouched, ReplyCode::bound_too_large}) {
    refusal_code_ = static_cast<int>(code);
    auto reply = client.ask(request);
    ASSERT_TRUE(reply.has_value());
    EXPECT_EQ(reply->code, code);
    EXPECT_EQ(text_of(*reply), "refused by the test");
  }
  refusal_code_ = 0;
  auto reply = client.ask(request);
  ASSERT_TRUE(reply.has_value());
  // Refused batches use no serials.
  EXPECT_EQ(check_token(*reply, request).leaf.serial, 1u);
  EXPECT_EQ(counters().refused, 3u);
}

TEST_F(SignServerTest, ConcurrentClientsGetUniqueOrderedVerifiableTokens) {
  constexpr int kClients = 64;
  constexpr int kRequests = 200;
  ASSERT_TRUE(open_server(settings()).ok());
  struct Issued {
    std::uint64_t serial;
    std::int64_t tai_ns;
    std::uint64_t bound_ns;
    stamp::Hash32 root;
    std::uint32_t leaf_index;
    std::uint32_t leaf_count;
  };
  std::vector<std::vector<Issued>> per_client(kClients);
  std::atomic<int> failures{0};
  const stamp::PublicKey key = server_->public_key();
  std::vector<std::thread> threads;
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      Client client(settings().socket_path);
      for (int i = 0; i < kRequests; ++i) {
        const auto request =
            request_for("client " + std::to_string(c) + " request " + std::to_string(i),
                        Bytes{std::uint8_t(c), std::uint8_t(i)});
        auto reply = client.ask(request);
        if (!reply || reply->code != ReplyCode::ok) {
          ++failures;
          return;
        }
        auto token = stamp::verify_token(reply->payload, request.algorithm, request.digest, key);
        if (!token || token->leaf.nonce != request.nonce) {
          ++failures;
          return;
        }
        per_client[c].push_back({token->leaf.serial, token->header.tai_ns, token->header.bound_ns,
                                 token->header.root, token->leaf_index, token->header.leaf_count});
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_EQ(failures.load(), 0);

  std::vector<Issued> all;
  for (const auto& tokens : per_client) {
    ASSERT_EQ(tokens.size(), static_cast<std::size_t>(kRequests));
    // One client's requests are sequential: its serials strictly increase.
    for (std::size_t i = 1; i < tokens.size(); ++i)
      EXPECT_LT(tokens[i - 1].serial, tokens[i].serial);
    all.insert(all.end(), tokens.begin(), tokens.end());
  }
  std::sort(all.begin(), all.end(),
            [](const Issued& a, const Issued& b) { return a.serial < b.serial; });
  std::size_t violations = 0;
  std::map<stamp::Hash32, std::vector<const Issued*>> batches;
  for (std::size_t i = 0; i < all.size(); ++i) {
    if (i > 0) {
      EXPECT_NE(all[i - 1].serial, all[i].serial);  // no duplicate
      // Roughtime: earlier time − bound ≤ later time + bound.
      if (all[i - 1].tai_ns - static_cast<std::int64_t>(all[i - 1].bound_ns) >
          all[i].tai_ns + static_cast<std::int64_t>(all[i].bound_ns))
        ++violations;
    }
    batches[all[i].root].push_back(&all[i]);
  }
  EXPECT_EQ(violations, 0u);
  EXPECT_EQ(all.size(), static_cast<std::size_t>(kClients * kRequests));
  // Within a batch: one time, consecutive serials in leaf order. Batching really happened.
  std::size_t largest = 0;
  for (const auto& [root, members] : batches) {
    largest = std::max(largest, members.size());
    EXPECT_EQ(members.size(), members.front()->leaf_count);
    for (std::size_t j = 0; j < members.size(); ++j) {
      EXPECT_EQ(members[j]->leaf_index, j);
      EXPECT_EQ(members[j]->serial, members.front()->serial + j);
      EXPECT_EQ(members[j]->tai_ns, members.front()->tai_ns);
    }
  }
  EXPECT_GT(largest, 1u);
  EXPECT_LT(batches.size(), all.size());
  const SignCounters n = counters();
  EXPECT_EQ(n.tokens, all.size());
  EXPECT_EQ(n.batches, batches.size());
  std::printf("%zu tokens in %zu batches (largest %zu)\n", all.size(), batches.size(), largest);
}

TEST_F(SignServerTest, PipelinedRequestsGetTheirRepliesInRequestOrder) {
  ASSERT_TRUE(open_server(settings()).ok());
  Client client(settings().socket_path);
  // 200 requests in one send (more than the 64 a connection may have unanswered: the server
  // stops reading and reads on as replies go out), a code-2 request among them: it must not
  // overtake the requests before it, and the connection goes on after it.
  constexpr int kRequests = 200;
  constexpr int kBad = 70;
  std::vector<stamp::WireRequest> requests;
  Bytes stream;
  for (int i = 0; i < kRequests; ++i) {
    requests.push_back(request_for("pipelined " + std::to_string(i), Bytes{std::uint8_t(i)}));
    if (i == kBad) requests.back().digest.resize(20);
    const Bytes f = stamp::frame(stamp::encode_request_body(requests.back()));
    stream.insert(stream.end(), f.begin(), f.end());
  }
  ASSERT_TRUE(client.send_bytes(stream));
  std::uint64_t last_serial = 0;
  for (int i = 0; i < kRequests; ++i) {
    auto reply = client.read_reply();
    ASSERT_TRUE(reply.has_value()) << i;
    if (i == kBad) {
      EXPECT_EQ(reply->code, ReplyCode::bad_digest) << text_of(*reply);
      continue;
    }
    // The token is the one for request i (its digest and nonce), serials strictly increase.
    const stamp::Token token = check_token(*reply, requests[i]);
    EXPECT_GT(token.leaf.serial, last_serial) << i;
    last_serial = token.leaf.serial;
  }
  const SignCounters n = counters();
  EXPECT_EQ(n.tokens, static_cast<std::uint64_t>(kRequests - 1));
  EXPECT_EQ(n.malformed, 1u);
  EXPECT_LT(n.batches, static_cast<std::uint64_t>(kRequests - 1));  // they were batched
}

TEST_F(SignServerTest, PipelinedThenMalformedGetsEarlierRepliesThenCode1AndClose) {
  ASSERT_TRUE(open_server(settings()).ok());
  {  // two good requests, a bad version, a good one that must not be read any more
    Client client(settings().socket_path);
    Bytes stream;
    Bytes bad = stamp::encode_request_body(request_for("bad"));
    bad[0] = 2;
    for (const Bytes& body : {stamp::encode_request_body(request_for("a")),
                              stamp::encode_request_body(request_for("b")), bad,
                              stamp::encode_request_body(request_for("c"))}) {
      const Bytes f = stamp::frame(body);
      stream.insert(stream.end(), f.begin(), f.end());
    }
    ASSERT_TRUE(client.send_bytes(stream));
    for (const char* content : {"a", "b"}) {
      auto reply = client.read_reply();
      ASSERT_TRUE(reply.has_value()) << content;
      check_token(*reply, request_for(content));
    }
    auto reply = client.read_reply();
    ASSERT_TRUE(reply.has_value());
    EXPECT_EQ(reply->code, ReplyCode::malformed);
    EXPECT_NE(text_of(*reply).find("version"), std::string::npos) << text_of(*reply);
    EXPECT_TRUE(client.closed_by_server());
  }
  {  // a client that sends its requests and shuts down its side still gets every reply
    Client client(settings().socket_path);
    Bytes stream;
    for (const char* content : {"x", "y", "z"}) {
      const Bytes f = stamp::frame(stamp::encode_request_body(request_for(content)));
      stream.insert(stream.end(), f.begin(), f.end());
    }
    ASSERT_TRUE(client.send_bytes(stream));
    ASSERT_EQ(::shutdown(client.fd(), SHUT_WR), 0);
    for (const char* content : {"x", "y", "z"}) {
      auto reply = client.read_reply();
      ASSERT_TRUE(reply.has_value()) << content;
      check_token(*reply, request_for(content));
    }
    EXPECT_TRUE(client.closed_by_server());
  }
  EXPECT_EQ(counters().tokens, 5u);
  EXPECT_EQ(counters().malformed, 1u);
}

TEST_F(SignServerTest, PipeliningClientThatDoesNotReadIsDroppedAfterTheTimeout) {
  SignSettings s = settings();
  s.read_timeout = 1000ms;
  ASSERT_TRUE(open_server(s).ok());
  Client greedy(s.socket_path);
  // 4000 requests (~190 kB) sent, no reply read: ~1.9 MB of replies cannot fit the socket
  // buffers, so a write of the server's stalls and its deadline cuts the connection.
  Bytes stream;
  for (int i = 0; i < 4000; ++i) {
    const Bytes f = stamp::frame(stamp::encode_request_body(request_for("greedy")));
    stream.insert(stream.end(), f.begin(), f.end());
  }
  std::thread sender([&] { greedy.send_bytes(stream); });  // blocks once the server stops reading
  {  // meanwhile another client is served at once (and leaves: its idle timeout must not count)
    Client other(s.socket_path);
    auto reply = other.ask(request_for("other"));
    ASSERT_TRUE(reply.has_value());
    check_token(*reply, request_for("other"));
  }
  for (int i = 0; i < 300 && counters().timeouts == 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(counters().timeouts, 1u);
  // What was written before the cut can still be read, then the connection ends.
  int replies = 0;
  while (auto r = greedy.read_reply()) {
    EXPECT_EQ(r->code, ReplyCode::ok);
    ++replies;
  }
  sender.join();
  EXPECT_GT(replies, 0);
  EXPECT_LT(replies, 4000);
}

TEST_F(SignServerTest, MalformedAndOversizedGetCode1WhileOthersAreServed) {
  ASSERT_TRUE(open_server(settings()).ok());
  std::atomic<bool> stop{false};
  std::atomic<int> good{0}, bad{0};
  std::thread good_client([&] {
    Client client(settings().socket_path);
    for (int i = 0; i < 20000 && !stop; ++i) {
      auto reply = client.ask(request_for("good"));
      (reply && reply->code == ReplyCode::ok ? good : bad)++;
    }
  });
  struct Joiner {
    std::atomic<bool>& stop;
    std::thread& thread;
    ~Joiner() {
      stop = true;
      thread.join();
    }
  } joiner{stop, good_client};
  // The good client is in the middle of its conversation before the bad ones come...
  for (int i = 0; i < 500 && good.load() == 0; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_GT(good.load(), 0);

  {  // wrong version
    Client c(settings().socket_path);
    Bytes body = stamp::encode_request_body(request_for("v"));
    body[0] = 2;
    ASSERT_TRUE(c.send_bytes(stamp::frame(body)));
    auto reply = c.read_reply();
    ASSERT_TRUE(reply.has_value());
    EXPECT_EQ(reply->code, ReplyCode::malformed);
    EXPECT_NE(text_of(*reply).find("version"), std::string::npos) << text_of(*reply);
    EXPECT_TRUE(c.closed_by_server());
  }
  {  // oversized: a frame announcing 1000 bytes
    Client c(settings().socket_path);
    ASSERT_TRUE(c.send_bytes(Bytes{0, 0, 0x03, 0xe8, 1, 1, 32}));
    auto reply = c.read_reply();
    ASSERT_TRUE(reply.has_value());
    EXPECT_EQ(reply->code, ReplyCode::malformed);
    EXPECT_EQ(text_of(*reply), "frame longer than 132 bytes");
    EXPECT_TRUE(c.closed_by_server());
  }
  {  // 20-byte digest for SHA-256: code 2, and the connection stays usable
    Client c(settings().socket_path);
    auto wrong = request_for("d");
    wrong.digest.resize(20);
    auto reply = c.ask(wrong);
    ASSERT_TRUE(reply.has_value());
    EXPECT_EQ(reply->code, ReplyCode::bad_digest);
    auto next = c.ask(request_for("d"));
    ASSERT_TRUE(next.has_value());
    check_token(*next, request_for("d"));
  }
  {  // garbage bytes that frame as a tiny body
    Client c(settings().socket_path);
    ASSERT_TRUE(c.send_bytes(Bytes{0, 0, 0, 2, 0xff, 0xff}));
    auto reply = c.read_reply();
    ASSERT_TRUE(reply.has_value());
    EXPECT_EQ(reply->code, ReplyCode::malformed);
    EXPECT_TRUE(c.closed_by_server());
  }
  // ...and is still served after them, on the same connection.
  const int after_bad = good.load();
  for (int i = 0; i < 500 && good.load() <= after_bad; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_GT(good.load(), after_bad);
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(counters().malformed, 4u);
}

TEST_F(SignServerTest, SlowClientIsCutOffWhileOthersAreServed) {
  SignSettings s = settings();
  s.read_timeout = 1000ms;
  ASSERT_TRUE(open_server(s).ok());
  Client slow(s.socket_path);
  const Bytes frame = stamp::frame(stamp::encode_request_body(request_for("slow")));
  const auto started = std::chrono::steady_clock::now();
  std::optional<std::chrono::steady_clock::duration> good_latency;
  bool replied = false;
  for (std::size_t i = 0; i < frame.size(); ++i) {  // 40 bytes at 5/s: 8 s if never cut off
    if (!slow.send_bytes(Bytes{frame[i]})) break;
    if (i == 2) {  // meanwhile another client is served at once
      Client other(s.socket_path);
      const auto t0 = std::chrono::steady_clock::now();
      auto reply = other.ask(request_for("fast"));
      ASSERT_TRUE(reply.has_value());
      check_token(*reply, request_for("fast"));
      good_latency = std::chrono::steady_clock::now() - t0;
    }
    pollfd p{slow.fd(), POLLIN, 0};
    if (::poll(&p, 1, 200) > 0) {
      replied = true;
      break;
    }
  }
  ASSERT_TRUE(replied);
  auto reply = slow.read_reply();
  const auto elapsed = std::chrono::steady_clock::now() - started;
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->code, ReplyCode::malformed);
  EXPECT_EQ(text_of(*reply), "request not complete within 1000 ms");
  EXPECT_TRUE(slow.closed_by_server());
  EXPECT_GE(elapsed, 900ms);
  EXPECT_LT(elapsed, 2500ms);
  ASSERT_TRUE(good_latency.has_value());
  EXPECT_LT(*good_latency, 500ms);
  EXPECT_EQ(counters().timeouts, 1u);
}

TEST_F(SignServerTest, SerialsKeepIncreasingAcrossARestartWithTheSameKey) {
  ASSERT_TRUE(open_server(settings()).ok());
  const stamp::PublicKey first_key = server_->public_key();
  std::uint64_t last = 0;
  {
    Client c(settings().socket_path);
    for (int i = 0; i < 3; ++i) {
      auto reply = c.ask(request_for("before"));
      ASSERT_TRUE(reply.has_value());
      last = check_token(*reply, request_for("before")).leaf.serial;
    }
  }
  EXPECT_EQ(last, 3u);
  close_server();
  ASSERT_TRUE(open_server(settings()).ok());
  EXPECT_FALSE(server_->key_created());
  EXPECT_EQ(server_->public_key(), first_key);
  Client c(settings().socket_path);
  auto reply = c.ask(request_for("after"));
  ASSERT_TRUE(reply.has_value());
  const std::uint64_t after = check_token(*reply, request_for("after")).leaf.serial;
  EXPECT_GT(after, last);
  // The serial store skips to its persisted ceiling: at most one block is lost.
  EXPECT_LE(after, last + 65536 + 1);
}

TEST_F(SignServerTest, AllowListRefusesAnUnlistedUidWithCode6) {
  SignSettings s = settings();
  s.allowed_uids = {::getuid() + 1};
  ASSERT_TRUE(open_server(s).ok());
  {
    Client c(s.socket_path);
    auto reply = c.read_reply();  // refused at accept, before any request
    ASSERT_TRUE(reply.has_value());
    EXPECT_EQ(reply->code, ReplyCode::not_allowed);
    EXPECT_EQ(text_of(*reply),
              "uid " + std::to_string(::getuid()) + " is not allowed to sign (signallow)");
    EXPECT_TRUE(c.closed_by_server());
  }
  close_server();
  s.allowed_uids = {::getuid() + 1, ::getuid()};
  ASSERT_TRUE(open_server(s).ok());
  Client c(s.socket_path);
  auto reply = c.ask(request_for("allowed"));
  ASSERT_TRUE(reply.has_value());
  check_token(*reply, request_for("allowed"));
}

TEST_F(SignServerTest, ConnectionsBeyondTheCapGetBusy) {
  SignSettings s = settings();
  s.max_connections = 2;
  ASSERT_TRUE(open_server(s).ok());
  Client a(s.socket_path), b(s.socket_path);
  // Make sure both are accepted (served) before the third arrives.
  ASSERT_TRUE(a.ask(request_for("a")).has_value());
  ASSERT_TRUE(b.ask(request_for("b")).has_value());
  Client c(s.socket_path);
  auto reply = c.read_reply();
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->code, ReplyCode::busy);
  EXPECT_EQ(text_of(*reply), "busy: 2 connections open");
}

TEST_F(SignServerTest, SocketPathRules) {
  SignSettings s = settings();
  ASSERT_TRUE(open_server(s).ok());
  // A second server on the same path while the first answers: refused, first one untouched.
  auto second = on_io([&] { return SignServer::open(io_, s, [] { return TimeVerdict{}; }).ok(); });
  EXPECT_FALSE(second);
  {
    Client c(s.socket_path);
    ASSERT_TRUE(c.ask(request_for("still")).has_value());
  }
  close_server();

  // A stale socket file (bound, nobody listening) is replaced.
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, s.socket_path.c_str(), sizeof addr.sun_path - 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ::close(fd);
  ASSERT_TRUE(open_server(s).ok());
  close_server();

  // A regular file at the path is not deleted.
  std::ofstream(s.socket_path) << "not a socket\n";
  auto refused = on_io([&] { return SignServer::open(io_, s, [] { return TimeVerdict{}; }); });
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message().find("is not a socket"), std::string::npos);
  EXPECT_TRUE(std::filesystem::is_regular_file(s.socket_path));
}

TEST_F(SignServerTest, BadKeyFileIsAClearErrorAndNothingIsBound) {
  SignSettings s = settings();
  {
    std::ofstream key(s.key_path);
    key << "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n";
  }
  ASSERT_EQ(::chmod(s.key_path.c_str(), 0600), 0);
  auto result = on_io([&] { return SignServer::open(io_, s, [] { return TimeVerdict{}; }); });
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().message().rfind("signkey: ", 0), 0u) << result.error().message();
  EXPECT_NE(::access(s.socket_path.c_str(), F_OK), 0);

  ASSERT_EQ(::chmod(s.key_path.c_str(), 0644), 0);  // readable by others: refused too
  auto loose = on_io([&] { return SignServer::open(io_, s, [] { return TimeVerdict{}; }); });
  ASSERT_FALSE(loose.ok());
  std::printf("errors: %s | %s\n", result.error().message().c_str(),
              loose.error().message().c_str());
}

// kill -9 with a batch pending: a server in a child process signs some tokens, then gets more
// requests inside a long batch window and is killed before it seals them. A new server on the
// same files must hand out serials above every serial the dead one sent. No fixture: nothing
// but this thread runs when the test forks.
TEST(SignServerCrashTest, SerialsKeepIncreasingAfterKill9MidBatch) {
  char tmpl[] = "/tmp/taid-sign-crash-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  SignSettings s;
  s.socket_path = dir + "/sign.sock";
  s.key_path = dir + "/sign.key";
  s.serial_path = dir + "/sign.serial";
  auto fixed_time = [] {
    return TimeVerdict{
        stamp::BatchTime{kTaiBaseNs, kBoundNs, stamp::Leap::none, stamp::SyncStatus::synchronized}};
  };
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    asio::io_context io;
    SignSettings cs = s;
    // Five requests fill a batch and are sealed at once; fewer wait for the 60 s window.
    cs.max_batch = 5;
    cs.batch_window = 60s;
    auto server = SignServer::open(io, cs, fixed_time);
    if (!server) ::_exit(3);
    io.run();
    ::_exit(0);
  }
  // A failed ASSERT below must not leave the child serving for ever.
  struct Reaper {
    pid_t pid;
    ~Reaper() {
      if (pid > 0) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
      }
    }
  } reaper{child};
  for (int i = 0; i < 200 && ::access(s.socket_path.c_str(), F_OK) != 0; ++i)
    std::this_thread::sleep_for(10ms);
  std::uint64_t highest = 0;
  {
    std::vector<std::unique_ptr<Client>> first;
    for (int i = 0; i < 5; ++i) {
      first.push_back(std::make_unique<Client>(s.socket_path));
      ASSERT_TRUE(first.back()->connected());
      ASSERT_TRUE(first.back()->send_request(request_for("before the crash")));
    }
    for (auto& c : first) {
      auto reply = c->read_reply();
      ASSERT_TRUE(reply.has_value());
      ASSERT_EQ(reply->code, ReplyCode::ok);
      auto token = stamp::decode_token(reply->payload);
      ASSERT_TRUE(token.ok());
      highest = std::max(highest, token->leaf.serial);
    }
  }
  // In flight when it dies: a batch of 4 waiting for its window, never sealed.
  std::vector<std::unique_ptr<Client>> in_flight;
  for (int i = 0; i < 4; ++i) {
    in_flight.push_back(std::make_unique<Client>(s.socket_path));
    ASSERT_TRUE(in_flight.back()->send_request(request_for("during the crash")));
  }
  ASSERT_EQ(::kill(child, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  reaper.pid = 0;
  EXPECT_TRUE(WIFSIGNALED(status));
  for (auto& c : in_flight) EXPECT_FALSE(c->read_reply().has_value());  // no reply, ever
  EXPECT_EQ(highest, 5u);

  // The socket file is left behind by the dead process: the new server replaces it.
  asio::io_context io;
  auto server = SignServer::open(io, s, fixed_time);
  ASSERT_TRUE(server.ok()) << server.error().message();
  std::thread io_thread([&] { io.run_for(5s); });
  {
    Client c(s.socket_path);
    auto reply = c.ask(request_for("after the crash"));
    ASSERT_TRUE(reply.has_value());
    ASSERT_EQ(reply->code, ReplyCode::ok);
    auto token =
        stamp::verify_token(reply->payload, stamp::HashAlgorithm::sha256,
                            request_for("after the crash").digest, (*server)->public_key());
    ASSERT_TRUE(token.ok()) << token.error().message();
    EXPECT_GT(token->leaf.serial, highest);
    std::printf("highest before kill -9: %llu, first after: %llu\n",
                static_cast<unsigned long long>(highest),
                static_cast<unsigned long long>(token->leaf.serial));
  }
  io.stop();
  io_thread.join();
  server->reset();
  std::filesystem::remove_all(dir);
}

#ifdef TAISTAMP_BIN
struct ToolRun {
  int exit_code;
  std::string out;
};
ToolRun run_tool(const std::string& command) {
  ToolRun r{-1, {}};
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return r;
  char buffer[512];
  while (std::fgets(buffer, sizeof buffer, pipe) != nullptr) r.out += buffer;
  const int status = ::pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// The taistamp tool end to end against a real SignServer: sign, verify offline, pubkey, refusal.
TEST_F(SignServerTest, TaistampSignsAndVerifiesOffline) {
  ASSERT_TRUE(open_server(settings()).ok());
  const std::string bin = TAISTAMP_BIN;
  const std::string sock = settings().socket_path;
  const std::string pub = settings().key_path + ".pub";
  const std::string file = dir_ + "/photo.jpg";
  std::ofstream(file) << "not really a jpeg\n";
  const std::string leap = std::string(TAID_LEAP_DATA_DIR) + "/leap-seconds.list";

  ToolRun sign = run_tool(bin + " -s " + sock + " sign " + file +
                          " --meta camera=X100 --meta gps=1,2 --pubkey " + pub);
  ASSERT_EQ(sign.exit_code, 0) << sign.out;
  EXPECT_NE(sign.out.find("signature verified"), std::string::npos) << sign.out;
  EXPECT_NE(sign.out.find("serial      1\n"), std::string::npos) << sign.out;

  // Metadata order does not matter; the 2026-01-01 TAI instant is 37 s ahead of UTC.
  ToolRun verify = run_tool(bin + " verify " + file + " " + file + ".taitoken --pubkey " + pub +
                            " --meta gps=1,2 --meta camera=X100 --leapseclist " + leap);
  ASSERT_EQ(verify.exit_code, 0) << verify.out;
  std::printf("%s", verify.out.c_str());
  EXPECT_NE(verify.out.find("time (TAI)  2026-01-01T00:00:37"), std::string::npos) << verify.out;
  EXPECT_NE(verify.out.find("time (UTC)  2026-01-01T00:00:00"), std::string::npos) << verify.out;
  EXPECT_NE(verify.out.find("bound       +/- 200.000 us"), std::string::npos) << verify.out;

  ToolRun json_verify =
      run_tool(bin + " --json verify " + file + " " + file + ".taitoken --pubkey " +
               server_->public_key().hex() + " --meta gps=1,2 --meta camera=X100" +
               " --leapseclist /nonexistent/leap.list");
  ASSERT_EQ(json_verify.exit_code, 0) << json_verify.out;
  const auto doc = nlohmann::json::parse(json_verify.out);
  EXPECT_EQ(doc["serial"], 1);
  EXPECT_EQ(doc["bound_ns"], kBoundNs);
  EXPECT_EQ(doc["status"], "synchronized");
  // docs/TOKEN.md's content-digest vector (computed independently with Python's hashlib).
  EXPECT_EQ(doc["digest"], "3e2392b28b23c6a35e94d9a9330c0d6650fb755b27b6fc0ff7fbb92452b14eef");
  EXPECT_FALSE(doc.contains("utc"));  // no leap table: TAI only, and why
  EXPECT_NE(doc["utc_error"].get<std::string>().find("/nonexistent/leap.list"), std::string::npos);

  // Other metadata, or a changed file: rejected with exit 1.
  ToolRun other_meta = run_tool(bin + " verify " + file + " " + file + ".taitoken --pubkey " + pub +
                                " --meta camera=X100");
  EXPECT_EQ(other_meta.exit_code, 1) << other_meta.out;
  EXPECT_NE(other_meta.out.find("token rejected: digest"), std::string::npos) << other_meta.out;
  std::ofstream(file, std::ios::app) << "!";
  ToolRun changed = run_tool(bin + " verify " + file + " " + file + ".taitoken --pubkey " + pub +
                             " --meta gps=1,2 --meta camera=X100");
  EXPECT_EQ(changed.exit_code, 1) << changed.out;

  ToolRun key = run_tool(bin + " --json pubkey --key " + settings().key_path);
  ASSERT_EQ(key.exit_code, 0) << key.out;
  EXPECT_EQ(nlohmann::json::parse(key.out)["hex"], server_->public_key().hex());
  ToolRun key_pub = run_tool(bin + " pubkey --key " + pub);
  EXPECT_NE(key_pub.out.find(server_->public_key().hex()), std::string::npos) << key_pub.out;

  refusal_code_ = static_cast<int>(ReplyCode::tai_unvouched);
  ToolRun refused =
      run_tool(bin + " -s " + sock + " sign " + file + " -o " + dir_ + "/refused.tok");
  EXPECT_EQ(refused.exit_code, 4) << refused.out;
  EXPECT_NE(refused.out.find("taid refused: tai-unvouched (code 4): refused by the test"),
            std::string::npos)
      << refused.out;
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/refused.tok"));

  ToolRun usage = run_tool(bin + " verify " + file);
  EXPECT_EQ(usage.exit_code, 2) << usage.out;
}
#endif

}  // namespace
}  // namespace taid::daemon
