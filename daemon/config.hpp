// The daemon's configuration: a chrony.conf-syntax file parsed once into a Config value.
//
// Directives (chrony's names and meanings; names and options match case-insensitively as in
// chrony):
//   server NAME [iburst] [xleave] [minpoll N] [maxpoll N] [port N]
//   pool NAME [iburst] [xleave] [minpoll N] [maxpoll N] [port N] [maxsources N]
//   bindcmdaddress PATH   control socket, an absolute path (at most 107 bytes)
//   driftfile PATH        an absolute path
//   hwtimestamp IFACE     hardware timestamping on IFACE (chrony's directive, without its
//                         options); one line per interface, "*" for every interface
//   logdir PATH           where log files go; log measurements   one CSV line per sample
// and two of ours:
//   timestamping auto|hardware|bpf|kernel|user   how packets are stamped (default auto)
//   bpfattach auto|tc|tcx|xdp-generic|xdp-native where the eBPF RX program attaches
// minpoll/maxpoll are log2 seconds in -6..17 (below 4, i.e. 16 s, only for links one owns, as
// in chrony), port 1..65535, maxsources 1..16. A line whose first
// non-blank character is # ! ; or % is a comment (as in chrony, not after other text). A config
// with no server or pool is valid: the daemon then only serves its control socket.
//
// Where chrony quietly repairs, we refuse: an unknown option, a repeated option, a repeated
// bindcmdaddress/driftfile/timestamping, the same hwtimestamp interface twice, or minpoll >
// maxpoll when both are written are errors. When only one of minpoll/maxpoll is written and it
// crosses the other's default, the default follows it (chrony does the same), so
// "server x minpoll 12" means minpoll 12, maxpoll 12. "timestamping hardware" without an
// hwtimestamp line is an error: it would name no interface to stamp on.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "net/stamp_choice.hpp"

namespace taid::daemon {

// Where packet timestamps come from, best first (each stamp still says its own source).
//   auto      the best the machine offers: hardware on the hwtimestamp interfaces that support
//             it, else eBPF RX stamps, else kernel software stamps, else user space
//   hardware  NIC stamps on the hwtimestamp interfaces; it is an error if none can
//   bpf       eBPF RX stamps at tc ingress, kernel software TX stamps
//   kernel    SO_TIMESTAMPING software RX and TX stamps
//   user      clock reads around send() and after recvmsg() only
// The stamp chooser's policy itself: the directive names it, lib/net carries it out.
using TimestampingMode = net::StampPolicy;

// The directive's word for `mode` ("auto", "hardware", ...).
std::string_view to_string(TimestampingMode mode);

// Where the eBPF RX program attaches (`bpfattach`). auto: tcx where a probe of the kernel finds it
// (the link dies with the process, so a crash leaves nothing behind), else a tc clsact filter
// owned by this process (Debian 12's 6.1 has no tcx). tcx alone never falls back: on a kernel
// without it taid says so. XDP (a bpf_link) falls back to auto's order when another live taid
// holds the device's XDP hook.
enum class BpfAttach { auto_, tc, tcx, xdp_generic, xdp_native };
std::string_view to_string(BpfAttach attach);

// Defaults of the server/pool options: one place, used by the struct and the option table.
inline constexpr int kDefaultMinpoll = 6;   // log2 s
inline constexpr int kDefaultMaxpoll = 10;  // log2 s
inline constexpr int kDefaultPort = 123;
inline constexpr int kDefaultMaxSources = 4;

// One server or pool line.
struct SourceDirective {
  std::string name;  // host name or address as written
  bool pool = false;
  bool iburst = false;
  bool xleave = false;            // interleaved mode (RFC 9769), chrony's option name
  int minpoll = kDefaultMinpoll;  // log2 seconds
  int maxpoll = kDefaultMaxpoll;  // log2 seconds
  uint16_t port = kDefaultPort;
  int max_sources = kDefaultMaxSources;  // pool only: how many of its addresses to use
  std::string origin;                    // "file:line", for messages about this source
};

struct Config {
  std::vector<SourceDirective> sources;  // in file order
  std::string bindcmdaddress = "/run/taid/taid.sock";
  std::string driftfile;  // empty: no drift file
  TimestampingMode timestamping = TimestampingMode::auto_;
  // hwtimestamp interfaces in file order, each once; "*" means every interface.
  std::vector<std::string> hwtimestamp_interfaces;
  BpfAttach bpf_attach = BpfAttach::auto_;
  std::string logdir;             // empty: no log files
  bool log_measurements = false;  // `log measurements`: one CSV line per sample in logdir
};

// A fatal configuration error; what() reads "file:line: message".
class ConfigError : public std::runtime_error {
 public:
  using runtime_error::runtime_error;
};

// Parses config text; file_name is used only in messages and origins. Throws ConfigError.
Config parse_config(std::string_view text, std::string_view file_name);

// Reads and parses the file at path. An unreadable file throws "path: cannot read: <strerror>".
Config load_config(const std::string& path);

}  // namespace taid::daemon
