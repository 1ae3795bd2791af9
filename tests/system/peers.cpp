// The programs a system test talks to: chronyd as a server, ntpdig as a probe, taid + taictl.
#include "tests/system/peers.hpp"

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <thread>

namespace taid::system_test {

std::filesystem::path chronyd_binary() { return peers_root() / "usr/sbin/chronyd"; }
std::filesystem::path chronyc_binary() { return peers_root() / "usr/bin/chronyc"; }
std::filesystem::path ntpdig_binary() { return peers_root() / "usr/bin/ntpdig"; }
std::filesystem::path ntp_python_path() { return peers_root() / "usr/lib/python3/dist-packages"; }

void write_lines(const std::filesystem::path& path, const std::vector<std::string>& lines) {
  std::ofstream out(path);
  for (const auto& line : lines) out << line << "\n";
  if (!out.flush()) throw std::runtime_error("cannot write " + path.string());
}

namespace {

std::optional<std::string> probe_environment() {
  if (::geteuid() != 0) return "system tests need root (network namespaces, veth)";
  for (const char* program : {"ip", "capsh", "unshare", "python3"}) {
    if (!program_exists(program)) return std::string(program) + " not found in PATH";
  }
  const RunResult list = run({"ip", "netns", "list"}, 5000ms);
  if (!list.ok()) return "`ip netns` is unavailable: " + list.describe();
  // Root in a container may still lack CAP_SYS_ADMIN for new network namespaces.
  const RunResult probe = run({"unshare", "--net", "true"}, 5000ms);
  if (!probe.ok()) return "cannot create network namespaces: " + probe.describe();
  for (const auto& path : {chronyd_binary(), chronyc_binary(), ntpdig_binary()}) {
    if (::access(path.c_str(), X_OK) != 0) {
      return path.string() + " missing: peers are not unpacked (run scripts/setup)";
    }
  }
  const auto libntpc = ntp_python_path() / "ntp/libntpc.so";
  if (!std::filesystem::exists(libntpc)) {
    return libntpc.string() + " missing (run scripts/setup)";
  }
  return std::nullopt;
}

const std::string& server_address(const NetnsPair& net, Family family) {
  if (family == Family::ipv4) return net.server_address();
  if (net.server_address6().empty()) {
    throw std::invalid_argument("IPv6 chronyd on a NetnsPair made without NetnsOptions::ipv6");
  }
  return net.server_address6();
}

std::vector<std::string> chronyd_argv(const std::string& ns, const std::string& address,
                                      Family family, const std::filesystem::path& dir,
                                      const std::vector<std::string>& extra_lines) {
  const auto conf = dir / "chronyd.conf";
  std::filesystem::create_directories(dir / "chronyd-log");
  // PEERS.md: a server with no upstream, no clock control, all state under dir.
  std::vector<std::string> lines{
      "local stratum 10",
      family == Family::ipv4 ? "allow 10.0.0.0/8" : "allow fd00::/8",
      "bindaddress " + address,
      "port 123",
      "driftfile " + (dir / "chronyd.drift").string(),
      "pidfile " + (dir / "chronyd.pid").string(),
      "bindcmdaddress " + (dir / "chronyd.sock").string(),
      "cmdport 0",
      "logdir " + (dir / "chronyd-log").string(),
      "log measurements statistics tracking",
  };
  lines.insert(lines.end(), extra_lines.begin(), extra_lines.end());
  write_lines(conf, lines);
  // -u root: the _chrony user does not exist because the package is unpacked, not installed.
  return in_ns_without_clock_control(
      ns, {chronyd_binary().string(), "-x", "-u", "root", "-d", "-f", conf.string()});
}

std::vector<std::string> chronyd_argv(const NetnsPair& net, const std::filesystem::path& dir,
                                      Family family) {
  return chronyd_argv(net.server_ns(), server_address(net, family), family, dir, {});
}

// chronyd refuses a command-socket folder that others may enter (PEERS.md: 0750).
const std::filesystem::path& private_dir(const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  std::filesystem::permissions(dir, std::filesystem::perms(0750));
  return dir;
}

}  // namespace

std::filesystem::path taid_binary() { return TAID_BIN; }
std::filesystem::path taictl_binary() { return TAICTL_BIN; }
std::filesystem::path peers_root() { return TAID_PEERS_ROOT; }

std::optional<std::string> unavailable_reason() {
  static const std::optional<std::string> reason = probe_environment();
  return reason;
}

std::vector<std::string> in_ns_without_clock_control(const std::string& ns,
                                                     const std::vector<std::string>& argv) {
  return in_ns_without_capabilities(ns, {"cap_sys_time"}, argv);
}

std::vector<std::string> in_ns_without_capabilities(const std::string& ns,
                                                    const std::vector<std::string>& capabilities,
                                                    const std::vector<std::string>& argv) {
  std::string drop = "--drop=";
  for (const auto& capability : capabilities) {
    drop += (drop.back() == '=' ? "" : ",") + capability;
  }
  // capsh runs `bash -c SCRIPT ARG0 ARGS...`; "exec $0 $@" keeps the program's own pid, so
  // SIGTERM from Process reaches it, and nothing needs shell quoting.
  std::vector<std::string> full = NetnsPair::exec_in(ns);
  full.insert(full.end(), {"capsh", drop, "--", "-c", "exec \"$0\" \"$@\""});
  full.insert(full.end(), argv.begin(), argv.end());
  return full;
}

bool wait_until(std::chrono::milliseconds timeout, std::chrono::milliseconds interval,
                const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (done()) return true;
    if (std::chrono::steady_clock::now() + interval > deadline) return done();
    std::this_thread::sleep_for(interval);
  }
}

ChronydServer::ChronydServer(const NetnsPair& net, const std::filesystem::path& dir, Family family)
    : address_(server_address(net, family)),
      socket_(dir / "chronyd.sock"),
      process_(chronyd_argv(net, dir, family), dir / "chronyd.out") {
  wait_until_answering();
}

void ChronydServer::wait_until_answering() {
  const bool answering = wait_until(10000ms, 100ms, [this] {
    if (process_.exited()) return true;
    return run({chronyc_binary().string(), "-h", socket_.string(), "tracking"}, 3000ms).ok();
  });
  if (process_.exited() || !answering) {
    throw std::runtime_error("chronyd did not come up: " + process_.describe() + "\n" +
                             process_.log());
  }
}

ChronydServer::ChronydServer(const std::string& ns, const std::string& address,
                             const std::filesystem::path& dir,
                             const std::vector<std::string>& extra_lines)
    : address_(address),
      socket_(dir / "chronyd.sock"),
      process_(chronyd_argv(ns, address, Family::ipv4, private_dir(dir), extra_lines),
               dir / "chronyd.out") {
  wait_until_answering();
}

std::string ChronydServer::chronyc(const std::string& command) const {
  const RunResult r = run({chronyc_binary().string(), "-h", socket_.string(), command}, 5000ms);
  if (!r.ok()) throw std::runtime_error("chronyc " + command + ": " + r.describe());
  return r.out;
}

NtpdigReply ntpdig(const std::string& ns, const std::string& address) {
  std::vector<std::string> argv = NetnsPair::exec_in(ns);
  argv.insert(argv.end(), {"env", "PYTHONPATH=" + ntp_python_path().string(), "python3",
                           ntpdig_binary().string(), "-j", address});
  const RunResult r = run(argv, 20000ms);
  if (!r.ok()) throw std::runtime_error(join_argv(argv) + ": " + r.describe() + r.out);
  // ntpdig -j prints one JSON object per reply.
  const auto json = nlohmann::json::parse(r.out, nullptr, false);
  if (json.is_discarded() || !json.contains("offset")) {
    throw std::runtime_error("ntpdig: no reply in output: " + r.out + r.err);
  }
  NtpdigReply reply;
  reply.offset_s = json.at("offset").get<double>();
  reply.stratum = json.value("stratum", 0);
  reply.json = r.out.substr(0, r.out.find('\n'));
  return reply;
}

std::filesystem::path TaidDaemon::write_config(const std::filesystem::path& dir,
                                               const std::vector<std::string>& lines) {
  const auto conf = dir / "taid.conf";
  std::vector<std::string> all = lines;
  all.push_back("bindcmdaddress " + (dir / "taid.sock").string());
  write_lines(conf, all);
  return conf;
}

TaidDaemon::TaidDaemon(const std::string& ns, const std::filesystem::path& dir,
                       const std::vector<std::string>& config_lines, const TaidOptions& options)
    : socket_(dir / "taid.sock"),
      process_(in_ns_without_capabilities(
                   ns, options.dropped_capabilities,
                   {taid_binary().string(), "-x", "-f", write_config(dir, config_lines).string()}),
               dir / options.log_name) {}

RunResult TaidDaemon::taictl(const std::vector<std::string>& args) const {
  std::vector<std::string> argv{taictl_binary().string(), "-s", socket_.string()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv, 5000ms);
}

std::optional<nlohmann::json> TaidDaemon::sources() const { return query("sources"); }
std::optional<nlohmann::json> TaidDaemon::tracking() const { return query("tracking"); }

std::optional<nlohmann::json> TaidDaemon::query(const std::string& command) const {
  if (!std::filesystem::exists(socket_)) {
    last_error_ = socket_.string() + " does not exist yet";
    return std::nullopt;
  }
  const RunResult r = taictl({command, "--json"});
  if (!r.ok()) {
    last_error_ = "taictl " + command + " --json: " + r.describe();
    return std::nullopt;
  }
  auto json = nlohmann::json::parse(r.out, nullptr, false);
  if (json.is_discarded()) {
    last_error_ = "taictl " + command + " --json printed no valid JSON: " + r.out;
    return std::nullopt;
  }
  last_error_.clear();
  return json;
}

}  // namespace taid::system_test
