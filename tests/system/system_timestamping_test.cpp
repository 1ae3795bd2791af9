// System tests of taid's kernel-assisted timestamps against a real chronyd: eBPF RX stamps per
// attach mode and their cleanup (after SIGTERM, and after SIGKILL + restart), the fall-back to
// kernel stamps without BPF privileges, interleaved mode, the measurements log, a server on this
// host (eBPF on lo), and eBPF stamps over IPv6.
//
// Root only, same rule as system_chrony_test: skipped with the reason elsewhere, failed under
// CI=true. chronyd serves in one namespace, taid measures it from another over veth; neither can
// touch the clock (-x, CAP_SYS_TIME dropped). bpftool's prog and link lists are global, so the
// leftover checks look for what this test's taid reported (its program ids and their maps) and
// use the per-namespace views (tc, ip link, bpftool net) for everything else: a concurrent run
// elsewhere on the machine cannot make them fail.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <cstdint>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "bpf/rx_timestamper.hpp"
#include "tests/system/fixture.hpp"

namespace taid::system_test {
namespace {

using json = nlohmann::json;

// ---- what the kernel shows inside the client namespace ----

RunResult run_in_ns(const std::string& ns, const std::vector<std::string>& argv) {
  std::vector<std::string> full = NetnsPair::exec_in(ns);
  full.insert(full.end(), argv.begin(), argv.end());
  return run(full, 10000ms);
}

// stdout + stderr of a command run inside `ns` (tc prints its complaints on stderr).
json bpftool_json(const std::string& ns, const std::vector<std::string>& args) {
  std::vector<std::string> argv{"bpftool", "-j"};
  argv.insert(argv.end(), args.begin(), args.end());
  auto parsed = json::parse(in_ns(ns, argv), nullptr, false);
  return parsed.is_discarded() ? json::array() : parsed;
}

bool has_id(const std::vector<std::uint32_t>& ids, std::int64_t id) {
  return std::find(ids.begin(), ids.end(), static_cast<std::uint32_t>(id)) != ids.end();
}

// The maps a loaded program uses (to check they go with it).
std::vector<std::uint32_t> map_ids_of(const std::string& ns, std::uint32_t program_id) {
  std::vector<std::uint32_t> ids;
  const json program = bpftool_json(ns, {"prog", "show", "id", std::to_string(program_id)});
  if (program.is_object() && program.contains("map_ids")) {
    for (const auto& id : program.at("map_ids")) ids.push_back(id.get<std::uint32_t>());
  }
  return ids;
}

// tcx links of our programs (bpftool 7.1 does not know the tcx link type by name, so by prog id).
std::vector<std::string> links_of(const std::string& ns, const std::vector<std::uint32_t>& ids) {
  std::vector<std::string> found;
  for (const auto& link : bpftool_json(ns, {"link", "show"})) {
    if (has_id(ids, int_field(link, "prog_id").value_or(-1))) found.push_back(link.dump());
  }
  return found;
}

// Programs named taid_rx* among the ids this test's taid reported.
std::vector<std::string> programs_of(const std::string& ns, const std::vector<std::uint32_t>& ids) {
  std::vector<std::string> found;
  for (const auto& program : bpftool_json(ns, {"prog", "show"})) {
    if (str_field(program, "name").rfind("taid_rx", 0) == 0 &&
        has_id(ids, int_field(program, "id").value_or(-1))) {
      found.push_back(str_field(program, "name") + " id " +
                      std::to_string(int_field(program, "id").value_or(-1)));
    }
  }
  return found;
}

// Everything of ours still in the kernel: each entry says what and where.
std::vector<std::string> leftovers(const NetnsPair& net, const std::vector<std::uint32_t>& programs,
                                   const std::vector<std::uint32_t>& maps) {
  std::vector<std::string> found;
  const std::string& ns = net.client_ns();
  if (const auto filters = tc_ingress_filters(net); !filters.empty()) {
    found.push_back("tc filter show ingress: " + filters);
  }
  if (const auto qdiscs = tc_qdiscs(net); contains(qdiscs, "clsact")) {
    found.push_back("tc qdisc show: " + qdiscs);
  }
  if (const auto link = ip_link(net); contains(link, "xdp")) found.push_back("ip link: " + link);
  const std::string net_show = in_ns(ns, {"bpftool", "net", "show", "dev", net.client_interface()});
  if (contains(net_show, "taid_rx")) found.push_back("bpftool net show: " + net_show);
  for (const auto& program : programs_of(ns, programs)) {
    found.push_back("bpftool prog show: " + program);
  }
  for (const auto& link : links_of(ns, programs)) found.push_back("bpftool link show: " + link);
  for (const std::uint32_t id : maps) {
    if (run_in_ns(ns, {"bpftool", "map", "show", "id", std::to_string(id)}).ok()) {
      found.push_back("bpftool map show: id " + std::to_string(id));
    }
  }
  return found;
}

// The kernel frees a detached program after an RCU grace period; give it that, bounded.
std::vector<std::string> leftovers_after_settling(const NetnsPair& net,
                                                  const std::vector<std::uint32_t>& programs,
                                                  const std::vector<std::uint32_t>& maps) {
  std::vector<std::string> found;
  wait_until(5000ms, 100ms, [&] {
    found = leftovers(net, programs, maps);
    return found.empty();
  });
  return found;
}

std::string joined(const std::vector<std::string>& items) {
  std::string text;
  for (const auto& item : items) text += "\n  " + item;
  return text;
}

// ---- taid's view ----

// Waits (bounded) until taid has `samples` samples from `address`; `source` is the last view.
bool wait_for_samples(TaidDaemon& taid, const std::string& address, int samples,
                      std::chrono::milliseconds timeout, json& source) {
  return wait_for_source(taid, address, timeout, source, [samples](const json& s) {
    return int_field(s, "samples").value_or(0) >= samples;
  });
}

// tracking.timestamping.bpf_programs once it is non-empty (bounded), or an empty array.
json wait_for_bpf_programs(TaidDaemon& taid, std::chrono::milliseconds timeout) {
  json programs = json::array();
  wait_until(timeout, 100ms, [&] {
    if (taid.process().exited()) return true;
    const auto tracking = taid.tracking();
    if (!tracking || !tracking->contains("timestamping")) return false;
    programs = tracking->at("timestamping").value("bpf_programs", json::array());
    return !programs.empty();
  });
  return programs;
}

// A source view whose last exchange has both its request's kernel TX stamp and its reply's BPF
// stamp (bounded retry: the TX stamp comes from the error queue and may follow the reply). taid
// shows the stamps of one answered exchange together, never a new request's TX beside the old
// reply's RX, so any such view is a consistent one.
std::optional<json> settled_source(TaidDaemon& taid, const std::string& address) {
  for (int attempt = 0; attempt < 20; ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(50ms);
    const auto sources = taid.sources();
    if (!sources) continue;
    const auto source = find_source(*sources, address);
    if (!source) continue;
    const json stamps = source->value("last_stamps", json::object());
    if (stamps.contains("tx_kernel_unix_ns") && stamps.contains("rx_bpf_unix_ns")) return source;
  }
  return std::nullopt;
}

// ---- chronyd + taid set-up shared by the tests ----

std::string server_line(const std::string& address, bool iburst, const std::string& extra = "") {
  return "server " + address + (iburst ? " iburst" : "") + " minpoll -2 maxpoll -2" + extra;
}

// ---- a. eBPF stamps of a real reply, per attach mode, and cleanup after SIGTERM ----

struct AttachCase {
  std::string name;       // the test name's suffix
  std::string bpfattach;  // config value; "" = the default (auto)
  // With iburst the burst's requests go out every min(2 s, poll) = 250 ms here; the default case
  // keeps the exact line, the others poll every 250 ms from the start without it.
  bool iburst = false;
  std::vector<std::string> attach_names;  // what tracking may report as "attach"
  // How taid is told to end: every signal that ends chronyd (SIGINT, SIGTERM, SIGQUIT, SIGHUP)
  // must end taid cleanly too, detaching its programs and removing its socket.
  int stop_signal = SIGTERM;
};

// ctest shows test names with the parameter printed: the case name, not its bytes.
void PrintTo(const AttachCase& c, std::ostream* out) { *out << c.name; }

AttachCase auto_case() { return {"auto", "", true, {"tcx", "tc_clsact"}}; }

std::vector<std::string> bpf_config(const std::string& address, const AttachCase& c) {
  std::vector<std::string> config{server_line(address, c.iburst), "timestamping bpf"};
  if (!c.bpfattach.empty()) config.push_back("bpfattach " + c.bpfattach);
  return config;
}

// The scenario once chronyd serves `address` and taid (bpf_config) polls it from the client
// namespace: 8 samples stamped by eBPF, the program visible in the kernel while attached, a
// reply's BPF stamp between the request's TX and the user-space receive, then the case's stop
// signal leaves nothing behind, not even the control socket. `label` starts the line it prints.
void expect_bpf_stamps(const NetnsPair& net, TaidDaemon& taid, const std::string& address,
                       const AttachCase& c, const std::string& label) {
  json source;
  ASSERT_TRUE(wait_for_samples(taid, address, 8, c.iburst ? 30000ms : 15000ms, source))
      << "fewer than 8 samples; " << taid.process().describe() << "; last source: " << source.dump()
      << "; last error: " << taid.last_error();
  EXPECT_EQ(str_field(source, "timestamp_source"), "bpf") << source.dump();

  const auto tracking = taid.tracking();
  ASSERT_TRUE(tracking) << taid.last_error();
  const json timestamping = tracking->value("timestamping", json::object());
  const json programs = timestamping.value("bpf_programs", json::array());
  ASSERT_FALSE(programs.empty()) << timestamping.dump();
  std::vector<std::uint32_t> program_ids;
  std::vector<std::uint32_t> map_ids;
  std::string attach;
  for (const auto& program : programs) {
    EXPECT_EQ(str_field(program, "interface"), net.client_interface()) << program.dump();
    attach = str_field(program, "attach");
    EXPECT_NE(std::find(c.attach_names.begin(), c.attach_names.end(), attach), c.attach_names.end())
        << program.dump();
    const auto id = static_cast<std::uint32_t>(int_field(program, "program_id").value_or(0));
    ASSERT_NE(id, 0u) << program.dump();
    program_ids.push_back(id);
    for (const auto map : map_ids_of(net.client_ns(), id)) map_ids.push_back(map);
  }
  EXPECT_EQ(str_field(timestamping, "bpf_error"), "") << timestamping.dump();

  // While attached the kernel must show it, or the emptiness checks below would prove nothing.
  const std::string id_text = std::to_string(program_ids.front());
  EXPECT_EQ(programs_of(net.client_ns(), program_ids).size(), program_ids.size());
  EXPECT_FALSE(map_ids.empty());
  if (attach == "tc_clsact") {
    const std::string filters = tc_ingress_filters(net);
    EXPECT_TRUE(contains(filters, "taid_rx_tc") && contains(filters, "id " + id_text + " "))
        << filters;
  } else if (attach == "tcx") {
    EXPECT_EQ(links_of(net.client_ns(), program_ids).size(), 1u);
  } else {
    const std::string link = ip_link(net);
    EXPECT_TRUE(contains(link, "prog/xdp id " + id_text)) << link;
    EXPECT_EQ(contains(link, "xdpgeneric"), attach == "xdp_generic") << link;
  }

  // The reply's BPF stamp lies between our request's kernel TX stamp and the user-space receive.
  const auto settled = settled_source(taid, address);
  ASSERT_TRUE(settled) << "no settled view of the source";
  const json stamps = settled->value("last_stamps", json::object());
  const auto tx_kernel = int_field(stamps, "tx_kernel_unix_ns");
  const auto rx_bpf = int_field(stamps, "rx_bpf_unix_ns");
  const auto rx_user = int_field(stamps, "rx_user_unix_ns");
  const auto rx_kernel = int_field(stamps, "rx_kernel_unix_ns");
  ASSERT_TRUE(tx_kernel && rx_bpf && rx_user) << stamps.dump();
  std::cout << "[" << label << attach << "] last_stamps: tx_kernel " << *tx_kernel << ", rx_bpf "
            << *rx_bpf << " (tx_kernel + " << *rx_bpf - *tx_kernel << " ns), rx_kernel "
            << (rx_kernel ? std::to_string(*rx_kernel - *rx_bpf) + " ns after rx_bpf" : "-")
            << ", rx_user " << *rx_user - *rx_bpf << " ns after rx_bpf; offset_ns "
            << settled->value("offset_ns", 0) << ", delay_ns " << settled->value("delay_ns", 0)
            << ", samples " << settled->value("samples", 0) << "\n";
  ::testing::Test::RecordProperty("request_to_bpf_stamp_ns", std::to_string(*rx_bpf - *tx_kernel));
  ::testing::Test::RecordProperty("bpf_stamp_to_user_ns", std::to_string(*rx_user - *rx_bpf));
  EXPECT_LT(*tx_kernel, *rx_bpf) << stamps.dump();
  EXPECT_LE(*rx_bpf, *rx_user) << stamps.dump();

  const int status = taid.process().stop(5000ms, c.stop_signal);
  EXPECT_TRUE(exited_zero(status))
      << strsignal(c.stop_signal) << " must end taid cleanly: " << taid.process().describe();
  EXPECT_FALSE(std::filesystem::exists(taid.socket_path()))
      << "control socket left behind: " << taid.socket_path();
  const auto left = leftovers_after_settling(net, program_ids, map_ids);
  EXPECT_TRUE(left.empty()) << "left behind after a clean exit:" << joined(left);
}

class BpfAttachTest : public SystemTest, public ::testing::WithParamInterface<AttachCase> {};

// Whether this kernel has tcx, asked of the kernel with the probe taid itself uses.
bool kernel_has_tcx() {
  const auto supported = bpf::tcx_supported();
  EXPECT_TRUE(supported) << supported.error().message();
  return supported && *supported;
}

// On a kernel without tcx (Debian 12's 6.1) an explicit `bpfattach tcx` must say so plainly and
// leave taid measuring with kernel stamps; it never turns into another attach mode silently.
void expect_no_tcx_said_plainly(TaidDaemon& taid, const std::string& address) {
  json source;
  ASSERT_TRUE(wait_for_samples(taid, address, 8, 15000ms, source))
      << taid.process().describe() << "; last error: " << taid.last_error();
  EXPECT_EQ(str_field(source, "timestamp_source"), "kernel") << source.dump();
  const auto tracking = taid.tracking();
  ASSERT_TRUE(tracking) << taid.last_error();
  const json timestamping = tracking->value("timestamping", json::object());
  EXPECT_TRUE(timestamping.value("bpf_programs", json::array()).empty()) << timestamping.dump();
  EXPECT_TRUE(contains(str_field(timestamping, "bpf_error"), "this kernel has no tcx"))
      << timestamping.dump();
  std::cout << "kernel without tcx: " << str_field(timestamping, "bpf_error") << "\n";
  EXPECT_TRUE(exited_zero(taid.process().stop())) << taid.process().describe();
}

TEST_P(BpfAttachTest, BpfStampsARealReply) {
  const AttachCase& c = GetParam();
  chronyd_.emplace(*net_, dir_->path());
  const std::string address = chronyd_->address();
  taid_.emplace(net_->client_ns(), dir_->path(), bpf_config(address, c));
  if (c.bpfattach == "tcx" && !kernel_has_tcx()) {
    expect_no_tcx_said_plainly(*taid_, address);
    return;
  }
  expect_bpf_stamps(*net_, *taid_, address, c, "");
}

INSTANTIATE_TEST_SUITE_P(
    Attach, BpfAttachTest,
    ::testing::Values(auto_case(), AttachCase{"tc", "tc", false, {"tc_clsact"}},
                      AttachCase{"tcx", "tcx", false, {"tcx"}},
                      AttachCase{"xdp_generic", "xdp-generic", false, {"xdp_generic"}},
                      AttachCase{"tc_sighup", "tc", false, {"tc_clsact"}, SIGHUP},
                      AttachCase{
                          "xdp_generic_sigquit", "xdp-generic", false, {"xdp_generic"}, SIGQUIT}),
    [](const ::testing::TestParamInfo<AttachCase>& param) { return param.param.name; });

// ---- b. SIGKILL, restart, clean exit: nothing of ours remains ----

class CrashRestartTest : public SystemTest, public ::testing::WithParamInterface<std::string> {};

TEST_P(CrashRestartTest, CrashRestartLeavesNothing) {
  const std::string mode = GetParam();  // "tc" or "tcx"
  chronyd_.emplace(*net_, dir_->path());
  const std::string address = chronyd_->address();
  const std::vector<std::string> config{server_line(address, false), "timestamping bpf",
                                        "bpfattach " + mode};
  const std::string& ns = net_->client_ns();

  TaidOptions crashing;
  crashing.log_name = "taid-1-killed.log";
  taid_.emplace(ns, dir_->path(), config, crashing);
  if (mode == "tcx" && !kernel_has_tcx()) {
    expect_no_tcx_said_plainly(*taid_, address);  // nothing attached, nothing to crash
    return;
  }
  const json first = wait_for_bpf_programs(*taid_, 10000ms);
  ASSERT_EQ(first.size(), 1u) << taid_->process().describe() << " " << taid_->last_error();
  const auto killed_id = static_cast<std::uint32_t>(first[0].value("program_id", 0));
  ASSERT_NE(killed_id, 0u);
  std::vector<std::uint32_t> map_ids = map_ids_of(ns, killed_id);
  const std::string killed_text = "id " + std::to_string(killed_id) + " ";
  if (mode == "tc") {
    ASSERT_TRUE(contains(tc_ingress_filters(*net_), killed_text)) << tc_ingress_filters(*net_);
    ASSERT_TRUE(contains(tc_qdiscs(*net_), "clsact")) << "taid created the clsact qdisc";
  }

  const int killed = taid_->process().kill_now();
  EXPECT_TRUE(killed_by(killed, SIGKILL)) << taid_->process().describe();
  if (mode == "tc") {
    // What a crash leaves: a tc filter and its qdisc outlive the process. The restart's job.
    EXPECT_TRUE(contains(tc_ingress_filters(*net_), killed_text)) << tc_ingress_filters(*net_);
    EXPECT_TRUE(contains(tc_qdiscs(*net_), "clsact")) << tc_qdiscs(*net_);
  } else {
    // A tcx link lives only as long as the fd taid held: the kill alone removes everything.
    const auto left = leftovers_after_settling(*net_, {killed_id}, map_ids);
    EXPECT_TRUE(left.empty()) << "left behind by SIGKILL with tcx:" << joined(left);
  }

  TaidOptions restarted;
  restarted.log_name = "taid-2-restarted.log";
  taid_.reset();
  taid_.emplace(ns, dir_->path(), config, restarted);
  const json second = wait_for_bpf_programs(*taid_, 10000ms);
  ASSERT_EQ(second.size(), 1u) << "the restart must attach: " << taid_->process().describe() << " "
                               << taid_->last_error();
  const auto restart_id = static_cast<std::uint32_t>(second[0].value("program_id", 0));
  ASSERT_NE(restart_id, 0u);
  EXPECT_NE(restart_id, killed_id);
  for (const auto map : map_ids_of(ns, restart_id)) map_ids.push_back(map);
  json source;
  ASSERT_TRUE(wait_for_samples(*taid_, address, 1, 10000ms, source))
      << taid_->process().describe() << "; " << source.dump();
  EXPECT_EQ(str_field(source, "timestamp_source"), "bpf") << source.dump();
  if (mode == "tc") {
    const std::string replaced =
        "replacing a leftover taid tc filter (program id " + std::to_string(killed_id) + ")";
    EXPECT_TRUE(contains(taid_->process().log(), replaced)) << taid_->process().log();
    const std::string filters = tc_ingress_filters(*net_);
    EXPECT_TRUE(contains(filters, "id " + std::to_string(restart_id) + " ")) << filters;
    EXPECT_FALSE(contains(filters, killed_text)) << filters;
  }
  std::cout << "[" << mode << "] killed run's program id " << killed_id << ", restart's "
            << restart_id << ", first sample rx=" << str_field(source, "timestamp_source")
            << " offset " << source.value("last_offset_ns", 0) << " ns\n";

  const int status = taid_->process().stop();
  EXPECT_TRUE(exited_zero(status)) << taid_->process().describe();
  const auto left = leftovers_after_settling(*net_, {killed_id, restart_id}, map_ids);
  EXPECT_TRUE(left.empty()) << "left behind after crash + restart + clean exit:" << joined(left);
}

INSTANTIATE_TEST_SUITE_P(Attach, CrashRestartTest, ::testing::Values("tc", "tcx"),
                         [](const ::testing::TestParamInfo<std::string>& param) {
                           return param.param;
                         });

// ---- c. without BPF privileges: one warning, kernel stamps, still running ----

using TimestampingTest = SystemTest;

// CapEff of a process, as the hex mask /proc prints.
std::uint64_t effective_capabilities(pid_t pid) {
  std::istringstream status(read_file("/proc/" + std::to_string(pid) + "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("CapEff:", 0) == 0) return std::stoull(line.substr(7), nullptr, 16);
  }
  return ~std::uint64_t{0};
}

TEST_F(TimestampingTest, WithoutBpfPrivilegeFallsBackToKernel) {
  chronyd_.emplace(*net_, dir_->path());
  const std::string address = chronyd_->address();
  TaidOptions unprivileged;
  unprivileged.dropped_capabilities = {"cap_bpf", "cap_sys_admin", "cap_net_admin", "cap_sys_time"};
  taid_.emplace(net_->client_ns(), dir_->path(),
                std::vector<std::string>{server_line(address, false), "timestamping auto"},
                unprivileged);

  json source;
  ASSERT_TRUE(wait_for_samples(*taid_, address, 8, 15000ms, source))
      << taid_->process().describe() << "; last source: " << source.dump()
      << "; last error: " << taid_->last_error();
  // The drop really reached taid: CAP_BPF (39), CAP_SYS_ADMIN (21), CAP_NET_ADMIN (12),
  // CAP_SYS_TIME (25) are not effective.
  const std::uint64_t caps = effective_capabilities(taid_->process().pid());
  for (const int bit : {39, 21, 12, 25}) {
    EXPECT_EQ(caps & (std::uint64_t{1} << bit), 0u) << "capability " << bit << " in CapEff";
  }
  EXPECT_EQ(str_field(source, "timestamp_source"), "kernel") << source.dump();
  const auto tracking = taid_->tracking();
  ASSERT_TRUE(tracking) << taid_->last_error();
  const json timestamping = tracking->value("timestamping", json::object());
  EXPECT_TRUE(timestamping.value("bpf_programs", json::array()).empty()) << timestamping.dump();
  EXPECT_NE(str_field(timestamping, "bpf_error"), "") << timestamping.dump();
  std::cout << "without CAP_BPF/CAP_NET_ADMIN/CAP_SYS_ADMIN (CapEff " << std::hex << caps
            << std::dec << "): " << source.value("samples", 0) << " samples, timestamp_source "
            << str_field(source, "timestamp_source") << ", offset_ns "
            << source.value("offset_ns", 0)
            << "; bpf_error: " << str_field(timestamping, "bpf_error") << "\n";

  EXPECT_EQ(count_lines_containing(taid_->process().log(), "eBPF RX timestamps unavailable"), 1)
      << taid_->process().log();
  EXPECT_FALSE(taid_->process().exited()) << taid_->process().describe();
  const int status = taid_->process().stop();
  EXPECT_TRUE(exited_zero(status)) << taid_->process().describe();
  const auto left = leftovers(*net_, {}, {});
  EXPECT_TRUE(left.empty()) << "an unprivileged taid changed the device:" << joined(left);
}

// ---- d. interleaved mode against chronyd ----

// The capability set packaging/taid.service gives taid (CapabilityBoundingSet) is enough for
// eBPF stamps: the service is run here with exactly that set, and anything else dropped.
std::vector<std::string> service_capabilities() {
  const std::string unit =
      read_file(std::filesystem::path(TAID_SOURCE_DIR) / "packaging/taid.service");
  std::istringstream lines(unit);
  std::string line;
  const std::string key = "CapabilityBoundingSet=";
  while (std::getline(lines, line)) {
    if (line.rfind(key, 0) != 0) continue;
    std::istringstream words(line.substr(key.size()));
    std::vector<std::string> caps;
    for (std::string word; words >> word;) {
      std::transform(word.begin(), word.end(), word.begin(),
                     [](unsigned char c) { return std::tolower(c); });
      caps.push_back(word);
    }
    return caps;
  }
  return {};
}

// Every capability this machine's bounding set holds, by name (capsh --print).
std::vector<std::string> bounding_set() {
  const RunResult printed = run({"capsh", "--print"});
  std::istringstream lines(printed.out);
  std::string line;
  const std::string key = "Bounding set =";
  std::vector<std::string> caps;
  while (std::getline(lines, line)) {
    if (line.rfind(key, 0) != 0) continue;
    std::istringstream names(line.substr(key.size()));
    for (std::string name; std::getline(names, name, ',');) caps.push_back(name);
  }
  return caps;
}

TEST_F(TimestampingTest, PackagedServiceCapabilitiesGiveBpfStamps) {
  const std::vector<std::string> kept = service_capabilities();
  ASSERT_FALSE(kept.empty()) << "no CapabilityBoundingSet= in packaging/taid.service";
  TaidOptions packaged;
  packaged.dropped_capabilities.clear();
  for (const std::string& cap : bounding_set()) {
    if (std::find(kept.begin(), kept.end(), cap) == kept.end()) {
      packaged.dropped_capabilities.push_back(cap);
    }
  }
  ASSERT_FALSE(packaged.dropped_capabilities.empty()) << "capsh --print gave no bounding set";
  chronyd_.emplace(*net_, dir_->path());
  const std::string address = chronyd_->address();
  taid_.emplace(net_->client_ns(), dir_->path(),
                std::vector<std::string>{server_line(address, false), "timestamping bpf"},
                packaged);
  json source;
  ASSERT_TRUE(wait_for_samples(*taid_, address, 8, 15000ms, source))
      << taid_->process().describe() << "; last source: " << source.dump()
      << "; last error: " << taid_->last_error();
  EXPECT_EQ(str_field(source, "timestamp_source"), "bpf")
      << "the unit's capabilities (" << joined(kept)
      << ") do not give eBPF stamps: " << source.dump() << "; " << taid_->process().log();
  // The unit steers the clock, so its set holds CAP_SYS_TIME (taid runs here with -x, and on
  // the host the suite itself lacks CAP_SYS_TIME, so there the daemon cannot have it either).
  // Whatever the environment, the daemon holds nothing outside the unit's set.
  EXPECT_NE(std::find(kept.begin(), kept.end(), "cap_sys_time"), kept.end())
      << "the disciplining unit lacks CAP_SYS_TIME: " << joined(kept);
  const std::vector<std::pair<std::string, int>> numbers = {
      {"cap_net_bind_service", 10}, {"cap_net_admin", 12}, {"cap_sys_time", 25}, {"cap_bpf", 39}};
  std::uint64_t allowed = 0;
  for (const std::string& cap : kept) {
    const auto it = std::find_if(numbers.begin(), numbers.end(),
                                 [&](const auto& n) { return n.first == cap; });
    ASSERT_NE(it, numbers.end()) << "a capability this test cannot number: " << cap;
    allowed |= std::uint64_t{1} << it->second;
  }
  const std::uint64_t caps = effective_capabilities(taid_->process().pid());
  EXPECT_EQ(caps & ~allowed, 0u) << "capabilities outside the unit's set: 0x" << std::hex
                                 << (caps & ~allowed);
  const int status = taid_->process().stop();
  EXPECT_TRUE(exited_zero(status)) << taid_->process().describe();
}

TEST_F(TimestampingTest, XleaveAgainstChronyd) {
  chronyd_.emplace(*net_, dir_->path());
  const std::string address = chronyd_->address();
  taid_.emplace(
      net_->client_ns(), dir_->path(),
      std::vector<std::string>{server_line(address, true, " xleave"), "timestamping kernel"});
  json source;
  // 8 burst requests and then regular polls, all 250 ms apart (burst spacing is capped by the
  // poll).
  ASSERT_TRUE(wait_for_samples(*taid_, address, 16, 40000ms, source))
      << taid_->process().describe() << "; last source: " << source.dump()
      << "; last error: " << taid_->last_error();
  std::cout << "xleave after " << source.value("samples", 0)
            << " samples: " << source.value("interleaved_samples", 0) << " interleaved, offset_ns "
            << source.value("offset_ns", 0) << ", last_offset_ns "
            << source.value("last_offset_ns", 0) << ", delay_ns " << source.value("delay_ns", 0)
            << ", jitter_ns " << source.value("jitter_ns", 0) << ", rx "
            << str_field(source, "timestamp_source") << ", tx "
            << str_field(source, "tx_timestamp_source") << "\n";
  for (const char* key : {"offset_ns", "jitter_ns", "delay_ns", "interleaved_samples"}) {
    if (const auto value = int_field(source, key)) RecordProperty(key, std::to_string(*value));
  }
  EXPECT_GT(int_field(source, "interleaved_samples").value_or(0), 0) << source.dump();
  EXPECT_EQ(str_field(source, "tx_timestamp_source"), "kernel") << source.dump();
  const auto offset_ns = int_field(source, "offset_ns");
  ASSERT_TRUE(offset_ns) << source.dump();
  EXPECT_LT(std::llabs(*offset_ns), 20'000) << source.dump();
  const int status = taid_->process().stop();
  EXPECT_TRUE(exited_zero(status)) << taid_->process().describe();
}

// ---- e. the measurements log ----

std::vector<std::string> split(const std::string& line, char separator) {
  std::vector<std::string> fields;
  std::istringstream in(line);
  std::string field;
  while (std::getline(in, field, separator)) fields.push_back(field);
  if (!line.empty() && line.back() == separator) fields.emplace_back();
  return fields;
}

bool is_integer(const std::string& text) {
  if (text.empty()) return false;
  const size_t start = text[0] == '-' ? 1 : 0;
  return start < text.size() &&
         std::all_of(text.begin() + static_cast<std::ptrdiff_t>(start), text.end(),
                     [](char ch) { return ch >= '0' && ch <= '9'; });
}

TEST_F(TimestampingTest, MeasurementsLog) {
  chronyd_.emplace(*net_, dir_->path());
  const std::string address = chronyd_->address();
  taid_.emplace(net_->client_ns(), dir_->path(),
                std::vector<std::string>{server_line(address, false),
                                         "logdir " + dir_->path().string(), "log measurements"});
  json source;
  ASSERT_TRUE(wait_for_samples(*taid_, address, 6, 15000ms, source))
      << taid_->process().describe() << "; last error: " << taid_->last_error();
  const int seen = static_cast<int>(int_field(source, "samples").value_or(0));
  const int status = taid_->process().stop();
  EXPECT_TRUE(exited_zero(status)) << taid_->process().describe();

  // After exit nothing more is written: one CSV line per "sample" line taid logged.
  const std::string text = read_file(*dir_ / "measurements.log");
  std::istringstream lines(text);
  std::string header;
  ASSERT_TRUE(std::getline(lines, header)) << "measurements.log is empty";
  EXPECT_EQ(header.rfind('#', 0), 0u) << header;
  EXPECT_EQ(split(header, ',').size(), 13u) << header;
  int rows = 0, envelope_rows = 0;
  for (std::string line; std::getline(lines, line);) {
    ++rows;
    const auto fields = split(line, ',');
    ASSERT_EQ(fields.size(), 13u) << "line " << rows + 1 << ": " << line;
    EXPECT_EQ(fields[1], address) << line;
    for (const size_t i : {2u, 3u, 4u, 7u, 8u}) EXPECT_TRUE(is_integer(fields[i])) << line;
    for (const size_t i : {5u, 6u}) {
      EXPECT_TRUE(fields[i] == "user" || fields[i] == "kernel" || fields[i] == "bpf" ||
                  fields[i] == "hardware")
          << line;
    }
    EXPECT_TRUE(fields[7] == "0" || fields[7] == "1") << line;
    EXPECT_EQ(fields[8], "10") << line;  // chronyd's "local stratum 10"
    // The clock filter's estimate when this sample released one, else empty.
    EXPECT_TRUE(fields[9].empty() || is_integer(fields[9])) << line;
    // The delay envelope's offset, frequency and half minimum delay once it holds 4 samples
    // (all three or none: a restart empties them again); never before the fourth row.
    if (!fields[10].empty()) {
      for (const size_t i : {10u, 11u, 12u}) EXPECT_TRUE(is_integer(fields[i])) << line;
      EXPECT_GE(rows, 4) << line;
      ++envelope_rows;
    } else {
      for (const size_t i : {11u, 12u}) EXPECT_TRUE(fields[i].empty()) << line;
    }
  }
  EXPECT_GE(envelope_rows, 1) << "the envelope never filled";
  const int logged = count_lines_containing(taid_->process().log(), "sample " + address);
  std::cout << "measurements.log: header '" << header << "', " << rows << " rows; " << logged
            << " sample lines in taid's log; " << seen << " samples seen by taictl before exit\n";
  EXPECT_EQ(rows, logged);
  EXPECT_GE(rows, seen);
}

// ---- f. a server on this host: replies come in on lo ----

// taid polls chronyd from chronyd's own namespace, at the address chronyd holds on its veth end.
// The address belongs to the veth, but the packets never cross it: the local route sends them
// through lo. taid asks the routing table for the device (as `ip route get` does), so its eBPF
// program sits on lo and the samples are eBPF-stamped.
TEST_F(TimestampingTest, LocalServerRepliesArriveOnLoopback) {
  chronyd_.emplace(*net_, dir_->path());
  const std::string address = chronyd_->address();
  taid_.emplace(net_->server_ns(), dir_->path(),
                std::vector<std::string>{server_line(address, false), "timestamping bpf"});
  json source;
  const bool stamped = wait_for_source(*taid_, address, 20000ms, source, [](const json& s) {
    return int_field(s, "samples").value_or(0) >= 4 && str_field(s, "timestamp_source") == "bpf";
  });
  ASSERT_FALSE(taid_->process().exited()) << taid_->process().describe();
  EXPECT_TRUE(stamped) << "no eBPF-stamped sample from the local server: " << source.dump() << "\n"
                       << taid_->process().log();
  const auto tracking = taid_->tracking();
  ASSERT_TRUE(tracking);
  std::cout << "local server: " << source.dump() << "\ntracking: " << tracking->dump() << "\n";
  bool on_lo = false;
  for (const auto& program : tracking->at("timestamping").value("bpf_programs", json::array()))
    on_lo = on_lo || str_field(program, "interface") == "lo";
  EXPECT_TRUE(on_lo) << tracking->dump();
  const int status = taid_->process().stop();
  EXPECT_TRUE(exited_zero(status)) << taid_->process().describe();
  // Nothing left on lo: no tc filter, no clsact qdisc, no XDP.
  const std::string& ns = net_->server_ns();
  EXPECT_EQ(in_ns(ns, {"tc", "filter", "show", "dev", "lo", "ingress"}), "");
  EXPECT_FALSE(contains(in_ns(ns, {"tc", "qdisc", "show", "dev", "lo"}), "clsact"));
  EXPECT_FALSE(contains(in_ns(ns, {"ip", "link", "show", "dev", "lo"}), "xdp"));
}

// ---- g. a: the same eBPF stamps over IPv6 ----

// The veth ends also get ULA addresses (fd00:7a1d:P:N::1 and ::2), and chronyd is bound to the
// server's: the scenario of a with an IPv6 socket, an IPv6 map key, and the IPv6 header parsed.
class Ipv6TimestampingTest : public SystemTest {
 protected:
  Ipv6TimestampingTest() { net_options_.ipv6 = true; }
};

TEST_F(Ipv6TimestampingTest, BpfStampsOverIPv6) {
  chronyd_.emplace(*net_, dir_->path(), Family::ipv6);
  const std::string address = chronyd_->address();
  ASSERT_NE(address.find(':'), std::string::npos) << address;
  // The literal goes on the server line bare, as chrony writes it: taid passes the name to
  // getaddrinfo, which takes no [brackets].
  taid_.emplace(net_->client_ns(), dir_->path(), bpf_config(address, auto_case()));
  expect_bpf_stamps(*net_, *taid_, address, auto_case(), "IPv6 ");
}

}  // namespace
}  // namespace taid::system_test
