// RAII test environment: a temporary directory and a pair of network namespaces joined by veth.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace taid::system_test {

// mkdtemp under /tmp (short: unix socket paths are limited to 108 bytes), removed on destruction.
class TempDir {
 public:
  TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir();
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

enum class Family { ipv4, ipv6 };

struct NetnsOptions {
  // Also give the veth ends ULA addresses fd00:7a1d:P:N::1 (server) and ::2 (client) in a /64.
  bool ipv6 = false;
};

// Two namespaces, "server" and "client", with one veth pair between them in 10.X.Y.0/29:
// .1 is the server end, .2 the client end, and .5 belongs to no one (an unanswered peer).
// A /29 rather than a /30 so that the unused address is a host address, not the broadcast.
// Names carry our pid and a counter, so parallel runs and parallel tests never collide, and a
// run that was killed can be recognised and cleaned up by the next one.
class NetnsPair {
 public:
  // Throws std::runtime_error (after undoing what it did) if any step fails.
  explicit NetnsPair(const NetnsOptions& options = {});
  NetnsPair(const NetnsPair&) = delete;
  NetnsPair& operator=(const NetnsPair&) = delete;
  ~NetnsPair();

  const std::string& server_ns() const { return server_ns_; }
  const std::string& client_ns() const { return client_ns_; }
  const std::string& server_address() const { return server_address_; }
  const std::string& client_address() const { return client_address_; }
  const std::string& unused_address() const { return unused_address_; }
  // The IPv6 ends, in the form taid prints them (inet_ntop); empty unless options.ipv6.
  const std::string& server_address6() const { return server_address6_; }
  const std::string& client_address6() const { return client_address6_; }
  // The veth end inside each namespace (where taid attaches its eBPF program: the client end).
  const std::string& server_interface() const { return server_if_; }
  const std::string& client_interface() const { return client_if_; }
  // argv prefix that runs a command inside a namespace.
  static std::vector<std::string> exec_in(const std::string& ns);
  // Adds host address `host` (3, 4 or 6) of the pair's /29 to the server end and
  // returns it: one more server on the same link. Throws std::runtime_error if `ip` fails.
  std::string add_server_address(int host) const;

 private:
  void remove() noexcept;

  std::string server_ns_;
  std::string client_ns_;
  std::string server_address_;
  std::string client_address_;
  std::string unused_address_;
  std::string subnet_;  // "10.X.Y"
  std::string server_address6_;
  std::string client_address6_;
  std::string server_if_;
  std::string client_if_;
  bool server_created_ = false;
  bool client_created_ = false;
};

// The files `ip netns exec NS` bind-mounts over /etc inside NS (hosts, nsswitch.conf, ...): the
// folder /etc/netns/NS is created here and removed, with everything in it, on destruction. Create
// it and its files before starting a process in NS: only files that exist at exec are mounted.
// write() rewrites a file in place (same inode), so a process already running in NS sees it.
class NetnsEtc {
 public:
  explicit NetnsEtc(const std::string& ns);  // throws std::runtime_error if the folder exists
  NetnsEtc(const NetnsEtc&) = delete;
  NetnsEtc& operator=(const NetnsEtc&) = delete;
  ~NetnsEtc();
  void write(const std::string& name, const std::string& content) const;

 private:
  std::filesystem::path path_;
  bool created_parent_ = false;  // /etc/netns itself
};

// Deletes namespaces and temp dirs left by earlier runs of this test that were killed before
// their destructors ran (their owner pid no longer exists), and ends the processes left in them.
void remove_stale_namespaces() noexcept;

}  // namespace taid::system_test
