// System tests of what users meet in the engine: names that do not resolve yet, pools (up to
// maxsources, filling up, swapping a silent member), a name that moves to another address,
// several sources at once, and a leap second announced.
//
// Root only. Names resolve through the client namespace's own /etc/hosts (NetnsEtc: `ip netns
// exec` bind-mounts /etc/netns/NS/hosts over /etc/hosts, and an nsswitch.conf with `hosts:
// files` keeps DNS out). Every peer runs without clock control.
//
// The leap test uses a small responder (Python, written by the test) rather than chronyd:
// chronyd 4.3 announces a leap second only on 30 June and 31 December (is_leap_second_day in
// its reference.c), whatever its leapsectz says, so no real peer can announce one on most days.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <iostream>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "tests/system/fixture.hpp"

namespace taid::system_test {
namespace {

using json = nlohmann::json;

// /etc/nsswitch.conf inside the client namespace: files only, so a lookup never waits for DNS.
constexpr const char* kNsswitch =
    "passwd: files\ngroup: files\nshadow: files\nhosts: files\nnetworks: files\n"
    "protocols: files\nservices: files\n";

std::string hosts_text(const std::vector<std::pair<std::string, std::string>>& entries) {
  std::string text = "127.0.0.1 localhost\n";
  for (const auto& [address, name] : entries) text += address + " " + name + "\n";
  return text;
}

// An NTP server that answers every mode-3 request with the leap indicator, stratum and root
// dispersion it was started with; origin echoed, receive and transmit from the system clock.
constexpr const char* kResponder = R"(import socket, struct, sys, time
address, leap, stratum, root_dispersion_s = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
UNIX_TO_NTP_S = 2208988800
def timestamp(t):
    s = int(t)
    return struct.pack('!II', (s + UNIX_TO_NTP_S) & 0xffffffff, int((t - s) * 2**32) & 0xffffffff)
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((address, 123))
print('listening', flush=True)
while True:
    request, peer = sock.recvfrom(1024)
    t2 = time.time()
    if len(request) < 48 or request[0] & 7 != 3:
        continue
    header = struct.pack('!BBBb', (leap << 6) | (4 << 3) | 4, stratum, request[2], -20)
    roots = struct.pack('!II', 0, int(root_dispersion_s * 65536))
    reply = header + roots + b'TEST' + timestamp(t2 - 1) + request[40:48] + timestamp(t2)
    sock.sendto(reply + timestamp(time.time()), peer)
    print('answered', peer, 'leap', leap, flush=True)
)";

class Responder {
 public:
  Responder(const std::string& ns, const std::string& address, const std::filesystem::path& dir,
            int leap, int stratum, double root_dispersion_s)
      : process_(in_ns_without_clock_control(
                     ns, {"python3", "-u", script(dir).string(), address, std::to_string(leap),
                          std::to_string(stratum), std::to_string(root_dispersion_s)}),
                 dir / ("responder-" + address + "-leap" + std::to_string(leap) + ".log")) {
    const bool up = wait_until(5s, 50ms, [&] {
      return process_.exited() || process_.log().find("listening") != std::string::npos;
    });
    if (!up || process_.exited())
      throw std::runtime_error("responder did not come up: " + process_.describe() + "\n" +
                               process_.log());
  }
  Process& process() { return process_; }

 private:
  static std::filesystem::path script(const std::filesystem::path& dir) {
    const auto path = dir / "responder.py";
    std::ofstream(path) << kResponder;
    return path;
  }
  Process process_;
};

class EngineTest : public SystemTest {
 protected:
  void SetUp() override {
    SystemTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    etc_.emplace(net_->client_ns());
    etc_->write("nsswitch.conf", kNsswitch);
  }

  void TearDown() override {
    SystemTest::TearDown();
    if (!HasFailure()) return;
    // The base prints the logs at the top of the temp dir; the extra chronyds keep theirs below.
    for (const auto& chronyd : extra_chronyds_)
      std::cout << "--- chronyd " << chronyd->address() << ": " << chronyd->process().describe()
                << "\n"
                << chronyd->process().log();
  }

  // A chronyd on `address` of the server namespace, with its files in its own folder.
  ChronydServer& add_chronyd(const std::string& address) {
    extra_chronyds_.push_back(std::make_unique<ChronydServer>(
        net_->server_ns(), address, dir_->path() / ("chronyd-" + address)));
    return *extra_chronyds_.back();
  }

  // Waits until `taid`'s source list satisfies `done`; the last list is kept in `sources`.
  bool wait_for_sources(std::chrono::milliseconds timeout, json& sources,
                        const std::function<bool(const json&)>& done) {
    const bool held = wait_until(timeout, 250ms, [&] {
      if (taid_->process().exited()) return true;
      const auto now = taid_->sources();
      if (!now) return false;
      sources = *now;
      return done(sources);
    });
    return held && !taid_->process().exited();
  }

  std::optional<NetnsEtc> etc_;
  std::vector<std::unique_ptr<ChronydServer>> extra_chronyds_;
  std::vector<std::unique_ptr<Responder>> responders_;
};

bool reachable_with_samples(const json& source, int samples) {
  return source.value("state", "") == "reachable" &&
         int_field(source, "samples").value_or(0) >= samples;
}

int count_sources(const json& sources) {
  return sources.contains("sources") ? static_cast<int>(sources["sources"].size()) : 0;
}

TEST_F(EngineTest, NameThatDoesNotResolveYetIsRetriedUntilItDoes) {
  chronyd_.emplace(*net_, dir_->path());
  const std::string name = "late.taid.test";
  etc_->write("hosts", hosts_text({}));
  taid_.emplace(net_->client_ns(), dir_->path(),
                std::vector<std::string>{"server " + name + " iburst minpoll 0 maxpoll 2"});
  const bool failed_once = wait_until(10s, 100ms, [&] {
    return taid_->process().exited() ||
           taid_->process().log().find("cannot resolve '" + name + "'") != std::string::npos;
  });
  ASSERT_TRUE(failed_once && !taid_->process().exited()) << taid_->process().log();
  EXPECT_NE(taid_->process().log().find("again in 16 s"), std::string::npos)
      << taid_->process().log();
  json sources;
  ASSERT_TRUE(wait_for_sources(2s, sources, [](const json&) { return true; }));
  EXPECT_EQ(count_sources(sources), 0) << sources.dump();

  etc_->write("hosts", hosts_text({{chronyd_->address(), name}}));
  const auto appeared = std::chrono::steady_clock::now();
  json source;
  ASSERT_TRUE(wait_for_source(*taid_, chronyd_->address(), 40s, source,
                              [](const json& s) { return reachable_with_samples(s, 2); }))
      << "no source after the name appeared; last: " << source.dump() << " " << taid_->last_error();
  const auto waited_s =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - appeared)
          .count();
  std::cout << "source up " << waited_s << " s after its name appeared: " << source.dump() << "\n";
  RecordProperty("seconds_until_resolved", std::to_string(waited_s));
  EXPECT_EQ(source.value("name", ""), name);
  EXPECT_EQ(source.value("resolved_from", ""), name);
  EXPECT_EQ(taid_->process().stop(), 0) << taid_->process().describe();
}

TEST_F(EngineTest, PoolGivesUpToMaxsourcesAndSwapsAnUnreachableMember) {
  chronyd_.emplace(*net_, dir_->path());
  const std::string a = chronyd_->address();
  const std::string b = net_->add_server_address(3);
  const std::string c = net_->add_server_address(4);
  add_chronyd(b);
  add_chronyd(c);
  const std::string silent = net_->unused_address();  // no host has it: never answers
  const std::string pool = "pool.taid.test";
  // Three addresses for maxsources 3, one of them silent; c is not in the pool yet.
  etc_->write("hosts", hosts_text({{a, pool}, {b, pool}, {silent, pool}}));
  taid_.emplace(
      net_->client_ns(), dir_->path(),
      std::vector<std::string>{"pool " + pool + " iburst minpoll -1 maxpoll 0 maxsources 3"});

  json sources;
  ASSERT_TRUE(wait_for_sources(20s, sources, [&](const json& all) {
    const auto sa = find_source(all, a);
    const auto sb = find_source(all, b);
    return count_sources(all) == 3 && sa && sb && reachable_with_samples(*sa, 2) &&
           reachable_with_samples(*sb, 2) && find_source(all, silent);
  })) << sources.dump(1);
  EXPECT_EQ(find_source(sources, a)->value("name", ""), pool + "/" + a);
  EXPECT_NE(find_source(sources, silent)->value("state", ""), "reachable");

  // The pool gains an address; the silent member, unreachable, is swapped for it.
  etc_->write("hosts", hosts_text({{a, pool}, {b, pool}, {silent, pool}, {c, pool}}));
  ASSERT_TRUE(wait_for_sources(30s, sources,
                               [&](const json& all) {
                                 const auto sc = find_source(all, c);
                                 return sc && reachable_with_samples(*sc, 2);
                               }))
      << sources.dump(1) << "\n"
      << taid_->process().log();
  std::cout << "pool after the swap: " << sources.dump(1) << "\n";
  EXPECT_EQ(count_sources(sources), 3) << "maxsources 3";
  EXPECT_FALSE(find_source(sources, silent)) << sources.dump(1);
  const auto sc = find_source(sources, c);
  EXPECT_EQ(sc->value("name", ""), pool + "/" + c);
  EXPECT_EQ(int_field(*sc, "address_changes").value_or(0), 1);
  EXPECT_NE(taid_->process().log().find("now resolves to " + c), std::string::npos);
  EXPECT_EQ(taid_->process().stop(), 0) << taid_->process().describe();
}

TEST_F(EngineTest, PoolWithTooFewAddressesFillsUpLater) {
  chronyd_.emplace(*net_, dir_->path());
  const std::string a = chronyd_->address();
  const std::string b = net_->add_server_address(3);
  add_chronyd(b);
  const std::string pool = "small.taid.test";
  etc_->write("hosts", hosts_text({{a, pool}}));
  taid_.emplace(
      net_->client_ns(), dir_->path(),
      std::vector<std::string>{"pool " + pool + " iburst minpoll -1 maxpoll 0 maxsources 2"});
  json sources;
  ASSERT_TRUE(wait_for_sources(10s, sources, [&](const json& all) {
    return count_sources(all) == 1 && find_source(all, a);
  })) << sources.dump(1);
  EXPECT_NE(taid_->process().log().find("pool '" + pool + "' gave 1 of maxsources 2"),
            std::string::npos)
      << taid_->process().log();

  etc_->write("hosts", hosts_text({{a, pool}, {b, pool}}));
  ASSERT_TRUE(wait_for_sources(30s, sources,
                               [&](const json& all) {
                                 const auto sb = find_source(all, b);
                                 return count_sources(all) == 2 && sb &&
                                        reachable_with_samples(*sb, 2);
                               }))
      << sources.dump(1) << "\n"
      << taid_->process().log();
  EXPECT_EQ(find_source(sources, b)->value("name", ""), pool + "/" + b);
  EXPECT_EQ(taid_->process().stop(), 0) << taid_->process().describe();
}

TEST_F(EngineTest, ServerWhoseNameMovesIsFollowedOnceUnreachable) {
  chronyd_.emplace(*net_, dir_->path());
  const std::string first = chronyd_->address();
  const std::string second = net_->add_server_address(3);
  add_chronyd(second);
  const std::string name = "moving.taid.test";
  etc_->write("hosts", hosts_text({{first, name}}));
  taid_.emplace(net_->client_ns(), dir_->path(),
                std::vector<std::string>{"server " + name + " iburst minpoll -1 maxpoll 0"});
  json source;
  ASSERT_TRUE(wait_for_source(*taid_, first, 20s, source,
                              [](const json& s) { return reachable_with_samples(s, 2); }))
      << source.dump() << " " << taid_->last_error();

  // The name moves, but the old server still answers: taid stays with it (no lookups while
  // a source answers, as chrony).
  etc_->write("hosts", hosts_text({{second, name}}));
  std::this_thread::sleep_for(3s);
  auto sources = taid_->sources();
  ASSERT_TRUE(sources);
  ASSERT_TRUE(find_source(*sources, first)) << sources->dump(1);
  EXPECT_EQ(find_source(*sources, first)->value("state", ""), "reachable");

  // Once the old server is gone and the source unreachable, the name is resolved again.
  chronyd_->process().stop();
  const auto stopped = std::chrono::steady_clock::now();
  ASSERT_TRUE(wait_for_source(*taid_, second, 40s, source,
                              [](const json& s) { return reachable_with_samples(s, 2); }))
      << source.dump() << "\n"
      << taid_->process().log();
  const auto waited_s =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - stopped)
          .count();
  std::cout << "followed the name " << waited_s
            << " s after the old server stopped: " << source.dump() << "\n";
  RecordProperty("seconds_until_followed", std::to_string(waited_s));
  EXPECT_EQ(source.value("name", ""), name);
  EXPECT_EQ(int_field(source, "address_changes").value_or(0), 1);
  sources = taid_->sources();
  ASSERT_TRUE(sources);
  EXPECT_EQ(count_sources(*sources), 1) << sources->dump(1);
  const std::string log = taid_->process().log();
  EXPECT_NE(log.find(name + ": unreachable at " + first + "; resolving '" + name + "' again"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("now resolves to " + second), std::string::npos) << log;
  EXPECT_EQ(taid_->process().stop(), 0) << taid_->process().describe();
}

// Root distance as the engine ranks sources (ARCHITECTURE.md: until selection lands).
std::optional<std::int64_t> root_distance_ns(const json& s) {
  const auto root_delay = int_field(s, "root_delay_ns");
  const auto delay = int_field(s, "delay_ns");
  const auto root_dispersion = int_field(s, "root_dispersion_ns");
  const auto dispersion = int_field(s, "dispersion_ns");
  const auto jitter = int_field(s, "jitter_ns");
  if (!root_delay || !delay || !root_dispersion || !dispersion || !jitter) return std::nullopt;
  return (*root_delay + *delay) / 2 + *root_dispersion + *dispersion + *jitter;
}

TEST_F(EngineTest, SeveralSourcesEachWithItsOwnStateAndSelectionMarksThem) {
  chronyd_.emplace(*net_, dir_->path());
  const std::string a = chronyd_->address();
  const std::string b = net_->add_server_address(3);
  const std::string far = net_->add_server_address(4);
  const std::string silent = net_->unused_address();
  add_chronyd(b);
  // Stratum 1, but half a second of root dispersion: reachable, never the nearest.
  responders_.push_back(
      std::make_unique<Responder>(net_->server_ns(), far, dir_->path(), 0, 1, 0.5));
  std::vector<std::string> lines;
  for (const std::string& address : {a, b, far, silent})
    lines.push_back("server " + address + " iburst minpoll -1 maxpoll 0");
  taid_.emplace(net_->client_ns(), dir_->path(), lines);

  json sources;
  ASSERT_TRUE(wait_for_sources(30s, sources, [&](const json& all) {
    for (const std::string& address : {a, b, far}) {
      const auto s = find_source(all, address);
      if (!s || !reachable_with_samples(*s, 4)) return false;
    }
    const auto s = find_source(all, silent);
    return count_sources(all) == 4 && s && s->value("state", "") == "unreachable";
  })) << sources.dump(1);
  const auto tracking = taid_->tracking();
  ASSERT_TRUE(tracking);
  std::cout << "sources: " << sources.dump(1) << "\ntracking: " << tracking->dump(1) << "\n";

  int selected = 0;
  std::string selected_name;
  std::int64_t best = std::numeric_limits<std::int64_t>::max();
  std::int64_t selected_distance = 0;
  for (const json& s : sources["sources"]) {
    EXPECT_GT(int_field(s, "requests").value_or(0), 0) << s.dump();
    if (s.value("selected", false)) {
      ++selected;
      selected_name = s.value("name", "");
      selected_distance = root_distance_ns(s).value_or(-1);
    }
    if (const auto d = root_distance_ns(s); d && s.value("state", "") == "reachable")
      best = std::min(best, *d);
  }
  EXPECT_EQ(int_field(*find_source(sources, far), "stratum").value_or(0), 1);
  EXPECT_EQ(int_field(*find_source(sources, a), "stratum").value_or(0), 10);
  EXPECT_EQ(int_field(*find_source(sources, silent), "samples").value_or(-1), 0);
  EXPECT_EQ(selected, 1) << "exactly one source is the system peer";
  EXPECT_TRUE(selected_name == a || selected_name == b) << selected_name;
  // Selection's marks (chronyc's): the system peer '*'; the other nearby chronyd combined '+'
  // (its distance is within combinelimit of the peer's); the far stratum-1 source agrees, so it
  // is a truechimer, combined or not by its distance against 3 × the peer's ('+' or '-'); the
  // silent one unusable ('?'). The peer is the nearer chronyd within chrony's reselect
  // hysteresis.
  const auto mark = [&](const std::string& address) {
    return find_source(sources, address)->value("mark", "");
  };
  EXPECT_EQ(mark(selected_name), "*") << sources.dump(1);
  EXPECT_EQ(mark(selected_name == a ? b : a), "+") << sources.dump(1);
  EXPECT_TRUE(mark(far) == "+" || mark(far) == "-") << sources.dump(1);
  EXPECT_EQ(mark(silent), "?") << sources.dump(1);
  EXPECT_LE(selected_distance, 2 * best + 100'000) << sources.dump(1);
  EXPECT_GT(root_distance_ns(*find_source(sources, far)).value_or(0), 400'000'000);
  // Tracking names the same peer; the text table stars it.
  const auto now_tracking = taid_->tracking();
  ASSERT_TRUE(now_tracking);
  const std::string reference = now_tracking->value("reference", "");
  EXPECT_TRUE(reference == a || reference == b) << now_tracking->dump();
  const RunResult table = taid_->taictl({"sources"});
  ASSERT_TRUE(table.ok()) << table.describe();
  std::cout << table.out;
  EXPECT_EQ(count_lines_containing(table.out, "* "), 1) << table.out;
  EXPECT_GE(count_lines_containing(table.out, "+ "), 1) << table.out;
  for (const std::string& address : {a, b, far, silent})
    EXPECT_EQ(count_lines_containing(table.out, address + " "), 1) << table.out;
  // sourcestats: one row per source, the estimator's window for those with samples.
  const RunResult stats = taid_->taictl({"sourcestats", "--json"});
  ASSERT_TRUE(stats.ok()) << stats.describe();
  const json stats_json = json::parse(stats.out, nullptr, false);
  ASSERT_TRUE(stats_json.contains("sourcestats")) << stats.out;
  ASSERT_EQ(stats_json["sourcestats"].size(), 4u) << stats.out;
  for (const json& row : stats_json["sourcestats"]) {
    const bool is_silent = row.value("address", "") == silent;
    EXPECT_EQ(row.value("samples", 0) > 0, !is_silent) << row.dump();
    EXPECT_EQ(row.contains("offset_ns"), !is_silent) << row.dump();
  }
  const RunResult stats_table = taid_->taictl({"sourcestats"});
  ASSERT_TRUE(stats_table.ok()) << stats_table.describe();
  std::cout << stats_table.out;
  EXPECT_EQ(taid_->process().stop(), 0) << taid_->process().describe();
}

TEST_F(EngineTest, LeapAnnouncedByTheServerShowsInTracking) {
  const std::string address = net_->server_address();
  taid_.emplace(net_->client_ns(), dir_->path(),
                std::vector<std::string>{"server " + address + " iburst minpoll -2 maxpoll -2"});
  for (const auto& [leap, name] : {std::pair{1, "insert"}, std::pair{2, "delete"}}) {
    responders_.clear();  // the one before stops: one server, announcing one thing at a time
    responders_.push_back(
        std::make_unique<Responder>(net_->server_ns(), address, dir_->path(), leap, 2, 0.001));
    std::optional<json> tracking;
    const bool shown = wait_until(20s, 250ms, [&] {
      tracking = taid_->tracking();
      return taid_->process().exited() || (tracking && tracking->value("leap", "") == name);
    });
    ASSERT_TRUE(shown && !taid_->process().exited())
        << "LI=" << leap << ": " << (tracking ? tracking->dump() : taid_->last_error());
    const auto sources = taid_->sources();
    ASSERT_TRUE(sources);
    EXPECT_EQ(find_source(*sources, address)->value("leap", ""), name) << sources->dump();
    const RunResult text = taid_->taictl({"tracking"});
    ASSERT_TRUE(text.ok()) << text.describe();
    std::cout << "LI=" << leap << ":\n" << text.out;
    EXPECT_EQ(count_lines_containing(text.out, std::string("Leap status         : ") + name), 1)
        << text.out;
  }
  EXPECT_EQ(taid_->process().stop(), 0) << taid_->process().describe();
}

TEST_F(EngineTest, SecondDaemonOnTheSameControlSocketExitsAndLeavesTheFirstAlone) {
  const std::vector<std::string> lines{"server " + net_->unused_address() + " minpoll 4"};
  taid_.emplace(net_->client_ns(), dir_->path(), lines);
  ASSERT_TRUE(wait_until(10s, 100ms, [&] { return taid_->sources().has_value(); }))
      << taid_->last_error();
  TaidOptions second_options;
  second_options.log_name = "taid-second.log";
  TaidDaemon second(net_->client_ns(), dir_->path(), lines, second_options);
  ASSERT_TRUE(wait_until(10s, 100ms, [&] { return second.process().exited(); }))
      << "a second taid on a live control socket must exit";
  const int status = *second.process().wait_status();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << second.process().describe();
  EXPECT_NE(second.process().log().find("another daemon is answering"), std::string::npos)
      << second.process().log();
  EXPECT_TRUE(std::filesystem::is_socket(taid_->socket_path()));
  EXPECT_TRUE(taid_->sources().has_value())
      << "the first taid must still answer: " << taid_->last_error();
  EXPECT_EQ(taid_->process().stop(), 0) << taid_->process().describe();
  EXPECT_FALSE(std::filesystem::exists(taid_->socket_path())) << "removed at a clean exit";
}


// Bad input: a corrupt drift file and one out of range are each named with path, line and field
// in one log line, ignored, and taid runs on and measures.
TEST_F(EngineTest, CorruptDriftFileIsNamedAndIgnored) {
  chronyd_.emplace(*net_, dir_->path());
  const std::string address = chronyd_->address();
  for (const auto& [content, message] :
       {std::pair<std::string, std::string>{"twelve 0.5\n", ":1: frequency: not a number"},
        std::pair<std::string, std::string>{"-812.0 0.1\n", ":1: frequency: -812 ppm is out of range"}}) {
    const std::string drift = (dir_->path() / "taid.drift").string();
    std::ofstream(drift) << content;
    taid_.reset();
    taid_.emplace(net_->client_ns(), dir_->path(),
                  std::vector<std::string>{"server " + address + " iburst minpoll -2 maxpoll -2",
                                           "driftfile " + drift});
    json sources;
    ASSERT_TRUE(wait_for_sources(15s, sources, [&](const json& all) {
      const auto s = find_source(all, address);
      return s && reachable_with_samples(*s, 4);
    })) << taid_->process().describe() << "; " << taid_->process().log();
    const std::string log = taid_->process().log();
    EXPECT_EQ(count_lines_containing(log, drift + message), 1) << log;
    EXPECT_EQ(count_lines_containing(log, "drift file ignored"), 1) << log;
    EXPECT_EQ(taid_->process().stop(), 0) << taid_->process().describe();
  }
}


// Bad input: the leap table. A good list is named when read; a corrupt one, one without its hash,
// one whose hash does not match and an expired one, each put in its place in turn (as a package
// update renames a new file in), are each named once with what is wrong, and taid keeps the last
// good table (its conversions go on) and runs on. Started on a corrupt list, it runs without a
// table, vouches for no TAI offset and says why.
TEST_F(EngineTest, BadLeapListsAreNamedAndTheLastGoodTableKept) {
  const std::filesystem::path data = std::filesystem::path(TAID_SOURCE_DIR) / "tests/data/leap";
  const std::string good_text = read_file(data / "negative-leap.list");  // valid until 2028-06-28
  const std::string list = (dir_->path() / "leap.list").string();
  const auto put = [&](const std::string& text) {
    const std::string temporary = list + ".new";
    std::ofstream(temporary) << text;
    std::filesystem::rename(temporary, list);
  };
  put(good_text);
  taid_.emplace(net_->client_ns(), dir_->path(),
                std::vector<std::string>{"server " + net_->unused_address() + " minpoll 4",
                                         "leapseclist " + list});
  ASSERT_TRUE(wait_until(10s, 100ms, [&] { return taid_->tracking().has_value(); }))
      << taid_->last_error();
  const std::string origin = "leap-seconds.list " + list;
  EXPECT_EQ(count_lines_containing(taid_->process().log(),
                                   "leap table " + origin + ": 29 entries, TAI - UTC 36 s since "
                                   "2027-07-01, expires 2028-06-28"),
            1)
      << taid_->process().log();
  const auto converts = [&] {
    const RunResult r = taid_->taictl({"tai", "2016-12-31T23:59:60Z"});
    return r.ok() && r.out.find("2016-12-31T23:59:60Z = 2017-01-01T00:00:36 TAI (TAI - UTC 36 s; " +
                                origin + ")") != std::string::npos;
  };
  EXPECT_TRUE(converts()) << taid_->taictl({"tai", "2016-12-31T23:59:60Z"}).describe();

  std::string no_hash, mismatch;
  for (std::size_t at = 0, next; at < good_text.size(); at = next) {
    next = good_text.find('\n', at);
    next = next == std::string::npos ? good_text.size() : next + 1;
    const std::string line = good_text.substr(at, next - at);
    if (line.rfind("#h", 0) != 0) no_hash += line;
  }
  mismatch = good_text;
  // The '#$' (last update) a day later: still a valid list, but not the one the hash is of.
  const std::size_t updated = mismatch.find("#$");
  mismatch.replace(updated, mismatch.find('\n', updated) - updated, "#$\t3976560000");
  const std::vector<std::pair<std::string, std::string>> bad{
      {read_file(data / "corrupt.list"), list + ":88: "},
      {no_hash, list + ": no '#h' hash line"},
      {mismatch, list + ": hash mismatch: file says "},
      {read_file(data / "leap-seconds.list"), list + " expired on 2026-06-28"},
  };
  for (std::size_t i = 0; i < bad.size(); ++i) {
    const auto& [text, message] = bad[i];
    put(text);
    const bool named = wait_until(20s, 200ms, [&] {
      return taid_->process().exited() ||
             count_lines_containing(taid_->process().log(), message) > 0;
    });
    ASSERT_TRUE(named && !taid_->process().exited()) << message << "\n" << taid_->process().log();
    const std::string log = taid_->process().log();
    EXPECT_EQ(count_lines_containing(log, message), 1) << log;
    EXPECT_EQ(count_lines_containing(log, "keeping the last good table (" + origin + ")"),
              static_cast<int>(i) + 1)
        << log;
    const auto tracking = taid_->tracking();
    ASSERT_TRUE(tracking) << taid_->last_error();
    EXPECT_EQ(tracking->at("tai").value("table", ""), origin) << tracking->dump();
    EXPECT_TRUE(converts());
  }
  EXPECT_EQ(taid_->process().stop(), 0) << taid_->process().describe();

  // Started on a corrupt list: no table, no TAI offset vouched for, and it says why.
  put(read_file(data / "corrupt.list"));
  taid_.reset();
  taid_.emplace(net_->client_ns(), dir_->path(),
                std::vector<std::string>{"server " + net_->unused_address() + " minpoll 4",
                                         "leapseclist " + list});
  ASSERT_TRUE(wait_until(10s, 100ms, [&] { return taid_->tracking().has_value(); }))
      << taid_->last_error();
  const auto tracking = taid_->tracking();
  ASSERT_TRUE(tracking);
  const json tai = tracking->at("tai");
  EXPECT_FALSE(tai.value("vouched", true)) << tai.dump();
  EXPECT_EQ(tai.value("table", "").rfind("no leap table: " + list + ":88: ", 0), 0u) << tai.dump();
  EXPECT_EQ(count_lines_containing(taid_->process().log(), "(no TAI offset will be set)"), 1)
      << taid_->process().log();
  const RunResult conversion = taid_->taictl({"tai", "2016-12-31T23:59:60Z"});
  EXPECT_FALSE(conversion.ok());
  EXPECT_NE(conversion.err.find("no leap table"), std::string::npos) << conversion.describe();
  EXPECT_EQ(taid_->process().stop(), 0) << taid_->process().describe();
}

}  // namespace
}  // namespace taid::system_test
