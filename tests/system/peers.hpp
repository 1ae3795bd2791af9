// The programs a system test talks to: chronyd as a server, ntpdig as a probe, taid + taictl.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "tests/system/netns.hpp"
#include "tests/system/process.hpp"

namespace taid::system_test {

// Paths compiled in by tests/system/CMakeLists.txt.
std::filesystem::path taid_binary();
std::filesystem::path taictl_binary();
std::filesystem::path peers_root();
// The peers scripts/setup unpacked under peers_root(), and where ntpdig's Python module lives.
std::filesystem::path chronyd_binary();
std::filesystem::path chronyc_binary();
std::filesystem::path ntpdig_binary();
std::filesystem::path ntp_python_path();
// Writes `lines` to `path`, one per line; throws std::runtime_error when it cannot.
void write_lines(const std::filesystem::path& path, const std::vector<std::string>& lines);

// Why the system tests cannot run on this machine (not root, no netns, peers not unpacked), or
// nullopt if they can. Probed once per process.
std::optional<std::string> unavailable_reason();

// argv that runs `argv` inside namespace `ns` with CAP_SYS_TIME removed from the bounding set:
// the second guard (after -x) that no peer and no taid under test can change this machine's clock.
std::vector<std::string> in_ns_without_clock_control(const std::string& ns,
                                                     const std::vector<std::string>& argv);
// Same with a chosen list of capabilities (capsh names, e.g. "cap_bpf") dropped from the bounding
// set; a root process then execs with none of them. Keep "cap_sys_time" in the list.
std::vector<std::string> in_ns_without_capabilities(const std::string& ns,
                                                    const std::vector<std::string>& capabilities,
                                                    const std::vector<std::string>& argv);

// Polls `done` every `interval` until it returns true or `timeout` passes; returns its last value.
bool wait_until(std::chrono::milliseconds timeout, std::chrono::milliseconds interval,
                const std::function<bool()>& done);

// chronyd 4.3 (unpacked by scripts/setup) serving NTP on the server end of `net`, with no clock
// control (-x) and every file in `dir`. The constructor returns once chronyc gets an answer.
// With Family::ipv6 it binds the server's IPv6 address (the pair needs NetnsOptions::ipv6) and
// allows fd00::/8; address() is then that IPv6 address.
class ChronydServer {
 public:
  ChronydServer(const NetnsPair& net, const std::filesystem::path& dir,
                Family family = Family::ipv4);
  // One of several chronyds: IPv4 `address` (already on an interface of `ns`, e.g. from
  // NetnsPair::add_server_address), every file in `dir` (created, mode 0750), and
  // `extra_lines` appended to the configuration.
  ChronydServer(const std::string& ns, const std::string& address, const std::filesystem::path& dir,
                const std::vector<std::string>& extra_lines = {});
  const std::string& address() const { return address_; }
  // Runs chronyc against the command socket; throws std::runtime_error on failure.
  std::string chronyc(const std::string& command) const;
  Process& process() { return process_; }

 private:
  void wait_until_answering();  // throws std::runtime_error if chronyd does not come up

  std::string address_;
  std::filesystem::path socket_;
  Process process_;
};

struct NtpdigReply {
  double offset_s = 0.0;
  int stratum = 0;
  std::string json;  // ntpdig's own line, for the record
};

// One NTPsec ntpdig query from inside `ns`; throws std::runtime_error if no valid reply.
NtpdigReply ntpdig(const std::string& ns, const std::string& address);

// How a TaidDaemon runs: which capabilities it lacks, where its output goes (a restarted taid
// gets a log of its own, so the first run's words survive for the diagnosis).
struct TaidOptions {
  std::vector<std::string> dropped_capabilities{"cap_sys_time"};
  std::string log_name = "taid.log";
};

// taid -x -f CONF in the foreground inside `ns`; its stderr (one line per sample) goes to
// dir/taid.log. `config_lines` are written as they are, followed by bindcmdaddress.
class TaidDaemon {
 public:
  TaidDaemon(const std::string& ns, const std::filesystem::path& dir,
             const std::vector<std::string>& config_lines, const TaidOptions& options = {});
  const std::filesystem::path& socket_path() const { return socket_; }
  // taictl -s SOCK ARGS...; the raw result, never throws for a non-zero exit.
  RunResult taictl(const std::vector<std::string>& args) const;
  // `taictl sources --json` parsed, or nullopt while taid is not answering (yet); then
  // last_error() says why, for the message of a test that times out.
  std::optional<nlohmann::json> sources() const;
  // `taictl tracking --json`, the same way.
  std::optional<nlohmann::json> tracking() const;
  const std::string& last_error() const { return last_error_; }
  Process& process() { return process_; }

 private:
  static std::filesystem::path write_config(const std::filesystem::path& dir,
                                            const std::vector<std::string>& lines);
  std::optional<nlohmann::json> query(const std::string& command) const;
  std::filesystem::path socket_;
  Process process_;
  mutable std::string last_error_;
};

}  // namespace taid::system_test
