// System test: two taids on one interface, each with eBPF RX stamps, through a crash and a restart.
//
// chronyd serves in one namespace; taid A and taid B poll it from the other, both attaching their
// eBPF program to the same veth end. Per attach mode (tc clsact, and XDP generic, where the second
// taid finds the device's XDP program held and falls back to tc): both keep eBPF stamps (rx=bpf
// in `taictl sources --json` and in every row of their measurement logs); after SIGKILL of A, B
// keeps them; A's restart cleans its own leftover (tc: the dead filter, by owner pid) without
// touching B's; after both stop, nothing of theirs is left in the kernel.
//
// Root only, the rule of tests/system: skipped with the reason elsewhere, failed under CI=true.
// Neither taid nor chronyd can touch the clock (-x, CAP_SYS_TIME dropped). The checks read
// per-namespace views (tc, ip link) and the program ids the taids report, so a concurrent run
// elsewhere on the machine cannot make them fail.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "tests/system/fixture.hpp"

namespace taid::system_test {
namespace {

using json = nlohmann::json;

bool program_exists(const NetnsPair& net, std::uint32_t id) {
  std::vector<std::string> argv = NetnsPair::exec_in(net.client_ns());
  argv.insert(argv.end(), {"bpftool", "prog", "show", "id", std::to_string(id)});
  return run(argv, 10000ms).ok();
}
std::string id_text(std::uint32_t id) { return "id " + std::to_string(id) + " "; }

// The one eBPF program a taid reports in `tracking` (waits for it, bounded): attach mode and id.
struct Attached {
  std::string attach;
  std::uint32_t program_id = 0;
};

std::optional<Attached> wait_for_program(TaidDaemon& taid) {
  std::optional<Attached> found;
  wait_until(15000ms, 100ms, [&] {
    if (taid.process().exited()) return true;
    const auto tracking = taid.tracking();
    if (!tracking || !tracking->contains("timestamping")) return false;
    const json programs = tracking->at("timestamping").value("bpf_programs", json::array());
    if (programs.size() != 1) return false;
    found = Attached{str_field(programs[0], "attach"),
                     static_cast<std::uint32_t>(int_field(programs[0], "program_id").value_or(0))};
    return true;
  });
  return found;
}

// Waits until taid has `more` samples beyond `after` from `address`, every one of them (as seen
// by polling faster than taid polls) with rx=bpf and an eBPF stamp among its last stamps.
// Returns the sample count reached, or nullopt with `why` set.
std::optional<std::int64_t> wait_for_bpf_samples(TaidDaemon& taid, const std::string& address,
                                                 std::int64_t after, std::int64_t more,
                                                 std::string& why) {
  std::int64_t samples = after;
  json last;
  const bool done = wait_for_source(taid, address, 20000ms, last, [&](const json& source) {
    const std::int64_t now = int_field(source, "samples").value_or(0);
    if (now > samples) {
      const json stamps = source.value("last_stamps", json::object());
      if (str_field(source, "timestamp_source") != "bpf" ||
          !int_field(stamps, "rx_bpf_unix_ns").has_value()) {
        why = "a sample without an eBPF stamp: " + source.dump();
      }
      samples = now;
    }
    return !why.empty() || samples >= after + more;
  });
  if (!why.empty()) return std::nullopt;
  if (!done) {
    why = "only " + std::to_string(samples - after) + " of " + std::to_string(more) +
          " new samples; " + taid.process().describe() + "; last: " + last.dump() + "; " +
          taid.last_error();
    return std::nullopt;
  }
  return samples;
}

// Every sample row of a measurements.log (column 6, rx_source): how many, and those not "bpf".
struct LogRows {
  int rows = 0;
  std::vector<std::string> not_bpf;
};

LogRows measurement_rows(const std::filesystem::path& log) {
  LogRows result;
  std::istringstream lines(read_file(log));
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> fields;
    std::istringstream in(line);
    for (std::string field; std::getline(in, field, ',');) fields.push_back(field);
    ++result.rows;
    if (fields.size() < 6 || fields[5] != "bpf") result.not_bpf.push_back(line);
  }
  return result;
}

struct TwoCase {
  std::string name;       // the test name's suffix
  std::string bpfattach;  // both taids' directive
};

void PrintTo(const TwoCase& c, std::ostream* out) { *out << c.name; }

class TwoDaemonsTest : public SystemTest, public ::testing::WithParamInterface<TwoCase> {
 protected:
  // Each taid has a directory of its own (config, control socket, measurements.log, output).
  std::filesystem::path daemon_dir(const std::string& name) {
    const auto path = dir_->path() / name;
    std::filesystem::create_directories(path);
    return path;
  }

  std::vector<std::string> config(const std::string& address, const std::filesystem::path& dir) {
    return {"server " + address + " minpoll -2 maxpoll -2", "timestamping bpf",
            "bpfattach " + GetParam().bpfattach, "logdir " + dir.string(), "log measurements"};
  }

  void TearDown() override {
    SystemTest::TearDown();
    if (!HasFailure() || !dir_) return;
    for (const char* name : {"a", "b"}) {
      std::error_code ec;
      for (const auto& entry : std::filesystem::directory_iterator(dir_->path() / name, ec)) {
        std::cout << "--- " << name << "/" << entry.path().filename().string() << ":\n"
                  << read_file(entry.path());
      }
    }
  }
};

TEST_P(TwoDaemonsTest, BothKeepBpfStampsThroughACrashAndRestart) {
  const auto started = std::chrono::steady_clock::now();
  const bool xdp = GetParam().bpfattach.rfind("xdp", 0) == 0;
  chronyd_.emplace(*net_, dir_->path());
  const std::string address = chronyd_->address();
  const std::string& ns = net_->client_ns();
  const auto dir_a = daemon_dir("a");
  const auto dir_b = daemon_dir("b");
  TaidOptions first;
  first.log_name = "taid-1.log";

  // A first: it gets the mode it asked for.
  taid_.emplace(ns, dir_a, config(address, dir_a), first);
  const auto a = wait_for_program(*taid_);
  ASSERT_TRUE(a && a->program_id != 0) << taid_->process().describe() << " " << taid_->last_error();
  EXPECT_EQ(a->attach, xdp ? "xdp_generic" : "tc_clsact");
  std::string why;
  auto a_samples = wait_for_bpf_samples(*taid_, address, 0, 4, why);
  ASSERT_TRUE(a_samples) << "A alone: " << why;

  // B beside it: tc coexists at its own handle; XDP is held by A's link, so B goes to tc.
  std::optional<TaidDaemon> taid_b;
  taid_b.emplace(ns, dir_b, config(address, dir_b));
  const auto b = wait_for_program(*taid_b);
  ASSERT_TRUE(b && b->program_id != 0)
      << taid_b->process().describe() << " " << taid_b->last_error();
  if (xdp) {
    EXPECT_TRUE(b->attach == "tcx" || b->attach == "tc_clsact") << b->attach;
    EXPECT_TRUE(contains(taid_b->process().log(), "held by another running taid"))
        << taid_b->process().log();
    EXPECT_TRUE(contains(ip_link(*net_), "prog/xdp id " + std::to_string(a->program_id)))
        << "A's XDP program must stay: " << ip_link(*net_);
  } else {
    EXPECT_EQ(b->attach, "tc_clsact");
    const std::string filters = tc_ingress_filters(*net_);
    EXPECT_TRUE(contains(filters, id_text(a->program_id))) << "A's filter must stay:\n" << filters;
    EXPECT_TRUE(contains(filters, id_text(b->program_id))) << filters;
  }
  auto b_samples = wait_for_bpf_samples(*taid_b, address, 0, 4, why);
  ASSERT_TRUE(b_samples) << "B beside A: " << why;
  a_samples = wait_for_bpf_samples(*taid_, address, *a_samples, 4, why);
  ASSERT_TRUE(a_samples) << "A beside B: " << why;

  // A crashes. B keeps its stamps; a tc filter outlives A, an XDP link does not.
  EXPECT_TRUE(killed_by(taid_->process().kill_now(), SIGKILL)) << taid_->process().describe();
  if (xdp) {
    EXPECT_TRUE(wait_until(5000ms, 100ms, [&] { return !contains(ip_link(*net_), "xdp"); }))
        << "A's XDP link must die with A: " << ip_link(*net_);
  } else {
    EXPECT_TRUE(contains(tc_ingress_filters(*net_), id_text(a->program_id)));
  }
  b_samples = wait_for_bpf_samples(*taid_b, address, *b_samples, 4, why);
  ASSERT_TRUE(b_samples) << "B after A's crash: " << why;

  // A restarts: it removes its own leftover and leaves B's program alone.
  TaidOptions second;
  second.log_name = "taid-2-restarted.log";
  taid_.reset();
  taid_.emplace(ns, dir_a, config(address, dir_a), second);
  const auto a2 = wait_for_program(*taid_);
  ASSERT_TRUE(a2 && a2->program_id != 0)
      << taid_->process().describe() << " " << taid_->last_error();
  EXPECT_EQ(a2->attach, xdp ? "xdp_generic" : "tc_clsact") << "the XDP place is free again";
  if (!xdp) {
    EXPECT_TRUE(contains(
        taid_->process().log(),
        "replacing a leftover taid tc filter (program id " + std::to_string(a->program_id) + ")"))
        << taid_->process().log();
    const std::string filters = tc_ingress_filters(*net_);
    EXPECT_FALSE(contains(filters, id_text(a->program_id))) << filters;
    EXPECT_TRUE(contains(filters, id_text(b->program_id))) << "B's filter must stay:\n" << filters;
    EXPECT_TRUE(contains(filters, id_text(a2->program_id))) << filters;
  }
  EXPECT_TRUE(wait_until(5000ms, 100ms, [&] { return !program_exists(*net_, a->program_id); }))
      << "the crashed A's program id " << a->program_id << " is still loaded";
  EXPECT_TRUE(program_exists(*net_, b->program_id));
  const auto a2_samples = wait_for_bpf_samples(*taid_, address, 0, 4, why);
  ASSERT_TRUE(a2_samples) << "A restarted: " << why;
  b_samples = wait_for_bpf_samples(*taid_b, address, *b_samples, 4, why);
  ASSERT_TRUE(b_samples) << "B after A's restart: " << why;

  // Both leave cleanly: the last one out also takes the clsact qdisc (tc) with it.
  EXPECT_TRUE(exited_zero(taid_b->process().stop())) << taid_b->process().describe();
  EXPECT_TRUE(exited_zero(taid_->process().stop())) << taid_->process().describe();
  std::string left;
  wait_until(5000ms, 100ms, [&] {
    left.clear();
    if (const auto f = tc_ingress_filters(*net_); !f.empty()) left += "\n  tc filters: " + f;
    if (const auto q = tc_qdiscs(*net_); contains(q, "clsact")) left += "\n  tc qdisc: " + q;
    if (const auto l = ip_link(*net_); contains(l, "xdp")) left += "\n  ip link: " + l;
    for (const auto id : {a->program_id, b->program_id, a2->program_id}) {
      if (program_exists(*net_, id)) left += "\n  program id " + std::to_string(id);
    }
    return left.empty();
  });
  EXPECT_EQ(left, "") << "left behind after both stopped";

  // Every sample either taid logged was stamped by eBPF, across the crash and the restart.
  const LogRows rows_a = measurement_rows(dir_a / "measurements.log");
  const LogRows rows_b = measurement_rows(dir_b / "measurements.log");
  EXPECT_GE(rows_a.rows, 12);
  EXPECT_GE(rows_b.rows, 12);
  EXPECT_TRUE(rows_a.not_bpf.empty()) << "A: " << rows_a.not_bpf.size() << " rows not rx=bpf, "
                                      << "first: " << rows_a.not_bpf.front();
  EXPECT_TRUE(rows_b.not_bpf.empty()) << "B: " << rows_b.not_bpf.size() << " rows not rx=bpf, "
                                      << "first: " << rows_b.not_bpf.front();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::cout << "[" << GetParam().name << "] A " << a->attach << " id " << a->program_id << ", B "
            << b->attach << " id " << b->program_id << ", A restarted " << a2->attach << " id "
            << a2->program_id << "; measurement rows rx=bpf: A " << rows_a.rows << ", B "
            << rows_b.rows << "; " << seconds << " s\n";
  RecordProperty("seconds", std::to_string(seconds));
}

INSTANTIATE_TEST_SUITE_P(Attach, TwoDaemonsTest,
                         ::testing::Values(TwoCase{"tc", "tc"},
                                           TwoCase{"xdp_generic", "xdp-generic"}),
                         [](const ::testing::TestParamInfo<TwoCase>& param) {
                           return param.param.name;
                         });

}  // namespace
}  // namespace taid::system_test
