// System test (issue 11, item 5): clients that no one here wrote, against taid's NTP server.
//
// The server runs in the server namespace, the clients in the client namespace, over veth. Each
// test runs against three servers with the same chrony directives: chronyd 4.3 (the reference:
// when a check fails against it too, the harness is wrong, not taid), taid's user path, and taid
// with `xdpserver` on its veth end (the XDP program answers plain requests in the kernel and
// passes the rest up). Both ends share this kernel's clock, so the true offset is 0 and each
// client must see |offset| < 100 µs:
//   a. chronyd -Q (one shot, prints the offset and exits; never touches the clock), up to three
//      runs, the best must pass (basic mode: load delays a reply after its T3 was written);
//   b. chronyd -x with xleave, polling every 250 ms: `chronyc ntpdata` says interleaved;
//   c. NTPsec's ntpdig -j -p 4 (its best of 4 samples), up to three runs likewise;
//   d. taid -x as client of the server.
// Then, from a datagram socket in the client namespace: bad input (truncated, oversized,
// malformed, version 0 and 5, modes 4, 6 and 7, a zero transmit field, a MAC) gets no reply
// and, in taid, is counted by reason in `taictl serverstats --json` (and, with XDP, passed up by
// reason) while a good request keeps being answered; a denied /30 gets nothing; a rate-limited
// client gets its burst once and then little (KoD RATE with `kod`), while a second address is
// still served; a reply is never larger than its request; without `local` the reply says LI=3
// (stratum 16 from taid, 0 from chronyd).
//
// Root only (the rule of tests/system): skipped with the reason elsewhere, failed under CI=true.
// No process here can set the clock: chronyd runs with -x or -Q, taid with -x, and all of them
// without CAP_SYS_TIME in their bounding set.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/bpf.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "lib/ntp/packet.hpp"
#include "tests/system/fixture.hpp"

namespace taid::system_test {
namespace {

using json = nlohmann::json;

// One kernel clock on both ends: anything above this is measurement error (issue 11).
constexpr double kMaxOffsetS = 100e-6;
constexpr std::int64_t kMaxOffsetNs = 100'000;
constexpr std::uint16_t kNtpPort = 123;

// chronyd refuses a command-socket folder that others may enter (PEERS.md: 0750).
std::filesystem::path private_dir(const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  std::filesystem::permissions(dir, std::filesystem::perms(0750));
  return dir;
}

// "key : value" lines as chronyc prints them; "" when the key is absent.
std::string chronyc_field(const std::string& text, const std::string& key) {
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(0, colon);
    while (!name.empty() && name.back() == ' ') name.pop_back();
    if (name != key) continue;
    std::string value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.erase(value.begin());
    return value;
  }
  return {};
}

// The leading number of a chronyc value ("-0.000000926 seconds"), nullopt if none.
std::optional<double> leading_number(const std::string& text) {
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  if (end == text.c_str()) return std::nullopt;
  return value;
}

// ---- the server under test ----

enum class ServerKind { chronyd, taid, taid_xdp };

struct ServerCase {
  std::string name;
  ServerKind kind;
};
void PrintTo(const ServerCase& c, std::ostream* out) { *out << c.name; }

bool is_taid(ServerKind kind) { return kind != ServerKind::chronyd; }

// A counter of `taictl serverstats --json` by path ("dropped", "too_short"); -1 when absent, so
// an assertion on a missing field fails with the JSON in its message.
std::int64_t counter(const json& stats, std::initializer_list<const char*> path) {
  const json* at = &stats;
  for (const char* key : path) {
    if (!at->is_object() || !at->contains(key)) return -1;
    at = &at->at(key);
  }
  return at->is_number_integer() ? at->get<std::int64_t>() : -1;
}

// ---- a namespace's sockets and programs ----

// Runs `body` in a thread that has entered namespace `ns` (sockets, links and interface indexes
// keep the namespace they were made in); its error, or the failure to enter, is thrown here.
void in_namespace(const std::string& ns, const std::function<std::string()>& body) {
  std::string error;
  std::thread([&] {
    const std::string path = "/run/netns/" + ns;
    const int ns_fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (ns_fd < 0) {
      error = "open " + path + ": " + std::strerror(errno);
      return;
    }
    const int entered = ::setns(ns_fd, CLONE_NEWNET);
    ::close(ns_fd);
    error = entered == 0 ? body() : "setns " + ns + ": " + std::strerror(errno);
  }).join();
  if (!error.empty()) throw std::runtime_error(error);
}

// A UDP socket made inside namespace `ns`, optionally bound to `bind_address`.
class NsSocket {
 public:
  NsSocket(const std::string& ns, const std::string& bind_address = "") {
    in_namespace(ns, [&]() -> std::string {
      fd_ = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      if (fd_ < 0) return std::string("socket: ") + std::strerror(errno);
      if (bind_address.empty()) return {};
      sockaddr_in local{};
      local.sin_family = AF_INET;
      ::inet_pton(AF_INET, bind_address.c_str(), &local.sin_addr);
      if (::bind(fd_, reinterpret_cast<const sockaddr*>(&local), sizeof local) != 0) {
        const std::string error = "bind " + bind_address + ": " + std::strerror(errno);
        ::close(fd_);
        fd_ = -1;
        return error;
      }
      return {};
    });
  }
  NsSocket(const NsSocket&) = delete;
  NsSocket& operator=(const NsSocket&) = delete;
  ~NsSocket() { ::close(fd_); }

  void send_to(const std::string& address, const std::vector<std::uint8_t>& bytes) const {
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(kNtpPort);
    ::inet_pton(AF_INET, address.c_str(), &to.sin_addr);
    const ssize_t sent = ::sendto(fd_, bytes.data(), bytes.size(), 0,
                                  reinterpret_cast<const sockaddr*>(&to), sizeof to);
    if (sent != static_cast<ssize_t>(bytes.size())) {
      throw std::runtime_error(std::string("sendto: ") + std::strerror(errno));
    }
  }

  // The next datagram within `timeout`, nullopt if none came.
  std::optional<std::vector<std::uint8_t>> receive(std::chrono::milliseconds timeout) const {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return std::nullopt;
    std::vector<std::uint8_t> buffer(65536);
    const ssize_t n = ::recv(fd_, buffer.data(), buffer.size(), 0);
    if (n < 0) return std::nullopt;
    buffer.resize(static_cast<std::size_t>(n));
    return buffer;
  }

  // Reads whatever is queued without waiting: replies that came late.
  std::vector<std::vector<std::uint8_t>> drain() const {
    std::vector<std::vector<std::uint8_t>> late;
    while (auto datagram = receive(0ms)) late.push_back(std::move(*datagram));
    return late;
  }

 private:
  int fd_ = -1;
};

// XDP_PASS on the client end of the veth. Native XDP_TX on veth hands the frame to the peer's
// NAPI ring, which exists only while the peer has an XDP program of its own (the kernel's
// selftests attach an "xdp_dummy" for this; see tests/unit/bpf_xdp_server_test.cpp): without it
// the XDP server's replies vanish on this link, though not on a NIC. Held by a link; closing the
// link detaches it, and the device goes with its namespace anyway.
class PeerXdpPass {
 public:
  PeerXdpPass(const std::string& ns, const std::string& interface) {
    in_namespace(ns, [&]() -> std::string {
      const bpf_insn program[] = {
          {BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, XDP_PASS},
          {BPF_JMP | BPF_EXIT, 0, 0, 0, 0},
      };
      bpf_prog_load_opts load{};
      load.sz = sizeof load;
      load.expected_attach_type = BPF_XDP;  // bpf_link_create(BPF_XDP) insists
      program_fd_ = bpf_prog_load(BPF_PROG_TYPE_XDP, "xdp_pass", "GPL", program, 2, &load);
      if (program_fd_ < 0) return std::string("load XDP_PASS: ") + std::strerror(errno);
      const int ifindex = static_cast<int>(::if_nametoindex(interface.c_str()));
      if (ifindex == 0) return "no interface " + interface + " in " + ns;
      link_fd_ = bpf_link_create(program_fd_, ifindex, BPF_XDP, nullptr);
      if (link_fd_ < 0) return "attach XDP_PASS to " + interface + ": " + std::strerror(errno);
      return {};
    });
  }
  PeerXdpPass(const PeerXdpPass&) = delete;
  PeerXdpPass& operator=(const PeerXdpPass&) = delete;
  ~PeerXdpPass() {
    if (link_fd_ >= 0) ::close(link_fd_);
    if (program_fd_ >= 0) ::close(program_fd_);
  }

 private:
  int program_fd_ = -1;
  int link_fd_ = -1;
};

// ---- requests ----

// A well-formed client request, version 4, with a transmit field that names it.
std::vector<std::uint8_t> client_request(std::uint64_t transmit_raw) {
  ntp::Packet packet;
  packet.version = 4;
  packet.mode = ntp::Mode::client;
  packet.poll = 6;
  packet.precision = -20;
  packet.transmit_time = NtpTimestamp::from_raw(transmit_raw);
  return ntp::encode(packet);
}

// Byte 0 is LI (2 bits), VN (3), mode (3).
std::vector<std::uint8_t> with_first_byte(std::vector<std::uint8_t> bytes, unsigned leap,
                                          unsigned version, unsigned mode) {
  bytes[0] = static_cast<std::uint8_t>((leap << 6) | (version << 3) | mode);
  return bytes;
}

// An RFC 7822 extension field of `length` bytes (header included) of a type no one defines.
void append_extension(std::vector<std::uint8_t>& bytes, std::uint16_t length) {
  const std::uint16_t type = 0x7a1d;
  bytes.push_back(static_cast<std::uint8_t>(type >> 8));
  bytes.push_back(static_cast<std::uint8_t>(type));
  bytes.push_back(static_cast<std::uint8_t>(length >> 8));
  bytes.push_back(static_cast<std::uint8_t>(length));
  for (std::uint16_t i = 4; i < length; ++i) bytes.push_back(static_cast<std::uint8_t>(i));
}

class TransmitIds {
 public:
  std::uint64_t next() {
    std::uint64_t value = 0;
    while (value == 0) value = engine_();
    return value;
  }

 private:
  std::mt19937_64 engine_{std::random_device{}()};
};

// ---- the fixture ----

class ServerTest : public SystemTest, public ::testing::WithParamInterface<ServerCase> {
 protected:
  ServerKind kind() const { return GetParam().kind; }
  const std::string& server_address() const { return net_->server_address(); }

  // The server with chrony directives `directives` (allow, deny, local, ratelimit) on the server
  // end of the pair, port 123; taid_xdp adds `xdpserver` on that veth end. Returns once it
  // answers its control socket (chronyc tracking, taictl serverstats).
  void start_server(const std::vector<std::string>& directives) {
    std::vector<std::string> lines = directives;
    lines.push_back("bindaddress " + server_address());
    lines.push_back("port 123");
    const auto dir = private_dir(dir_->path() / "server");
    if (kind() == ServerKind::chronyd) {
      lines.insert(lines.end(), {"driftfile " + (dir / "chronyd.drift").string(),
                                 "pidfile " + (dir / "chronyd.pid").string(),
                                 "bindcmdaddress " + (dir / "chronyd.sock").string(), "cmdport 0"});
      write_lines(dir / "chronyd.conf", lines);
      // -u root: the _chrony user does not exist because the package is unpacked, not installed.
      chronyd_socket_ = dir / "chronyd.sock";
      chronyd_server_.emplace(in_ns_without_clock_control(
                                  net_->server_ns(), {chronyd_binary().string(), "-x", "-u", "root",
                                                      "-d", "-f", (dir / "chronyd.conf").string()}),
                              dir_->path() / "server-chronyd.log");
      const bool up = wait_until(10s, 100ms, [&] {
        return chronyd_server_->exited() ||
               run({chronyc_binary().string(), "-h", chronyd_socket_.string(), "tracking"}, 3s)
                   .ok();
      });
      ASSERT_TRUE(up && !chronyd_server_->exited())
          << "chronyd did not come up: " << chronyd_server_->describe() << "\n"
          << chronyd_server_->log();
      return;
    }
    if (kind() == ServerKind::taid_xdp) {
      lines.push_back("xdpserver " + net_->server_interface());
      peer_xdp_.emplace(net_->client_ns(), net_->client_interface());
    }
    TaidOptions options;
    options.log_name = "server-taid.log";
    taid_.emplace(net_->server_ns(), dir, lines, options);
    std::optional<json> stats;
    const bool up = wait_until(10s, 100ms, [&] {
      if (taid_->process().exited()) return true;
      stats = taictl_serverstats();
      return stats.has_value() && stats->value("enabled", false);
    });
    ASSERT_TRUE(up && !taid_->process().exited() && stats)
        << "taid's server did not come up: " << taid_->process().describe() << "; "
        << taid_->last_error() << "\n"
        << taid_->process().log();
  }

  std::optional<json> taictl_serverstats() const {
    const RunResult r = taid_->taictl({"serverstats", "--json"});
    if (!r.ok()) return std::nullopt;
    auto parsed = json::parse(r.out, nullptr, false);
    if (parsed.is_discarded()) return std::nullopt;
    return parsed;
  }

  // taid's counters (the test fails if taid does not give them).
  json serverstats() {
    const auto stats = taictl_serverstats();
    EXPECT_TRUE(stats.has_value()) << taid_->taictl({"serverstats", "--json"}).describe();
    return stats.value_or(json::object());
  }

  std::string chronyc_server(const std::string& command) const {
    return run({chronyc_binary().string(), "-h", chronyd_socket_.string(), command}, 5s).out;
  }

  // Every counter of the server, for the record and for failure messages.
  std::string server_counters() {
    if (kind() == ServerKind::chronyd) return chronyc_server("serverstats");
    return taid_->taictl({"serverstats", "--json"}).out;
  }

  // One good request and its reply, checked: mode 4, origin = our transmit. nullopt when no
  // reply came within `timeout`. A reply to an earlier request of ours that came after its
  // timeout (a loaded machine) goes to late_, for the tests that count replies.
  std::optional<ntp::Packet> good_exchange(const NsSocket& socket,
                                           std::chrono::milliseconds timeout = 500ms) {
    const std::uint64_t id = ids_.next();
    sent_.insert(id);
    socket.send_to(server_address(), client_request(id));
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left <= 0ms) return std::nullopt;
      const auto datagram = socket.receive(left);
      if (!datagram) return std::nullopt;
      const auto reply = ntp::decode(*datagram);
      if (!reply) {
        ADD_FAILURE() << "undecodable reply: " << reply.error().message();
        continue;
      }
      if (reply->origin_time.raw() != id) {
        if (sent_.count(reply->origin_time.raw()) != 0) {
          late_.push_back(*reply);
        } else {
          ADD_FAILURE() << "a reply to something else (origin " << reply->origin_time.raw() << ")";
        }
        continue;
      }
      EXPECT_EQ(reply->mode, ntp::Mode::server);
      EXPECT_EQ(datagram->size(), ntp::kHeaderSize);
      return *reply;
    }
  }

  // Replies to our earlier requests still queued on `socket` go to late_.
  void collect_late(const NsSocket& socket) {
    for (const auto& datagram : socket.drain()) {
      const auto reply = ntp::decode(datagram);
      ASSERT_TRUE(reply && sent_.count(reply->origin_time.raw()) != 0)
          << "a datagram that answers none of our requests";
      late_.push_back(*reply);
    }
  }

  // Retries a good exchange until the server answers (it may still be binding), bounded.
  bool wait_until_serving(const NsSocket& socket) {
    return wait_until(10s, 0ms, [&] { return good_exchange(socket, 300ms).has_value(); });
  }

  // A second address on the client end (host .6 of the pair's /29: add_server_address never
  // gives it to the server in this test): a second client on the same link.
  std::string add_client_address() const {
    const std::string& client = net_->client_address();
    const std::string address = client.substr(0, client.rfind('.')) + ".6";
    std::vector<std::string> argv = NetnsPair::exec_in(net_->client_ns());
    argv.insert(argv.end(),
                {"ip", "addr", "add", address + "/29", "dev", net_->client_interface()});
    const RunResult r = run(argv, 5s);
    if (!r.ok()) throw std::runtime_error(join_argv(argv) + ": " + r.describe());
    return address;
  }

  void TearDown() override {
    if (HasFailure() && chronyd_server_) std::cout << "--- " << chronyd_server_->describe() << "\n";
    SystemTest::TearDown();
    if (!HasFailure() || !dir_) return;
    std::cout << "--- server counters:\n" << server_counters();
    for (const char* sub : {"server", "client"}) {
      std::error_code ec;
      for (const auto& entry : std::filesystem::directory_iterator(dir_->path() / sub, ec)) {
        const auto extension = entry.path().extension();
        if (extension != ".log" && extension != ".conf" && extension != ".out") continue;
        std::cout << "--- " << sub << "/" << entry.path().filename().string() << ":\n"
                  << read_file(entry.path());
      }
    }
  }

  std::optional<PeerXdpPass> peer_xdp_;
  std::optional<Process> chronyd_server_;
  std::filesystem::path chronyd_socket_;
  TransmitIds ids_;
  std::set<std::uint64_t> sent_;
  std::vector<ntp::Packet> late_;
};

const std::vector<std::string> kServe{"allow all", "local stratum 10"};

// ---- a. chronyd -Q ----

TEST_P(ServerTest, ChronydOneShotSeesZeroOffset) {
  ASSERT_NO_FATAL_FAILURE(start_server(kServe));
  // -Q: measure, print, exit; with directives on the command line no config file is read. It
  // prints no delay to pick the best sample by, and its three samples are all basic mode, where
  // a loaded machine delays a reply after its T3 was written (seen: -103 us with ctest -j2 and
  // builds running, against -5..-20 us otherwise); so up to three runs, the best must pass. A
  // server that is off by a bias fails all three.
  static const std::regex wrong_by(R"(System clock wrong by ([-+0-9.e]+) seconds)");
  std::optional<double> best_s;
  std::string outputs;
  for (int attempt = 1; attempt <= 3 && !(best_s && std::abs(*best_s) < kMaxOffsetS); ++attempt) {
    const auto started = std::chrono::steady_clock::now();
    const RunResult r =
        run(in_ns_without_clock_control(net_->client_ns(),
                                        {chronyd_binary().string(), "-Q", "-u", "root",
                                         "server " + server_address() + " iburst maxsamples 4",
                                         "pidfile " + (dir_->path() / "chronyd-q.pid").string()}),
            30s);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    std::smatch match;
    const std::string output = r.out + r.err;
    outputs += output;
    ASSERT_TRUE(r.ok() && std::regex_search(output, match, wrong_by)) << r.describe() << "\n"
                                                                      << output;
    const double offset_s = std::stod(match[1].str());
    std::cout << GetParam().name << ": chronyd -Q run " << attempt << ": offset " << offset_s * 1e6
              << " us in " << seconds << " s\n";
    if (!best_s || std::abs(offset_s) < std::abs(*best_s)) best_s = offset_s;
  }
  RecordProperty("offset_ns", std::to_string(std::llround(*best_s * 1e9)));
  EXPECT_LT(std::abs(*best_s), kMaxOffsetS) << outputs;
  // chronyd -Q stops at its first clock update: three exchanges, plain requests (no xleave).
  if (!is_taid(kind())) {
    const std::string stats = chronyc_server("serverstats");
    EXPECT_GE(leading_number(chronyc_field(stats, "NTP packets received")).value_or(0), 3) << stats;
    return;
  }
  const json stats = serverstats();
  std::cout << "serverstats: " << stats.dump() << "\n";
  if (kind() == ServerKind::taid_xdp) {
    EXPECT_GE(counter(stats, {"xdp", "answered"}), 3) << stats.dump();
  } else {
    EXPECT_GE(counter(stats, {"replied"}), 3) << stats.dump();
  }
}

// ---- b. chronyd -x with xleave ----

TEST_P(ServerTest, ChronydInterleavedClientSeesZeroOffset) {
  ASSERT_NO_FATAL_FAILURE(start_server(kServe));
  const auto dir = private_dir(dir_->path() / "client");
  const auto socket = dir / "chronyd.sock";
  // chrony 4.3 polls down to 2^-6 s; 250 ms gives ~40 exchanges in 10 s.
  write_lines(
      dir / "chronyd.conf",
      {"server " + server_address() + " iburst xleave minpoll -2 maxpoll -2", "port 0",
       "driftfile " + (dir / "chronyd.drift").string(), "pidfile " + (dir / "chronyd.pid").string(),
       "bindcmdaddress " + socket.string(), "cmdport 0"});
  Process client(
      in_ns_without_clock_control(net_->client_ns(), {chronyd_binary().string(), "-x", "-u", "root",
                                                      "-d", "-f", (dir / "chronyd.conf").string()}),
      dir / "chronyd.log");
  const auto chronyc = [&](const std::string& command) {
    return run({chronyc_binary().string(), "-h", socket.string(), command}, 5s).out;
  };
  std::string ntpdata;
  const auto started = std::chrono::steady_clock::now();
  // Interleaved, and past chrony's first few samples (its offset then comes from good ones).
  const bool interleaved = wait_until(30s, 250ms, [&] {
    if (client.exited()) return true;
    ntpdata = chronyc("ntpdata " + server_address());
    return chronyc_field(ntpdata, "Interleaved") == "Yes" &&
           leading_number(chronyc_field(ntpdata, "Total good RX")).value_or(0) >= 12;
  });
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  ASSERT_FALSE(client.exited()) << client.describe() << "\n" << client.log();
  ASSERT_TRUE(interleaved) << "not interleaved after 30 s:\n" << ntpdata;
  // `chronyc -c sourcestats`: name,NP,NR,span,frequency,skew,offset s,std dev s.
  const RunResult csv =
      run({chronyc_binary().string(), "-h", socket.string(), "-c", "sourcestats"}, 5s);
  std::vector<std::string> fields;
  {
    std::istringstream in(csv.out.substr(0, csv.out.find('\n')));
    for (std::string field; std::getline(in, field, ',');) fields.push_back(field);
  }
  ASSERT_EQ(fields.size(), 8u) << csv.describe() << csv.out;
  const auto last_offset_s = leading_number(chronyc_field(ntpdata, "Offset"));
  const double estimate_s = std::stod(fields[6]);
  ASSERT_TRUE(last_offset_s) << ntpdata;
  std::cout << GetParam().name << ": chronyd xleave after " << seconds << " s: last offset "
            << *last_offset_s * 1e6 << " us, sourcestats offset " << estimate_s * 1e6
            << " us, std dev " << std::stod(fields[7]) * 1e6 << " us\n"
            << ntpdata;
  RecordProperty("offset_ns", std::to_string(std::llround(estimate_s * 1e9)));
  EXPECT_LT(std::abs(*last_offset_s), kMaxOffsetS) << ntpdata;
  EXPECT_LT(std::abs(estimate_s), kMaxOffsetS) << csv.out;
  if (!is_taid(kind())) {
    const std::string stats = chronyc_server("serverstats");
    EXPECT_GT(leading_number(chronyc_field(stats, "Interleaved NTP packets")).value_or(0), 0)
        << stats;
    return;
  }
  // The interleaved replies came from the user path: the XDP program passes up every request
  // whose origin field is set (it may be interleaved; only user space holds the TX stamps).
  const json stats = serverstats();
  std::cout << "serverstats: " << stats.dump() << "\n";
  EXPECT_GT(counter(stats, {"interleaved"}), 0) << stats.dump();
  if (kind() == ServerKind::taid_xdp) {
    EXPECT_GE(counter(stats, {"xdp", "passed", "origin_set"}), counter(stats, {"interleaved"}))
        << stats.dump();
  }
}

// ---- c. NTPsec ntpdig ----

TEST_P(ServerTest, NtpdigSeesZeroOffset) {
  ASSERT_NO_FATAL_FAILURE(start_server(kServe));
  std::vector<std::string> argv = NetnsPair::exec_in(net_->client_ns());
  // -p 4: four samples, of which ntpdig prints the one of least synchronisation distance. Its
  // stamps are Python's, taken around the socket calls: load lands on one side (seen: -76 us
  // from chronyd under ctest -j2), so up to three runs, the best must pass; a bias fails all.
  argv.insert(argv.end(), {"env", "PYTHONPATH=" + ntp_python_path().string(), "python3",
                           ntpdig_binary().string(), "-j", "-p", "4", server_address()});
  json best;
  for (int attempt = 1; attempt <= 3 && !(best.contains("offset") &&
                                          std::abs(best["offset"].get<double>()) < kMaxOffsetS);
       ++attempt) {
    const RunResult r = run(argv, 30s);
    ASSERT_TRUE(r.ok()) << r.describe() << r.out << r.err;
    const auto reply = json::parse(r.out.substr(0, r.out.find('\n')), nullptr, false);
    ASSERT_TRUE(!reply.is_discarded() && reply.contains("offset") && reply.at("offset").is_number())
        << r.out << r.err;
    std::cout << GetParam().name << ": ntpdig run " << attempt << ": " << reply.dump() << "\n";
    EXPECT_EQ(reply.value("stratum", 0), 10) << reply.dump();
    EXPECT_EQ(reply.value("leap", ""), "no-leap") << reply.dump();
    if (!best.contains("offset") ||
        std::abs(reply["offset"].get<double>()) < std::abs(best["offset"].get<double>())) {
      best = reply;
    }
  }
  const double offset_s = best.at("offset").get<double>();
  RecordProperty("offset_ns", std::to_string(std::llround(offset_s * 1e9)));
  EXPECT_LT(std::abs(offset_s), kMaxOffsetS) << best.dump();
  if (!is_taid(kind())) return;
  const json stats = serverstats();
  std::cout << "serverstats: " << stats.dump() << "\n";
  if (kind() == ServerKind::taid_xdp) {
    EXPECT_GE(counter(stats, {"xdp", "answered"}), 4) << stats.dump();
  } else {
    EXPECT_GE(counter(stats, {"replied"}), 4) << stats.dump();
  }
}

// ---- d. taid as client ----

TEST_P(ServerTest, TaidClientSeesZeroOffset) {
  ASSERT_NO_FATAL_FAILURE(start_server(kServe));
  const auto dir = dir_->path() / "client";
  std::filesystem::create_directories(dir);
  TaidOptions options;
  options.log_name = "taid.log";
  TaidDaemon client(net_->client_ns(), dir,
                    {"server " + server_address() + " iburst minpoll -2 maxpoll -2"}, options);
  json source;
  const auto started = std::chrono::steady_clock::now();
  const bool enough = wait_for_source(client, server_address(), 30s, source, [](const json& s) {
    return int_field(s, "samples").value_or(0) >= 12;
  });
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  ASSERT_FALSE(client.process().exited()) << client.process().describe() << client.process().log();
  ASSERT_TRUE(enough) << "fewer than 12 samples in 30 s: " << source.dump() << "; "
                      << client.last_error();
  const auto offset_ns = int_field(source, "offset_ns");
  const auto last_offset_ns = int_field(source, "last_offset_ns");
  ASSERT_TRUE(offset_ns && last_offset_ns) << source.dump();
  std::cout << GetParam().name << ": taid client after " << seconds << " s: offset_ns "
            << *offset_ns << ", last_offset_ns " << *last_offset_ns << ", delay_ns "
            << source.value("delay_ns", 0) << "\n";
  RecordProperty("offset_ns", std::to_string(*offset_ns));
  EXPECT_LT(std::llabs(*offset_ns), kMaxOffsetNs) << source.dump();
  EXPECT_LT(std::llabs(*last_offset_ns), kMaxOffsetNs) << source.dump();
  EXPECT_EQ(source.value("stratum", 0), 10) << source.dump();
  if (!is_taid(kind())) return;
  const json stats = serverstats();
  std::cout << "serverstats: " << stats.dump() << "\n";
  if (kind() == ServerKind::taid_xdp) {
    EXPECT_GE(counter(stats, {"xdp", "answered"}), 12) << stats.dump();
  } else {
    EXPECT_GE(counter(stats, {"replied"}), 12) << stats.dump();
  }
}

// ---- bad input ----

struct BadRequest {
  const char* what;
  const char* reason;      // the serverstats drop reason taid must count it under
  const char* xdp_passed;  // why the XDP program passes it up (xdp.passed)
  std::vector<std::uint8_t> bytes;
  // chronyd 4.3 answers it (a zero transmit field): taid's stricter rule, checked as chrony's
  // own behaviour in the reference run so that the difference stays visible.
  bool chronyd_answers = false;
};

std::vector<BadRequest> bad_requests(TransmitIds& ids) {
  const auto good = [&] { return client_request(ids.next()); };
  std::vector<BadRequest> bad;
  auto truncated = good();
  truncated.resize(ntp::kHeaderSize - 1);
  bad.push_back({"47 bytes", "too_short", "too_short", truncated});
  // Longer than any request taid reads (1024 bytes): cut by the kernel, counted unread.
  auto oversized = good();
  oversized.resize(1200, 0xff);
  bad.push_back({"1200 bytes", "oversized", "too_long", oversized});
  // After the header, a field whose length runs past the datagram: no codec can read it.
  auto malformed = good();
  append_extension(malformed, 16);
  malformed[ntp::kHeaderSize + 2] = 0x0f;  // length 0x0f10
  bad.push_back({"a field of 3856 bytes in 16", "malformed", "too_long", malformed});
  bad.push_back(
      {"version 5", "bad_version", "bad_version_or_mode", with_first_byte(good(), 0, 5, 3)});
  bad.push_back(
      {"version 0", "bad_version", "bad_version_or_mode", with_first_byte(good(), 0, 0, 3)});
  bad.push_back(
      {"mode 4", "not_client_mode", "bad_version_or_mode", with_first_byte(good(), 0, 4, 4)});
  bad.push_back(
      {"mode 6", "not_client_mode", "bad_version_or_mode", with_first_byte(good(), 0, 4, 6)});
  bad.push_back(
      {"mode 7", "not_client_mode", "bad_version_or_mode", with_first_byte(good(), 0, 4, 7)});
  bad.push_back({"transmit 0", "zero_transmit", "zero_transmit", client_request(0), true});
  // Key id 1 and a 16-byte digest: no keys are configured, so no unauthenticated answer.
  auto mac = good();
  for (int i = 0; i < 20; ++i) mac.push_back(static_cast<std::uint8_t>(i == 3 ? 1 : 0x5a));
  bad.push_back({"a MAC of key 1", "authenticated", "too_long", mac});
  return bad;
}

// Differences of counters between two serverstats, by reason.
std::int64_t delta(const json& before, const json& after, std::initializer_list<const char*> path) {
  return counter(after, path) - counter(before, path);
}

TEST_P(ServerTest, BadInputIsDroppedAndCountedWhileGoodRequestsAreServed) {
  ASSERT_NO_FATAL_FAILURE(start_server(kServe));
  NsSocket socket(net_->client_ns());
  ASSERT_TRUE(wait_until_serving(socket)) << "no reply to a good request in 10 s";
  const json before = is_taid(kind()) ? serverstats() : json::object();
  const auto bad = bad_requests(ids_);
  std::int64_t good = 0;
  for (const auto& request : bad) {
    socket.send_to(server_address(), request.bytes);
    const auto answer = socket.receive(300ms);
    if (kind() == ServerKind::chronyd && request.chronyd_answers) {
      EXPECT_TRUE(answer.has_value()) << "chronyd 4.3 answers " << request.what;
    } else {
      EXPECT_FALSE(answer.has_value())
          << request.what << " got a reply of " << answer->size() << " bytes";
    }
    // The server keeps serving: a good request right after each bad one is answered.
    const auto reply = good_exchange(socket);
    EXPECT_TRUE(reply.has_value()) << "no reply to the good request after " << request.what;
    ++good;
  }
  std::this_thread::sleep_for(200ms);
  EXPECT_TRUE(socket.drain().empty()) << "late replies";
  if (!is_taid(kind())) return;
  const json after = serverstats();
  std::cout << GetParam().name << ": serverstats before " << before.dump() << "\nafter "
            << after.dump() << "\n";
  std::map<std::string, std::int64_t> dropped;
  std::map<std::string, std::int64_t> passed;
  for (const auto& request : bad) {
    ++dropped[request.reason];
    ++passed[request.xdp_passed];
  }
  for (const auto& [reason, n] : dropped) {
    EXPECT_EQ(delta(before, after, {"dropped", reason.c_str()}), n)
        << reason << ": " << after.dump();
  }
  // Every datagram that reaches user space is received (the oversized one too, as chronyc counts
  // it); with XDP the good requests never get there.
  const auto user = static_cast<std::int64_t>(bad.size()) +
                    (kind() == ServerKind::taid_xdp ? 0 : good);
  EXPECT_EQ(delta(before, after, {"received"}), user) << after.dump();
  if (kind() == ServerKind::taid_xdp) {
    // The good requests (origin 0, no fields) in the kernel; every bad one up, by its reason.
    EXPECT_EQ(delta(before, after, {"xdp", "answered"}), good) << after.dump();
    EXPECT_EQ(delta(before, after, {"replied"}), 0) << after.dump();
    for (const auto& [reason, n] : passed) {
      EXPECT_EQ(delta(before, after, {"xdp", "passed", reason.c_str()}), n)
          << reason << ": " << after.dump();
    }
  } else {
    EXPECT_EQ(delta(before, after, {"replied"}), good) << after.dump();
  }
}

// ---- reply size ----

TEST_P(ServerTest, ReplyIsNeverLargerThanItsRequest) {
  ASSERT_NO_FATAL_FAILURE(start_server(kServe));
  NsSocket socket(net_->client_ns());
  ASSERT_TRUE(wait_until_serving(socket));
  const json before = is_taid(kind()) ? serverstats() : json::object();
  // 68 bytes: one 20-byte field (which chrony takes for a MAC); 76: one 28-byte field, the
  // smallest RFC 7822 allows last without a MAC; 92: a 16-byte and a 28-byte field. RFC 7822
  // says to ignore fields of unknown type: chronyd and taid answer those two (with 48 bytes), and
  // both leave the 68-byte one, a MAC of an unknown key, unanswered (taid counts it).
  int unanswered = 0;
  for (const std::vector<std::uint16_t>& fields :
       {std::vector<std::uint16_t>{20}, std::vector<std::uint16_t>{28},
        std::vector<std::uint16_t>{16, 28}}) {
    const std::uint64_t id = ids_.next();
    auto request = client_request(id);
    for (const auto length : fields) append_extension(request, length);
    socket.send_to(server_address(), request);
    const auto answer = socket.receive(500ms);
    std::cout << GetParam().name << ": a " << request.size() << "-byte request: "
              << (answer ? std::to_string(answer->size()) + "-byte reply" : "no reply") << "\n";
    if (!answer) {
      ++unanswered;
      EXPECT_EQ(request.size(), 68U)
          << "an unknown field is ignored (RFC 7822): the " << request.size()
          << "-byte request deserves an answer";
      continue;
    }
    EXPECT_LE(answer->size(), request.size());
    const auto reply = ntp::decode(*answer);
    ASSERT_TRUE(reply) << reply.error().message();
    EXPECT_EQ(reply->mode, ntp::Mode::server);
    EXPECT_EQ(reply->origin_time.raw(), id);
  }
  // Still serving plain requests.
  EXPECT_TRUE(good_exchange(socket).has_value());
  if (!is_taid(kind())) return;
  const json after = serverstats();
  std::cout << "serverstats: " << after.dump() << "\n";
  EXPECT_EQ(delta(before, after, {"dropped", "authenticated"}), unanswered) << after.dump();
  if (kind() == ServerKind::taid_xdp) {
    EXPECT_EQ(delta(before, after, {"xdp", "passed", "too_long"}), 3) << after.dump();
  }
}

// ---- unsynchronized ----

TEST_P(ServerTest, UnsynchronizedWithoutLocalSaysSo) {
  ASSERT_NO_FATAL_FAILURE(start_server({"allow all"}));
  NsSocket socket(net_->client_ns());
  std::optional<ntp::Packet> reply;
  ASSERT_TRUE(wait_until(10s, 0ms, [&] {
    reply = good_exchange(socket, 300ms);
    return reply.has_value();
  })) << "no reply in 10 s";
  std::cout << GetParam().name << ": leap " << static_cast<int>(reply->leap) << " stratum "
            << static_cast<int>(reply->stratum) << "\n";
  EXPECT_EQ(reply->leap, ntp::Leap::unsynchronized);
  // Issue 11 asks for 16 (RFC 5905's "unsynchronized"); chronyd 4.3, like ntpd's
  // STRATUM_TO_PKT, writes it as 0 on the wire.
  EXPECT_EQ(reply->stratum, kind() == ServerKind::chronyd ? 0 : 16);
  // The reference fields of a clock that has none.
  EXPECT_TRUE(reply->reference_time.is_zero());
  EXPECT_FALSE(reply->receive_time.is_zero());
  EXPECT_FALSE(reply->transmit_time.is_zero());
}

// ---- access control ----

TEST_P(ServerTest, DeniedSubnetGetsNothingAndIsCounted) {
  const std::string& client = net_->client_address();
  const std::string denied = client.substr(0, client.rfind('.')) + ".0/30";  // .0 - .3
  ASSERT_NO_FATAL_FAILURE(start_server({"allow all", "deny " + denied, "local stratum 10"}));
  // .6, outside the denied /30, proves that the server answers and that the deny is a prefix.
  const std::string other = add_client_address();
  NsSocket allowed(net_->client_ns(), other);
  ASSERT_TRUE(wait_until_serving(allowed)) << "the allowed address got no reply in 10 s";
  const json before = is_taid(kind()) ? serverstats() : json::object();
  NsSocket socket(net_->client_ns(), client);
  constexpr int kRequests = 5;
  for (int i = 0; i < kRequests; ++i) {
    EXPECT_FALSE(good_exchange(socket, 300ms).has_value()) << "denied " << client << " answered";
  }
  EXPECT_TRUE(good_exchange(allowed).has_value()) << "the allowed address is no longer served";
  if (!is_taid(kind())) return;
  const json after = serverstats();
  std::cout << GetParam().name << ": " << after.dump() << "\n";
  EXPECT_EQ(delta(before, after, {"dropped", "denied"}), kRequests) << after.dump();
  if (kind() == ServerKind::taid_xdp) {
    // The program knows the access list too; it passes the denied up, to be counted there.
    EXPECT_EQ(delta(before, after, {"xdp", "passed", "denied"}), kRequests) << after.dump();
  }
}

// ---- rate limiting ----

// `ratelimit interval 6 burst 8 leak 4`: one response per 64 s after a burst of 8; one in 16 of
// the rest answered anyway. 24 requests 150 ms apart (the bucket refills 1/64 per second, nothing
// over 3.6 s): 8 + Binomial(16, 1/16) answers. More than 14 has a probability below 3e-5, and a
// server that gave the burst twice (say, once in XDP and once more in user space) gives >= 16.
constexpr int kBurst = 8;
constexpr int kLimitedRequests = 24;
constexpr int kMaxLimitedReplies = 14;

TEST_P(ServerTest, RateLimitedClientGetsItsBurstAndOthersAreServed) {
  ASSERT_NO_FATAL_FAILURE(
      start_server({"allow all", "local stratum 10", "ratelimit interval 6 burst 8 leak 4"}));
  const std::string other = add_client_address();
  NsSocket socket(net_->client_ns(), net_->client_address());
  NsSocket second(net_->client_ns(), other);
  // Up before the count starts: the second address's first request (its own bucket).
  ASSERT_TRUE(wait_until_serving(second));
  const json before = is_taid(kind()) ? serverstats() : json::object();
  const std::string chrony_before = kind() == ServerKind::chronyd ? server_counters() : "";
  int replies = 0;
  for (int i = 0; i < kLimitedRequests; ++i) {
    // 150 ms apart: slow enough that a reply never races the next request.
    replies += good_exchange(socket, 150ms).has_value() ? 1 : 0;
  }
  std::this_thread::sleep_for(300ms);
  collect_late(socket);
  replies += static_cast<int>(late_.size());
  std::cout << GetParam().name << ": " << replies << " of " << kLimitedRequests << " answered\n";
  EXPECT_GE(replies, kBurst);
  EXPECT_LE(replies, kMaxLimitedReplies);
  EXPECT_TRUE(good_exchange(second).has_value()) << "another address must not be limited";
  if (kind() == ServerKind::chronyd) {
    const std::string stats = server_counters();
    const auto dropped = [](const std::string& text) {
      return leading_number(chronyc_field(text, "NTP packets dropped")).value_or(-1);
    };
    EXPECT_EQ(dropped(stats) - dropped(chrony_before), kLimitedRequests - replies) << stats;
    return;
  }
  const json after = serverstats();
  std::cout << "serverstats: " << after.dump() << "\n";
  EXPECT_EQ(delta(before, after, {"dropped", "rate_limited"}), kLimitedRequests - replies)
      << after.dump();
  EXPECT_EQ(delta(before, after, {"kiss_of_death"}), 0) << after.dump();
}

std::string case_name(const ::testing::TestParamInfo<ServerCase>& test) { return test.param.name; }

const ServerCase kChronyd{"chronyd", ServerKind::chronyd};
const ServerCase kTaid{"taid", ServerKind::taid};
const ServerCase kTaidXdp{"taid_xdp", ServerKind::taid_xdp};

INSTANTIATE_TEST_SUITE_P(Interop, ServerTest, ::testing::Values(kChronyd, kTaid, kTaidXdp),
                         case_name);

// ---- taid only: KoD RATE (chrony 4.3 has no `kod` option) ----

using TaidServerTest = ServerTest;

TEST_P(TaidServerTest, RateLimitWithKodAnswersSomeDropsWithKissOfDeath) {
  // kod 1: of the requests the leak draw does not let through, one in two get a KoD RATE.
  ASSERT_NO_FATAL_FAILURE(
      start_server({"allow all", "local stratum 10", "ratelimit interval 6 burst 8 leak 4 kod 1"}));
  const std::string other = add_client_address();
  NsSocket socket(net_->client_ns(), net_->client_address());
  NsSocket second(net_->client_ns(), other);
  ASSERT_TRUE(wait_until_serving(second));
  const json before = serverstats();
  int time_replies = 0;
  int kods = 0;
  std::vector<ntp::Packet> replies;
  for (int i = 0; i < kLimitedRequests; ++i) {
    if (auto reply = good_exchange(socket, 150ms)) replies.push_back(*reply);
  }
  std::this_thread::sleep_for(300ms);
  collect_late(socket);
  replies.insert(replies.end(), late_.begin(), late_.end());
  for (const ntp::Packet& packet : replies) {
    const ntp::Packet* reply = &packet;
    const bool kod = reply->stratum == 0 && reply->reference_id == ntp::kiss_code("RATE");
    (kod ? kods : time_replies) += 1;
    if (kod) {
      // A KoD carries no time (RFC 5905 §7.4): LI 3.
      EXPECT_EQ(reply->leap, ntp::Leap::unsynchronized);
    }
  }
  std::cout << GetParam().name << ": " << time_replies << " time replies, " << kods
            << " KoD RATE of " << kLimitedRequests << "\n";
  EXPECT_GE(time_replies, kBurst);
  EXPECT_LE(time_replies, kMaxLimitedReplies);
  // ~15 not leaked, each a KoD with probability 1/2: none at all has a probability below 1e-4.
  EXPECT_GE(kods, 1);
  const json after = serverstats();
  std::cout << "serverstats: " << after.dump() << "\n";
  EXPECT_EQ(delta(before, after, {"kiss_of_death"}), kods) << after.dump();
  EXPECT_EQ(delta(before, after, {"dropped", "rate_limited"}),
            kLimitedRequests - time_replies - kods)
      << after.dump();
  EXPECT_TRUE(good_exchange(second).has_value());
}

INSTANTIATE_TEST_SUITE_P(Interop, TaidServerTest, ::testing::Values(kTaid, kTaidXdp), case_name);

}  // namespace
}  // namespace taid::system_test
