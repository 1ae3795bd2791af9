// RAII test environment: temporary directories and network namespace pairs joined by veth.
#include "tests/system/netns.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <system_error>

#include "tests/system/process.hpp"

namespace taid::system_test {
namespace {

constexpr const char* ns_prefix = "taidsys-";

void ip(const std::vector<std::string>& args) {
  std::vector<std::string> argv{"ip"};
  argv.insert(argv.end(), args.begin(), args.end());
  const RunResult r = run(argv, 10000ms);
  if (!r.ok()) throw std::runtime_error(join_argv(argv) + ": " + r.describe());
}

// Ends every process still inside `ns`; all of them were started by this test (or by an
// earlier, killed run of it), since nothing else knows the namespace's name.
void kill_processes_in(const std::string& ns) noexcept {
  try {
    const RunResult r = run({"ip", "netns", "pids", ns}, 5000ms);
    std::istringstream pids(r.out);
    long pid = 0;
    while (pids >> pid) {
      if (pid > 1) ::kill(static_cast<pid_t>(pid), SIGKILL);
    }
  } catch (const std::exception&) {
  }
}

void delete_namespace(const std::string& ns) noexcept {
  kill_processes_in(ns);
  try {
    const RunResult r = run({"ip", "netns", "delete", ns}, 10000ms);
    if (!r.ok()) std::cerr << "warning: ip netns delete " << ns << ": " << r.describe() << "\n";
  } catch (const std::exception& e) {
    std::cerr << "warning: ip netns delete " << ns << ": " << e.what() << "\n";
  }
}

// `text` the way inet_ntop writes it (where the zeros are compressed depends on the value), so
// that it compares equal to the address taid reports for a source.
std::string canonical_ipv6(const std::string& text) {
  in6_addr address{};
  char out[INET6_ADDRSTRLEN] = {};
  if (::inet_pton(AF_INET6, text.c_str(), &address) != 1 ||
      ::inet_ntop(AF_INET6, &address, out, sizeof out) == nullptr) {
    throw std::runtime_error("not an IPv6 address: " + text);
  }
  return out;
}

std::string hex(unsigned value) {
  std::ostringstream out;
  out << std::hex << value;
  return out.str();
}

}  // namespace

TempDir::TempDir() {
  // The pid in the name lets remove_stale_namespaces() recognise leftovers of a killed run.
  std::string templ = "/tmp/taid-sys-" + std::to_string(::getpid()) + "-XXXXXX";
  if (::mkdtemp(templ.data()) == nullptr) {
    throw std::system_error(errno, std::generic_category(), "mkdtemp");
  }
  // chronyd refuses a command-socket directory that others can write to; 0750 as in PEERS.md.
  ::chmod(templ.c_str(), 0750);
  path_ = templ;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::vector<std::string> NetnsPair::exec_in(const std::string& ns) {
  return {"ip", "netns", "exec", ns};
}

NetnsPair::NetnsPair(const NetnsOptions& options) {
  static std::atomic<unsigned> counter{0};
  const unsigned n = counter++ % 1000;
  const auto pid = static_cast<unsigned>(::getpid());
  const std::string tag = std::to_string(pid) + "-" + std::to_string(n);
  server_ns_ = ns_prefix + tag + "-srv";
  client_ns_ = ns_prefix + tag + "-cli";
  // Interface names are limited to 15 characters: "tv" + 7-digit pid + "_" + 3 digits + 1.
  const std::string if_tag = "tv" + std::to_string(pid) + "_" + std::to_string(n);
  server_if_ = if_tag + "s";
  client_if_ = if_tag + "c";
  const std::string& server_if = server_if_;
  const std::string& client_if = client_if_;
  // Each namespace has its own routing table, so the subnet only has to be unique per pair.
  const std::string subnet =
      "10." + std::to_string(100 + pid % 100) + "." + std::to_string(n % 256);
  subnet_ = subnet;
  server_address_ = subnet + ".1";
  client_address_ = subnet + ".2";
  unused_address_ = subnet + ".5";
  if (options.ipv6) {
    // A ULA prefix (fd00::/8, never routed beyond a site); pid and counter as for IPv4.
    const std::string prefix = "fd00:7a1d:" + hex(pid % 0x10000) + ":" + hex(n) + "::";
    server_address6_ = canonical_ipv6(prefix + "1");
    client_address6_ = canonical_ipv6(prefix + "2");
  }

  try {
    ip({"netns", "add", server_ns_});
    server_created_ = true;
    ip({"netns", "add", client_ns_});
    client_created_ = true;
    // Created directly inside the namespaces: nothing ever appears in the host's namespace.
    ip({"link", "add", server_if, "netns", server_ns_, "type", "veth", "peer", "name", client_if,
        "netns", client_ns_});
    ip({"-n", server_ns_, "addr", "add", server_address_ + "/29", "dev", server_if});
    ip({"-n", client_ns_, "addr", "add", client_address_ + "/29", "dev", client_if});
    if (options.ipv6) {
      // nodad: usable at once. Otherwise each address stays tentative while duplicate address
      // detection runs (about a second after link up): chronyd could not bind it, nor taid
      // send from it.
      ip({"-n", server_ns_, "addr", "add", server_address6_ + "/64", "dev", server_if, "nodad"});
      ip({"-n", client_ns_, "addr", "add", client_address6_ + "/64", "dev", client_if, "nodad"});
    }
    for (const auto& [ns, dev] :
         {std::pair{server_ns_, server_if}, std::pair{client_ns_, client_if}}) {
      ip({"-n", ns, "link", "set", "lo", "up"});
      ip({"-n", ns, "link", "set", dev, "up"});
    }
  } catch (...) {
    remove();
    throw;
  }
}

NetnsPair::~NetnsPair() { remove(); }

std::string NetnsPair::add_server_address(int host) const {
  if (host != 3 && host != 4 && host != 6)  // .1, .2 and .5 are taken; .7 is broadcast
    throw std::invalid_argument("add_server_address: host " + std::to_string(host));
  const std::string address = subnet_ + "." + std::to_string(host);
  ip({"-n", server_ns_, "addr", "add", address + "/29", "dev", server_if_});
  return address;
}

NetnsEtc::NetnsEtc(const std::string& ns) : path_(std::filesystem::path("/etc/netns") / ns) {
  created_parent_ = std::filesystem::create_directories(path_.parent_path());
  // Not create_directories: a folder that is already there belongs to someone else.
  if (::mkdir(path_.c_str(), 0755) != 0)
    throw std::system_error(errno, std::generic_category(), "mkdir " + path_.string());
}

NetnsEtc::~NetnsEtc() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
  // The machine had no /etc/netns before: leave none (rmdir fails while another test uses it).
  if (created_parent_) ::rmdir(path_.parent_path().c_str());
}

void NetnsEtc::write(const std::string& name, const std::string& content) const {
  // std::ofstream truncates the file it opens: the inode, and so the bind mount, stays.
  std::ofstream out(path_ / name);
  out << content;
  if (!out.flush()) throw std::runtime_error("cannot write " + (path_ / name).string());
}

void NetnsPair::remove() noexcept {
  // Deleting a namespace also destroys the veth pair inside it.
  if (client_created_) delete_namespace(client_ns_);
  if (server_created_) delete_namespace(server_ns_);
  client_created_ = server_created_ = false;
}

namespace {

// True if `name` (after `prefix`) starts with the pid of a process that no longer exists.
bool owner_is_gone(const std::string& name, const std::string& prefix) {
  if (name.rfind(prefix, 0) != 0) return false;
  const long owner = std::strtol(name.c_str() + prefix.size(), nullptr, 10);
  if (owner <= 0 || owner == ::getpid()) return false;
  return ::kill(static_cast<pid_t>(owner), 0) != 0 && errno == ESRCH;
}

}  // namespace

void remove_stale_namespaces() noexcept {
  try {
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator("/tmp", ec)) {
      const std::string name = entry.path().filename().string();
      if (owner_is_gone(name, "taid-sys-")) std::filesystem::remove_all(entry.path(), ec);
    }
    // NetnsEtc folders of killed runs (whose namespaces may be gone already).
    for (const auto& entry : std::filesystem::directory_iterator("/etc/netns", ec)) {
      if (owner_is_gone(entry.path().filename().string(), ns_prefix))
        std::filesystem::remove_all(entry.path(), ec);
    }
  } catch (const std::exception&) {
  }
  try {
    const RunResult r = run({"ip", "netns", "list"}, 5000ms);
    std::istringstream lines(r.out);
    std::string line;
    while (std::getline(lines, line)) {
      const std::string name = line.substr(0, line.find(' '));  // "NAME (id: 3)"
      if (!owner_is_gone(name, ns_prefix)) continue;
      std::cerr << "removing stale namespace " << name << " (its test run was killed)\n";
      delete_namespace(name);
      std::error_code ec;
      std::filesystem::remove_all(std::filesystem::path("/etc/netns") / name, ec);
    }
  } catch (const std::exception&) {
  }
}

}  // namespace taid::system_test
