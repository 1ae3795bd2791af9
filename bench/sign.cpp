// bench/sign: the signing socket's tokens/s and p50/p99 latency over client count x batch window,
// the 64 x 10^4 correctness run, and beside them `openssl ts -reply` and the SHM bound read
// (taid_now) next to clock_gettime(CLOCK_TAI), all in one run: prints a table, writes CSV.
//
//   sign [--out DIR] [--seconds S] [--clients 1,8,64] [--windows-us 0,100,1000,5000]
//        [--client-threads 0,2] [--pipeline 1,8] [--check-clients N] [--check-client-threads N]
//        [--check-pipeline N]
//        [--check-requests N] [--check-window-us US] [--openssl-runs N] [--skip-check]
//        [--skip-openssl]
//
// The server is the real daemon::SignServer on its own io_context thread (a temporary key and
// serial file, max_batch 256, the daemon's defaults), with a fixed verdict: always sign, at
// CLOCK_TAI, bound 100 us, synchronized. The clients are C-style socket loops with --pipeline
// requests in flight per connection (1: send, wait for the reply, send the next; N: N requests
// sent without waiting, topped up in one send as replies come, which the server reads in one
// read and answers in one write): frame = u32 length, version 1, sha256, a 32-byte digest and an
// 8-byte nonce, both unique per request. --client-threads says how they are
// driven: 0 = a blocking thread per connection (what separate local services cost: a wake-up per
// reply), N = N threads each poll()ing its share of the connections (cheap clients: what is left
// is mostly the server's cost). Clients and server share this machine's cores, as local services
// and taid do. Latency = send to last reply byte on CLOCK_MONOTONIC. A matrix point runs
// `--seconds` after a 0.3 s warm-up; only replies completed inside the timed span count. Window 0:
// the batch timer fires at the io_context's next turn, so whatever arrived meanwhile is one batch.
// "server CPU us/token" is the server thread's CPU time over the point divided by its tokens.
//
// The check run (issue 10 item 5's figure): N clients x M requests, tokens kept; then, untimed:
// serials unique and increasing per connection; every token verifies (decode, key id, Merkle path
// to the signed root, digest, nonce, and the Ed25519 signature — checked once per distinct signed
// header: the tokens of one batch carry the same 87 signed bytes and the same signature, so
// verifying it again for each gives the same answer); Roughtime's order over all tokens in serial
// order: every earlier token's time - bound <= every later token's time + bound.
//
// openssl ts -reply: a throw-away ECDSA P-256 TSA (OpenSSL's PKCS7 cannot sign with Ed25519) in a
// temporary directory, one query made by `openssl ts -query`, then N sequential process spawns of
// `openssl ts -reply`, timed from spawn to exit: process start-up is included, which is what a
// caller of the CLI pays. One reply is checked with `openssl ts -verify` (untimed); `ts -reply`
// exits 0 even when it could not sign.
//
// The SHM read: a record published by lib/publish's ShmClockWriter, read with
// include/taid/taid_clock.h's taid_now(), against clock_gettime(CLOCK_TAI); CPU time of 2·10^6
// calls each, interleaved, 9 rounds, medians (as bench/shm_read, without Google Benchmark).
//
// Exit status: 1 when the check run FAILs or a run had errors, 2 on a set-up error. Missed speed
// goals are reported, not failed: this is a bench.
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <taid/taid_clock.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "daemon/sign_server.hpp"
#include "publish/shm_clock_writer.hpp"
#include "stamp/merkle.hpp"
#include "stamp/token.hpp"
#include "stamp/wire.hpp"

extern char** environ;

namespace {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using taid::stamp::Bytes;
using taid::stamp::ByteView;

constexpr std::uint64_t kBoundNs = 100'000;  // the fixed verdict's bound
constexpr double kWarmupS = 0.3;
constexpr std::size_t kDigestBytes = 32;
constexpr std::size_t kNonceBytes = 8;
constexpr std::size_t kRequestBody = 3 + kDigestBytes + 1 + kNonceBytes;  // 44

// Goals from issue 10.
constexpr double kGoalTokensPerS = 100'000;
constexpr double kGoalP99Us = 1000;
constexpr double kGoalReadRatio = 2;

std::int64_t clock_ns(clockid_t id) {
  timespec ts{};
  clock_gettime(id, &ts);
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

double seconds_between(std::int64_t from_ns, std::int64_t to_ns) {
  return static_cast<double>(to_ns - from_ns) / 1e9;
}

double ratio(std::uint64_t a, std::uint64_t b) {
  return b == 0 ? 0 : static_cast<double>(a) / static_cast<double>(b);
}

std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string one, five, fifteen;
  in >> one >> five >> fifteen;
  return one + " " + five + " " + fifteen;
}

// Busy CPU time of the whole machine so far (s), from /proc/stat: user, nice, system, irq,
// softirq (guest time is inside user). Minus this process's CPU time over the same span, it is
// what the other jobs on the machine took: the load average alone would count our own threads.
double machine_busy_s() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  std::uint64_t user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0;
  in >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq;
  const long hz = ::sysconf(_SC_CLK_TCK);
  return static_cast<double>(user + nice + system + irq + softirq) /
         static_cast<double>(hz > 0 ? hz : 100);
}

struct OthersMeter {
  double busy_s = machine_busy_s();
  std::int64_t own_ns = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
  std::int64_t wall_ns = clock_ns(CLOCK_MONOTONIC);
  // Cores the rest of the machine kept busy since construction (0 .. cores).
  double cores() const {
    const double wall_s = seconds_between(wall_ns, clock_ns(CLOCK_MONOTONIC));
    const double own_s = seconds_between(own_ns, clock_ns(CLOCK_PROCESS_CPUTIME_ID));
    return wall_s > 0 ? std::max(0.0, (machine_busy_s() - busy_s - own_s) / wall_s) : 0;
  }
};

double load_1min() {
  std::ifstream in("/proc/loadavg");
  double one = 0;
  in >> one;
  return one;
}

// ---------------------------------------------------------------------------------------------
// The server under test: a SignServer on its own io_context thread.

class Server {
 public:
  Server(const fs::path& dir, std::chrono::microseconds window) : work_(io_.get_executor()) {
    taid::daemon::SignSettings s;
    s.socket_path = (dir / "sign.sock").string();
    s.key_path = (dir / "sign.key").string();
    s.serial_path = (dir / "sign.serials").string();
    s.batch_window = window;
    socket_path_ = s.socket_path;
    // open() before the thread runs: then nothing else touches io_ yet.
    auto server = taid::daemon::SignServer::open(io_, s, [] {
      taid::stamp::BatchTime t;
      t.tai_ns = clock_ns(CLOCK_TAI);
      t.bound_ns = kBoundNs;
      return taid::daemon::TimeVerdict{t};
    });
    if (!server) {
      std::fprintf(stderr, "sign: SignServer::open: %s\n", server.error().message().c_str());
      std::exit(2);
    }
    server_ = std::move(*server);
    thread_ = std::thread([this] { io_.run(); });
  }
  ~Server() {
    // The server is closed on its own thread, as the header asks.
    std::promise<void> done;
    asio::post(io_, [&] {
      server_.reset();
      done.set_value();
    });
    done.get_future().wait();
    work_.reset();
    io_.stop();
    thread_.join();
  }
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  const std::string& socket_path() const { return socket_path_; }
  const taid::stamp::PublicKey& public_key() const { return server_->public_key(); }
  // CPU time the server's thread has used so far (ns): its cost per token, apart from the
  // clients' on the same cores.
  std::int64_t cpu_ns() {
    clockid_t id{};
    if (pthread_getcpuclockid(thread_.native_handle(), &id) != 0) return 0;
    return clock_ns(id);
  }
  taid::daemon::SignCounters counters() {
    std::promise<taid::daemon::SignCounters> p;
    asio::post(io_, [&] { p.set_value(server_->counters()); });
    return p.get_future().get();
  }

 private:
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::unique_ptr<taid::daemon::SignServer> server_;
  std::string socket_path_;
  std::thread thread_;
};

// ---------------------------------------------------------------------------------------------
// The clients: what a C program would write, on blocking sockets.

int connect_unix(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  timeval tv{10, 0};  // a hung server ends the run with errors instead of hanging it
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  return fd;
}

bool write_all(int fd, const std::uint8_t* p, std::size_t n) {
  while (n > 0) {
    const ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w <= 0) return false;
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

// Request i of client c: a digest and a nonce no other request has (the check matches them).
void fill_digest(std::uint32_t client, std::uint64_t seq, std::uint8_t* out) {
  for (std::size_t i = 0; i < kDigestBytes; ++i)
    out[i] = static_cast<std::uint8_t>(0xa5 ^ (i * 37));
  for (int i = 0; i < 4; ++i) out[i] = static_cast<std::uint8_t>(client >> (24 - 8 * i));
  for (int i = 0; i < 8; ++i) out[4 + i] = static_cast<std::uint8_t>(seq >> (56 - 8 * i));
}
void fill_nonce(std::uint32_t client, std::uint64_t seq, std::uint8_t* out) {
  const std::uint64_t v = (std::uint64_t{client} << 40) ^ seq ^ 0x5eed'0000'0000'0000;
  for (int i = 0; i < 8; ++i) out[i] = static_cast<std::uint8_t>(v >> (56 - 8 * i));
}

struct Sample {
  std::int64_t done_ns;     // CLOCK_MONOTONIC at the reply's last byte
  std::int64_t latency_ns;  // from the send
};

struct ClientResult {
  std::vector<Sample> samples;
  std::uint64_t errors = 0;  // a refusal, a short read, a bad reply
  std::string first_error;
  // Only with keep_tokens: every token, back to back, and where each starts.
  Bytes blob;
  std::vector<std::uint32_t> offsets;
};

// One connection's state: the requests it has in flight (up to the pipeline depth) and the bytes
// of replies received but not yet taken.
struct Connection {
  int fd = -1;
  std::uint32_t id = 0;
  std::uint64_t sent = 0;             // requests sent; request i has seq i
  std::uint64_t answered = 0;         // replies taken: the next reply is for seq `answered`
  std::vector<std::int64_t> sent_ns;  // CLOCK_MONOTONIC at each in-flight send, by seq % depth
  std::vector<std::uint8_t> out;      // the frames of one send
  std::vector<std::uint8_t> in;       // received bytes, [0, have)
  std::size_t have = 0;
  ClientResult* out_result = nullptr;
  bool open = false;

  void fail(std::string why) {
    if (out_result->errors++ == 0) out_result->first_error = std::move(why);
  }
};

struct Shared {
  std::string path;
  std::uint64_t max_requests = 0;  // per connection; 0: until stop
  std::size_t depth = 1;           // requests in flight per connection
  bool keep_tokens = false;
  std::atomic<int> ready{0};
  std::atomic<bool> go{false}, stop{false};
};

bool wants_more(const Connection& c, const Shared& shared) {
  return !shared.stop.load(std::memory_order_relaxed) &&
         (shared.max_requests == 0 || c.sent < shared.max_requests);
}

// Tops the connection up to `depth` requests in flight, all frames in one send(). With depth 1
// it is the plain request-reply loop: one send per reply.
bool send_more(Connection& c, const Shared& shared) {
  c.out.clear();
  while (c.sent - c.answered < shared.depth && wants_more(c, shared)) {
    const std::size_t at = c.out.size();
    c.out.resize(at + 4 + kRequestBody);
    std::uint8_t* r = c.out.data() + at;
    r[0] = r[1] = r[2] = 0;
    r[3] = kRequestBody;
    r[4] = taid::stamp::kWireVersion;
    r[5] = static_cast<std::uint8_t>(taid::stamp::HashAlgorithm::sha256);
    r[6] = kDigestBytes;
    fill_digest(c.id, c.sent, r + 7);
    r[7 + kDigestBytes] = kNonceBytes;
    fill_nonce(c.id, c.sent, r + 8 + kDigestBytes);
    ++c.sent;
  }
  if (c.out.empty()) return true;
  const std::int64_t now = clock_ns(CLOCK_MONOTONIC);
  for (std::uint64_t seq = c.sent - c.out.size() / (4 + kRequestBody); seq < c.sent; ++seq)
    c.sent_ns[seq % shared.depth] = now;
  if (write_all(c.fd, c.out.data(), c.out.size())) return true;
  c.fail("send failed or timed out");
  return false;
}

// One recv() (blocking, or after poll() said readable), then every complete reply in the buffer,
// in order. One recv() usually brings whole frames (the server writes each reply at once, all
// that are ready together): a C client that reads the length first and then the body pays a
// system call more per token, and on this machine system calls are most of a token's cost.
bool take_replies(Connection& c, const Shared& shared) {
  const ssize_t r = ::recv(c.fd, c.in.data() + c.have, c.in.size() - c.have, 0);
  if (r <= 0) {
    c.fail("receive failed or timed out");
    return false;
  }
  c.have += static_cast<std::size_t>(r);
  const std::int64_t done = clock_ns(CLOCK_MONOTONIC);
  std::size_t pos = 0;
  while (c.have - pos >= 4) {
    const std::uint8_t* f = c.in.data() + pos;
    const std::size_t n =
        std::size_t{f[0]} << 24 | std::size_t{f[1]} << 16 | std::size_t{f[2]} << 8 | f[3];
    if (n == 0 || n > taid::stamp::kMaxReplyBody || c.answered == c.sent) {
      c.fail("bad reply frame");  // empty, too long, or a reply to nothing asked
      return false;
    }
    if (c.have - pos < 4 + n) break;
    const std::uint8_t* body = f + 4;
    const std::uint8_t* end = body + n;
    const std::uint64_t seq = c.answered++;
    pos += 4 + n;
    if (*body != 0) {
      // An error reply keeps the connection usable; the run counts it.
      c.fail("reply code " + std::to_string(*body) + ": " + std::string(body + 1, end));
      continue;
    }
    c.out_result->samples.push_back({done, done - c.sent_ns[seq % shared.depth]});
    if (shared.keep_tokens) {
      c.out_result->offsets.push_back(static_cast<std::uint32_t>(c.out_result->blob.size()));
      c.out_result->blob.insert(c.out_result->blob.end(), body + 1, end);
    }
  }
  std::memmove(c.in.data(), c.in.data() + pos, c.have - pos);
  c.have -= pos;
  return true;
}

bool finished(const Connection& c, const Shared& shared) {
  return c.answered == c.sent && !wants_more(c, shared);
}

// One client thread driving `conns`: with one, a plain blocking loop (a local service's client);
// with several, poll() over them. Each keeps up to `depth` requests in flight.
void run_clients(Shared& shared, std::vector<Connection>& conns) {
  for (Connection& c : conns) {
    c.fd = connect_unix(shared.path);
    c.open = c.fd >= 0;
    if (!c.open) c.fail(std::string("connect: ") + std::strerror(errno));
    c.sent_ns.assign(shared.depth, 0);
    // Room for every reply in flight, whatever their size.
    c.in.resize(shared.depth * (4 + taid::stamp::kMaxReplyBody));
  }
  shared.ready += static_cast<int>(conns.size());
  while (!shared.go.load(std::memory_order_acquire)) std::this_thread::yield();
  const auto finish = [](Connection& c) {
    ::close(c.fd);
    c.open = false;
  };
  if (conns.size() == 1) {
    Connection& c = conns[0];
    while (c.open && send_more(c, shared) && !finished(c, shared) && take_replies(c, shared)) {
    }
    if (c.fd >= 0) ::close(c.fd);
    return;
  }
  std::vector<pollfd> fds(conns.size());
  std::size_t open = 0;
  for (Connection& c : conns) {
    if (c.open && send_more(c, shared) && !finished(c, shared)) {
      ++open;
    } else if (c.open) {
      finish(c);
    }
  }
  while (open > 0) {
    for (std::size_t i = 0; i < conns.size(); ++i)
      fds[i] = pollfd{conns[i].open ? conns[i].fd : -1, POLLIN, 0};
    const int ready = ::poll(fds.data(), fds.size(), 10'000);
    if (ready <= 0) {
      for (Connection& c : conns)
        if (c.open) {
          c.fail("no reply within 10 s");
          finish(c);
        }
      break;
    }
    for (std::size_t i = 0; i < conns.size(); ++i) {
      Connection& c = conns[i];
      if (!c.open || fds[i].revents == 0) continue;
      if (!take_replies(c, shared) || !send_more(c, shared) || finished(c, shared)) {
        finish(c);
        --open;
      }
    }
  }
}

struct Load {
  std::vector<ClientResult> results;
  std::int64_t start_ns = 0;  // when the clients were let go
  std::int64_t end_ns = 0;    // when the last one finished
};

// Connects `clients` connections over `threads` client threads (0: a thread each), lets them go
// together, stops them after `run_s` (0: when each has had max_requests answered).
Load drive(const std::string& path, std::size_t clients, std::size_t threads, std::size_t depth,
           std::uint64_t max_requests, bool keep_tokens, double run_s) {
  Load load;
  load.results.resize(clients);
  Shared shared;
  shared.path = path;
  shared.max_requests = max_requests;
  shared.depth = depth;
  shared.keep_tokens = keep_tokens;
  if (threads == 0 || threads > clients) threads = clients;
  std::vector<std::vector<Connection>> groups(threads);
  for (std::size_t c = 0; c < clients; ++c) {
    ClientResult& r = load.results[c];
    r.samples.reserve(max_requests > 0 ? max_requests : 1 << 16);
    if (keep_tokens) {
      r.offsets.reserve(max_requests);
      r.blob.reserve(max_requests * 400);
    }
    Connection conn;
    conn.id = static_cast<std::uint32_t>(c);
    conn.out_result = &r;
    groups[c % threads].push_back(conn);
  }
  std::vector<std::thread> running;
  for (auto& group : groups) running.emplace_back(run_clients, std::ref(shared), std::ref(group));
  while (shared.ready.load() < static_cast<int>(clients)) std::this_thread::yield();
  load.start_ns = clock_ns(CLOCK_MONOTONIC);
  shared.go.store(true, std::memory_order_release);
  if (run_s > 0) {
    std::this_thread::sleep_for(std::chrono::duration<double>(run_s));
    shared.stop.store(true);
  }
  for (auto& t : running) t.join();
  load.end_ns = clock_ns(CLOCK_MONOTONIC);
  return load;
}

double percentile_us(std::vector<std::int64_t>& v, double q) {
  if (v.empty()) return NAN;
  const std::size_t k =
      std::min(v.size() - 1, static_cast<std::size_t>(q * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return static_cast<double>(v[k]) / 1e3;
}

struct Stats {
  std::uint64_t tokens = 0;
  double tokens_per_s = 0, p50_us = NAN, p99_us = NAN, max_us = NAN;
  std::uint64_t errors = 0;
  std::string first_error;
};

// Replies completed within [from, to): their count per second and their latency percentiles.
Stats stats_between(const Load& load, std::int64_t from, std::int64_t to) {
  Stats s;
  std::vector<std::int64_t> lat;
  for (const ClientResult& r : load.results) {
    for (const Sample& x : r.samples)
      if (x.done_ns >= from && x.done_ns < to) lat.push_back(x.latency_ns);
    s.errors += r.errors;
    if (s.first_error.empty()) s.first_error = r.first_error;
  }
  s.tokens = lat.size();
  s.tokens_per_s = static_cast<double>(s.tokens) / seconds_between(from, to);
  s.p50_us = percentile_us(lat, 0.50);
  s.p99_us = percentile_us(lat, 0.99);
  if (!lat.empty()) s.max_us = static_cast<double>(*std::max_element(lat.begin(), lat.end())) / 1e3;
  return s;
}

bool meets_goal(const Stats& s) {
  return s.errors == 0 && s.tokens_per_s >= kGoalTokensPerS && s.p99_us < kGoalP99Us;
}

// ---------------------------------------------------------------------------------------------
// Matrix points.

struct Point {
  std::size_t clients = 0;
  std::size_t threads = 0;  // client threads driving them
  std::size_t depth = 1;    // requests in flight per connection
  long window_us = 0;
  Stats stats;
  double tokens_per_batch = 0;
  double server_us_per_token = 0;  // the io_context thread's CPU time per token
  double load_before = 0;
  double others_cores = 0;  // CPU the machine's other jobs used during the run
};

Point run_point(const fs::path& dir, std::size_t clients, std::size_t threads, std::size_t depth,
                long window_us, double seconds) {
  Point p;
  p.clients = clients;
  p.threads = threads;
  p.depth = depth;
  p.window_us = window_us;
  p.load_before = load_1min();
  Server server(dir, std::chrono::microseconds(window_us));
  const auto before = server.counters();
  const std::int64_t cpu_before = server.cpu_ns();
  const OthersMeter others;
  const Load load =
      drive(server.socket_path(), clients, threads, depth, 0, false, kWarmupS + seconds);
  p.others_cores = others.cores();
  const auto after = server.counters();
  p.server_us_per_token = ratio(static_cast<std::uint64_t>(server.cpu_ns() - cpu_before),
                                after.tokens - before.tokens) /
                          1e3;
  const std::int64_t from = load.start_ns + static_cast<std::int64_t>(kWarmupS * 1e9);
  p.stats = stats_between(load, from, from + static_cast<std::int64_t>(seconds * 1e9));
  const auto batches = after.batches - before.batches;
  p.tokens_per_batch = ratio(after.tokens - before.tokens, batches);
  return p;
}

// ---------------------------------------------------------------------------------------------
// The check run.

struct Check {
  std::size_t clients = 0;
  std::size_t threads = 0;
  std::size_t depth = 1;
  std::uint64_t requests = 0;
  long window_us = 0;
  Stats stats;
  double tokens_per_batch = 0;
  double server_us_per_token = 0;  // the io_context thread's CPU time per token
  double load_before = 0;
  double others_cores = 0;  // CPU the machine's other jobs used during the run
  std::uint64_t tokens = 0;
  std::uint64_t distinct_signatures = 0;
  std::string serials, verify, order;  // "ok" or what was wrong
  double verify_s = 0;
  bool pass() const { return serials == "ok" && verify == "ok" && order == "ok" && !stats.errors; }
};

struct Seen {
  std::uint64_t serial;
  std::int64_t tai_ns;
  std::uint64_t bound_ns;
};

Check run_check(const fs::path& dir, std::size_t clients, std::size_t threads, std::size_t depth,
                std::uint64_t requests, long window_us) {
  Check c;
  c.clients = clients;
  c.threads = threads;
  c.depth = depth;
  c.requests = requests;
  c.window_us = window_us;
  c.load_before = load_1min();
  std::optional<taid::stamp::PublicKey> key;
  Load load;
  {
    Server server(dir, std::chrono::microseconds(window_us));
    key = server.public_key();
    const auto before = server.counters();
    const std::int64_t cpu_before = server.cpu_ns();
    const OthersMeter others;
    load = drive(server.socket_path(), clients, threads, depth, requests, true, 0);
    c.others_cores = others.cores();
    const auto after = server.counters();
    c.server_us_per_token = ratio(static_cast<std::uint64_t>(server.cpu_ns() - cpu_before),
                                  after.tokens - before.tokens) /
                            1e3;
    const auto batches = after.batches - before.batches;
    c.tokens_per_batch = ratio(after.tokens - before.tokens, batches);
  }
  c.stats = stats_between(load, load.start_ns, load.end_ns + 1);

  // Untimed from here on.
  const std::int64_t verify_start = clock_ns(CLOCK_MONOTONIC);
  std::vector<Seen> all;
  all.reserve(clients * requests);
  std::set<std::string> verified;  // signed part ‖ signature, Ed25519-verified once
  c.serials = c.verify = c.order = "ok";
  const auto note = [](std::string& slot, std::string what) {
    if (slot == "ok") slot = std::move(what);
  };
  const auto key_id = key->key_id();
  for (std::size_t ci = 0; ci < clients; ++ci) {
    const ClientResult& r = load.results[ci];
    if (r.offsets.size() != requests)
      note(c.verify, "client " + std::to_string(ci) + " got " + std::to_string(r.offsets.size()) +
                         " tokens of " + std::to_string(requests));
    std::optional<std::uint64_t> last_serial;
    for (std::size_t i = 0; i < r.offsets.size(); ++i) {
      const std::size_t end = i + 1 < r.offsets.size() ? r.offsets[i + 1] : r.blob.size();
      const ByteView bytes(r.blob.data() + r.offsets[i], end - r.offsets[i]);
      std::uint8_t digest[kDigestBytes], nonce[kNonceBytes];
      fill_digest(static_cast<std::uint32_t>(ci), i, digest);
      fill_nonce(static_cast<std::uint32_t>(ci), i, nonce);
      auto token = taid::stamp::decode_token(bytes);
      if (!token) {
        note(c.verify, token.error().message());
        continue;
      }
      const taid::stamp::Token& t = *token;
      if (bytes.size() < taid::stamp::kSignedBytes) continue;  // decode_token refused it already
      std::string sealed(reinterpret_cast<const char*>(bytes.data()), taid::stamp::kSignedBytes);
      sealed.append(reinterpret_cast<const char*>(t.signature.data()), t.signature.size());
      if (!verified.count(sealed)) {
        // The full check of lib/stamp, signature included.
        auto full = taid::stamp::verify_token(bytes, taid::stamp::HashAlgorithm::sha256,
                                              ByteView(digest, kDigestBytes), *key);
        if (!full) {
          note(c.verify, full.error().message());
          continue;
        }
        verified.insert(std::move(sealed));
      } else {
        // The same signed header and signature as a token verified above: the rest of
        // verify_token's checks (key id, Merkle path to that root, algorithm, digest).
        const auto leaf = taid::stamp::merkle_leaf_hash(taid::stamp::encode_leaf(t.leaf));
        const auto root =
            taid::stamp::merkle_root_from_path(leaf, t.leaf_index, t.header.leaf_count, t.path);
        if (t.header.key_id != key_id || !root || *root != t.header.root ||
            t.leaf.algorithm != taid::stamp::HashAlgorithm::sha256 ||
            !std::equal(t.leaf.digest.begin(), t.leaf.digest.end(), digest, digest + kDigestBytes))
          note(c.verify, "token " + std::to_string(t.leaf.serial) + " does not verify");
      }
      if (!std::equal(t.leaf.nonce.begin(), t.leaf.nonce.end(), nonce, nonce + kNonceBytes))
        note(c.verify, "token " + std::to_string(t.leaf.serial) + " carries another nonce");
      if (last_serial && t.leaf.serial <= *last_serial)
        note(c.serials, "connection " + std::to_string(ci) + ": serial " +
                            std::to_string(t.leaf.serial) + " after " +
                            std::to_string(*last_serial));
      last_serial = t.leaf.serial;
      all.push_back({t.leaf.serial, t.header.tai_ns, t.header.bound_ns});
    }
  }
  c.tokens = all.size();
  c.distinct_signatures = verified.size();
  std::sort(all.begin(), all.end(),
            [](const Seen& a, const Seen& b) { return a.serial < b.serial; });
  for (std::size_t i = 1; i < all.size(); ++i)
    if (all[i].serial == all[i - 1].serial)
      note(c.serials, "serial " + std::to_string(all[i].serial) + " issued twice");
  // Roughtime: for every i < j in serial order, tai_i − bound_i ≤ tai_j + bound_j. The running
  // maximum of the left side makes it one pass.
  std::int64_t latest_earliest = INT64_MIN;
  for (const Seen& s : all) {
    const std::int64_t earliest = s.tai_ns - static_cast<std::int64_t>(s.bound_ns);
    const std::int64_t latest = s.tai_ns + static_cast<std::int64_t>(s.bound_ns);
    if (latest_earliest > latest)
      note(c.order, "serial " + std::to_string(s.serial) + ": an earlier token's time - bound is " +
                        std::to_string(latest_earliest - latest) + " ns after its time + bound");
    latest_earliest = std::max(latest_earliest, earliest);
  }
  c.verify_s = seconds_between(verify_start, clock_ns(CLOCK_MONOTONIC));
  return c;
}

// ---------------------------------------------------------------------------------------------
// openssl ts -reply.

struct OpensslResult {
  std::size_t runs = 0;
  double per_s = NAN;
  double mean_ms = NAN;
  std::string note;  // empty when it worked
};

// Runs argv with stdout and stderr to /dev/null; returns the exit status (-1: not run).
int spawn_quiet(const std::vector<std::string>& args, const fs::path& cwd) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  // Relative paths in the arguments are the temporary directory's.
  posix_spawn_file_actions_addchdir_np(&fa, cwd.c_str());
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return -1;
  int status = 0;
  if (::waitpid(pid, &status, 0) < 0) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string capture(const std::string& command) {
  std::string out;
  FILE* p = ::popen(command.c_str(), "r");
  if (!p) return out;
  char buf[512];
  while (std::fgets(buf, sizeof buf, p)) out += buf;
  ::pclose(p);
  return out;
}

OpensslResult run_openssl(const fs::path& dir, std::size_t runs) {
  OpensslResult r;
  const fs::path tsa = dir / "tsa";
  fs::create_directories(tsa);
  {
    std::ofstream cnf(tsa / "tsa.cnf");
    cnf << "[ tsa ]\ndefault_tsa = bench\n[ bench ]\nserial = " << (tsa / "serial").string()
        << "\ncrypto_device = builtin\nsigner_digest = sha256\ndefault_policy = 1.2.3.4.1\n"
           "other_policies = 1.2.3.4.2\ncerts = tsa.crt\ndigests = sha256, sha384, sha512\n"
           "accuracy = secs:0, millisecs:1\nordering = yes\ntsa_name = no\n"
           "ess_cert_id_chain = no\ness_cert_id_alg = sha256\n";
    std::ofstream(tsa / "serial") << "01\n";
    std::ofstream(tsa / "data") << "a photo's digest stands in here\n";
  }
  if (spawn_quiet(
          {"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
           "-nodes", "-keyout", "tsa.key", "-out", "tsa.crt", "-days", "2", "-subj",
           "/CN=taid bench TSA", "-addext", "extendedKeyUsage=critical,timeStamping"},
          tsa) != 0 ||
      spawn_quiet({"openssl", "ts", "-query", "-data", "data", "-sha256", "-cert", "-out", "q.tsq"},
                  tsa) != 0) {
    r.note = "openssl req / ts -query failed (is openssl installed?)";
    return r;
  }
  const std::vector<std::string> reply = {"openssl", "ts",      "-reply", "-queryfile", "q.tsq",
                                          "-signer", "tsa.crt", "-inkey", "tsa.key",    "-config",
                                          "tsa.cnf", "-out",    "r.tsr"};
  spawn_quiet(reply, tsa);  // warm the page cache: the first run pays the disk, not the CLI
  const std::int64_t start = clock_ns(CLOCK_MONOTONIC);
  for (std::size_t i = 0; i < runs; ++i) {
    if (spawn_quiet(reply, tsa) != 0) {
      r.note = "openssl ts -reply failed";
      return r;
    }
  }
  const double elapsed_s = seconds_between(start, clock_ns(CLOCK_MONOTONIC));
  const std::string verdict = capture("cd '" + tsa.string() +
                                      "' && openssl ts -verify -queryfile q.tsq -in r.tsr "
                                      "-CAfile tsa.crt 2>&1");
  if (verdict.find("Verification: OK") == std::string::npos) {
    r.note = "the reply does not verify: " + verdict;
    return r;
  }
  r.runs = runs;
  r.per_s = static_cast<double>(runs) / elapsed_s;
  r.mean_ms = elapsed_s * 1e3 / static_cast<double>(runs);
  return r;
}

// ---------------------------------------------------------------------------------------------
// The SHM bound read.

struct ReadResult {
  double tai_ns = NAN, now_ns = NAN;
  std::string note;
};

taid_clock g_clock{};

template <typename F>
double cpu_ns_per_call(F&& f, int calls) {
  const std::int64_t t0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
  for (int i = 0; i < calls; ++i) f();
  return double(clock_ns(CLOCK_THREAD_CPUTIME_ID) - t0) / calls;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? NAN : v[v.size() / 2];
}

ReadResult run_shm(const fs::path& dir) {
  ReadResult r;
  const std::string path = (dir / "clock").string();
  auto writer = taid::publish::ShmClockWriter::open(path);
  if (!writer) {
    r.note = writer.error().message();
    return r;
  }
  taid::publish::ClockRecordValues v;
  v.as_of_mono_ns = clock_ns(CLOCK_MONOTONIC);
  v.bound_ns = 50'000;
  v.max_drift_ppb = 1000;
  v.tai_offset_s = 37;
  v.tai_vouched = true;
  v.status = taid::publish::ClockStatus::synchronized;
  v.void_after_mono_ns = v.as_of_mono_ns + 3'600'000'000'000;  // the whole run
  writer->publish(v);
  if (taid_clock_open(&g_clock, path.c_str()) != 0) {
    r.note = "taid_clock_open failed";
    return r;
  }
  if (taid_now(&g_clock).status != TAID_CLOCK_SYNCHRONIZED) {
    r.note = "taid_now() does not read synchronized";
    taid_clock_close(&g_clock);
    return r;
  }
  volatile std::int64_t sink = 0;
  const auto tai = [&] {
    timespec ts{};
    clock_gettime(CLOCK_TAI, &ts);
    sink = sink + ts.tv_nsec;
  };
  const auto now = [&] {
    const taid_interval i = taid_now(&g_clock);
    sink = sink + i.latest_tai_ns;
  };
  constexpr int kCalls = 2'000'000;
  std::vector<double> tai_rounds, now_rounds;
  cpu_ns_per_call(tai, kCalls / 10);  // warm-up
  cpu_ns_per_call(now, kCalls / 10);
  for (int round = 0; round < 9; ++round) {
    tai_rounds.push_back(cpu_ns_per_call(tai, kCalls));
    now_rounds.push_back(cpu_ns_per_call(now, kCalls));
  }
  taid_clock_close(&g_clock);
  r.tai_ns = median(tai_rounds);
  r.now_ns = median(now_rounds);
  return r;
}

// ---------------------------------------------------------------------------------------------
// Output.

std::string fmt(const char* format, double v) {
  if (std::isnan(v)) return "-";
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

std::string window_name(long us) {
  if (us == 0) return "0";
  if (us % 1000 == 0) return std::to_string(us / 1000) + " ms";
  return std::to_string(us) + " us";
}

std::vector<long> parse_list(const std::string& text) {
  std::vector<long> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(std::stol(item));
  return out;
}

[[noreturn]] void usage(const char* why) {
  std::cerr
      << "sign: " << why
      << "\nusage: sign [--out DIR] [--seconds S] [--clients 1,8,64] "
         "[--windows-us 0,100,1000,5000]\n            [--client-threads 0,2] [--pipeline 1,8] "
         "[--check-pipeline N] "
         "[--check-clients N] [--check-client-threads N]\n            [--check-requests N] "
         "[--check-window-us US] [--openssl-runs N] [--skip-check] [--skip-openssl]\n";
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  fs::path out = "build/bench-sign";
  double seconds = 2.0;
  std::vector<long> clients = {1, 8, 64}, windows_us = {0, 100, 1000, 5000};
  std::size_t check_clients = 64;
  std::uint64_t check_requests = 10'000;
  long check_window_us = 1000;                // the daemon's default
  std::vector<long> client_threads = {0, 2};  // 0: a thread per client
  std::vector<long> depths = {1};             // requests in flight per connection
  std::size_t check_threads = 0;
  std::size_t check_depth = 1;
  std::size_t openssl_runs = 100;
  bool check = true, openssl = true;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string_view arg = argv[i];
      const auto value = [&]() -> std::string {
        if (i + 1 >= argc) usage("missing value");
        return argv[++i];
      };
      if (arg == "--out") {
        out = value();
      } else if (arg == "--seconds") {
        seconds = std::stod(value());
      } else if (arg == "--clients") {
        clients = parse_list(value());
      } else if (arg == "--windows-us") {
        windows_us = parse_list(value());
      } else if (arg == "--client-threads") {
        client_threads = parse_list(value());
      } else if (arg == "--pipeline") {
        depths = parse_list(value());
      } else if (arg == "--check-pipeline") {
        check_depth = std::stoul(value());
      } else if (arg == "--check-client-threads") {
        check_threads = std::stoul(value());
      } else if (arg == "--check-clients") {
        check_clients = std::stoul(value());
      } else if (arg == "--check-requests") {
        check_requests = std::stoull(value());
      } else if (arg == "--check-window-us") {
        check_window_us = std::stol(value());
      } else if (arg == "--openssl-runs") {
        openssl_runs = std::stoul(value());
      } else if (arg == "--skip-check") {
        check = false;
      } else if (arg == "--skip-openssl") {
        openssl = false;
      } else {
        usage("unknown option");
      }
    }
  } catch (const std::exception&) {
    usage("bad number");
  }
  if (seconds <= 0 || check_clients < 1 || check_clients > 128 || check_requests < 1 ||
      openssl_runs < 1 || check_depth < 1 || check_depth > 64)
    usage(
        "--seconds, --check-clients (1..128), --check-requests, --openssl-runs, "
        "--check-pipeline (1..64) out of range");
  for (long d : depths)
    if (d < 1 || d > 64) usage("--pipeline: 1..64 (the server reads no more per connection)");
  for (long c : clients)
    if (c < 1 || c > 128) usage("--clients: 1..128 (the server's connection cap)");
  for (long w : windows_us)
    if (w < 0) usage("--windows-us: >= 0");
  for (long t : client_threads)
    if (t < 0) usage("--client-threads: >= 0");
  fs::create_directories(out);
  char tmpl[] = "/tmp/taid-sign-bench-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) {
    std::perror("sign: mkdtemp");
    return 2;
  }
  const fs::path dir = tmpl;
  const std::string load_start = load_average();
  const std::int64_t started = clock_ns(CLOCK_MONOTONIC);
  int rc = 0;

  std::vector<Point> points;
  for (long w : windows_us) {
    for (long d : depths) {
      for (long c : clients) {
        std::set<std::size_t> done;  // 1 client on "2 threads" is 1 thread: run it once
        for (long t : client_threads) {
          const auto n = static_cast<std::size_t>(c);
          const std::size_t threads = t == 0 ? n : std::min(n, static_cast<std::size_t>(t));
          if (!done.insert(threads).second) continue;
          points.push_back(run_point(dir, n, threads, static_cast<std::size_t>(d), w, seconds));
          const Point& p = points.back();
          std::fprintf(stderr,
                       "  %3zu clients on %2zu threads, pipeline %2zu, window %-6s %9.0f tokens/s"
                       "  p99 %8.1f us  others %.2f cores\n",
                       p.clients, p.threads, p.depth, window_name(p.window_us).c_str(),
                       p.stats.tokens_per_s, p.stats.p99_us, p.others_cores);
          if (p.stats.errors) rc = 1;
        }
      }
    }
  }
  std::optional<Check> chk;
  if (check) {
    chk = run_check(dir, check_clients, check_threads == 0 ? check_clients : check_threads,
                    check_depth, check_requests, check_window_us);
    if (!chk->pass()) rc = 1;
  }
  OpensslResult ssl;
  if (openssl) ssl = run_openssl(dir, openssl_runs);
  const ReadResult read = run_shm(dir);
  const std::string load_end = load_average();
  const double elapsed_s = seconds_between(started, clock_ns(CLOCK_MONOTONIC));
  fs::remove_all(dir);

  // The table.
  std::printf("\n## taid signing socket: SignServer in-process, C clients over its Unix socket\n");
  std::printf(
      "%.1f s per point after %.1f s warm-up; verdict: CLOCK_TAI, bound %llu us; "
      "max_batch 256\n\n",
      seconds, kWarmupS, static_cast<unsigned long long>(kBoundNs / 1000));
  std::printf(
      "| clients | client threads | pipeline | window | tokens/s | p50 us | p99 us | max us | "
      "tokens/batch | server CPU us/token | other jobs, cores | goal >= 100k/s, p99 < 1 ms "
      "|\n");
  std::printf("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|:-:|\n");
  const Point* best = nullptr;
  std::size_t met = 0;
  for (const Point& p : points) {
    const bool ok = meets_goal(p.stats);
    met += ok;
    if (!best || p.stats.tokens_per_s > best->stats.tokens_per_s) best = &p;
    std::printf("| %zu | %zu | %zu | %s | %s | %s | %s | %s | %s | %.2f | %.2f | %s |\n", p.clients,
                p.threads, p.depth, window_name(p.window_us).c_str(),
                fmt("%.0f", p.stats.tokens_per_s).c_str(), fmt("%.1f", p.stats.p50_us).c_str(),
                fmt("%.1f", p.stats.p99_us).c_str(), fmt("%.0f", p.stats.max_us).c_str(),
                fmt("%.1f", p.tokens_per_batch).c_str(), p.server_us_per_token, p.others_cores,
                p.stats.errors ? ("ERRORS: " + p.stats.first_error).c_str()
                : ok           ? "yes"
                               : "no");
  }
  std::printf("\nThroughput goal (>= 100k tokens/s with p99 < 1 ms) met by %zu of %zu points.\n",
              met, points.size());

  if (chk) {
    std::printf(
        "\n## check: %zu clients (%zu threads, pipeline %zu) x %llu requests, window %s "
        "(untimed verification)\n\n",
        chk->clients, chk->threads, chk->depth, static_cast<unsigned long long>(chk->requests),
        window_name(chk->window_us).c_str());
    std::printf(
        "| tokens | tokens/s | p50 us | p99 us | tokens/batch | server CPU us/token | serials | "
        "verify | Roughtime order | result |\n|--:|--:|--:|--:|--:|--:|:-:|:-:|:-:|:-:|\n");
    std::printf(
        "| %llu | %s | %s | %s | %s | %.2f | %s | %s | %s | %s |\n",
        static_cast<unsigned long long>(chk->tokens), fmt("%.0f", chk->stats.tokens_per_s).c_str(),
        fmt("%.1f", chk->stats.p50_us).c_str(), fmt("%.1f", chk->stats.p99_us).c_str(),
        fmt("%.1f", chk->tokens_per_batch).c_str(), chk->server_us_per_token, chk->serials.c_str(),
        chk->verify.c_str(), chk->order.c_str(), chk->pass() ? "PASS" : "FAIL");
    std::printf(
        "Verified %llu tokens under %llu distinct signatures in %.1f s. Other jobs used %.2f "
        "cores meanwhile (load %.2f before).%s\n",
        static_cast<unsigned long long>(chk->tokens),
        static_cast<unsigned long long>(chk->distinct_signatures), chk->verify_s, chk->others_cores,
        chk->load_before,
        chk->stats.errors ? (" Client errors: " + chk->stats.first_error).c_str() : "");
  }

  std::printf("\n## side by side (same run)\n\n| what | figure | ratio |\n|:--|--:|--:|\n");
  if (best) {
    std::printf(
        "| taid signing socket, best point (%zu clients on %zu threads, pipeline %zu, window "
        "%s) | %.0f tokens/s | 1 |\n",
        best->clients, best->threads, best->depth, window_name(best->window_us).c_str(),
        best->stats.tokens_per_s);
  }
  if (openssl) {
    if (ssl.note.empty() && best) {
      std::printf(
          "| openssl ts -reply, one process per reply incl. start-up (ECDSA P-256, %zu "
          "runs, %.1f ms each) | %.1f tokens/s | taid / openssl = %.0f |\n",
          ssl.runs, ssl.mean_ms, ssl.per_s, best->stats.tokens_per_s / ssl.per_s);
    } else {
      std::printf("| openssl ts -reply | %s | - |\n", ssl.note.c_str());
    }
  }
  if (read.note.empty()) {
    std::printf("| clock_gettime(CLOCK_TAI), CPU time per call | %.1f ns | 1 |\n", read.tai_ns);
    std::printf(
        "| taid_now() (SHM record + CLOCK_TAI + coarse monotonic) | %.1f ns | %.2f "
        "(goal <= 2: %s) |\n",
        read.now_ns, read.now_ns / read.tai_ns,
        read.now_ns <= kGoalReadRatio * read.tai_ns ? "met" : "missed");
  } else {
    std::printf("| taid_now() | %s | - |\n", read.note.c_str());
  }
  std::printf(
      "\nLoad average (1/5/15 min) at start: %s; at end: %s (the bench's own threads count "
      "in it: \"other jobs, cores\" is the rest of the machine's CPU use during a point); "
      "%u cores; %.0f s in all.\n",
      load_start.c_str(), load_end.c_str(), std::thread::hardware_concurrency(), elapsed_s);

  // CSV.
  {
    std::ofstream csv(out / "sign-matrix.csv");
    csv << "clients,client_threads,pipeline,window_us,seconds,tokens,tokens_per_s,p50_us,p99_us,"
           "max_us,"
           "tokens_per_batch,server_cpu_us_per_token,errors,load_1m_before,others_cores,goal_met\n";
    for (const Point& p : points) {
      csv << p.clients << ',' << p.threads << ',' << p.depth << ',' << p.window_us << ',' << seconds
          << ',' << p.stats.tokens << ',' << fmt("%.0f", p.stats.tokens_per_s) << ','
          << fmt("%.2f", p.stats.p50_us) << ',' << fmt("%.2f", p.stats.p99_us) << ','
          << fmt("%.1f", p.stats.max_us) << ',' << fmt("%.2f", p.tokens_per_batch) << ','
          << fmt("%.3f", p.server_us_per_token) << ',' << p.stats.errors << ',' << p.load_before
          << ',' << fmt("%.2f", p.others_cores) << ',' << (meets_goal(p.stats) ? 1 : 0) << '\n';
    }
  }
  if (chk) {
    std::ofstream csv(out / "sign-check.csv");
    csv << "clients,client_threads,pipeline,requests,window_us,tokens,tokens_per_s,p50_us,p99_us,"
           "tokens_per_batch,server_cpu_us_per_token,distinct_signatures,serials,verify,"
           "roughtime_order,errors,load_1m_before,others_cores,result\n";
    const auto quote = [](const std::string& s) {
      std::string q = "\"";
      for (char ch : s) q += ch == '"' ? std::string("\"\"") : std::string(1, ch);
      return q + "\"";
    };
    csv << chk->clients << ',' << chk->threads << ',' << chk->depth << ',' << chk->requests << ','
        << chk->window_us << ',' << chk->tokens << ',' << fmt("%.0f", chk->stats.tokens_per_s)
        << ',' << fmt("%.2f", chk->stats.p50_us) << ',' << fmt("%.2f", chk->stats.p99_us) << ','
        << fmt("%.2f", chk->tokens_per_batch) << ',' << fmt("%.3f", chk->server_us_per_token) << ','
        << chk->distinct_signatures << ',' << quote(chk->serials) << ',' << quote(chk->verify)
        << ',' << quote(chk->order) << ',' << chk->stats.errors << ',' << chk->load_before << ','
        << fmt("%.2f", chk->others_cores) << ',' << (chk->pass() ? "PASS" : "FAIL") << '\n';
  }
  {
    std::ofstream csv(out / "sign-compare.csv");
    csv << "what,value,unit\n";
    if (best) {
      csv << "taid_sign_best_tokens_per_s," << fmt("%.0f", best->stats.tokens_per_s)
          << ",tokens/s\n";
    }
    if (openssl && ssl.note.empty()) {
      csv << "openssl_ts_reply_per_s," << fmt("%.2f", ssl.per_s) << ",tokens/s\n";
      csv << "openssl_ts_reply_mean_ms," << fmt("%.2f", ssl.mean_ms) << ",ms\n";
    }
    if (read.note.empty()) {
      csv << "clock_gettime_tai_ns," << fmt("%.2f", read.tai_ns) << ",ns\n";
      csv << "taid_now_ns," << fmt("%.2f", read.now_ns) << ",ns\n";
      csv << "taid_now_over_clock_gettime," << fmt("%.3f", read.now_ns / read.tai_ns) << ",ratio\n";
    }
    csv << "load_start,\"" << load_start << "\",1/5/15 min\n";
    csv << "load_end,\"" << load_end << "\",1/5/15 min\n";
  }
  std::printf("CSV in %s (sign-matrix.csv, sign-check.csv, sign-compare.csv)\n",
              out.string().c_str());
  return rc;
}
