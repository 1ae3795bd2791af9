// The daemon's configuration: a chrony.conf-syntax file parsed once into a Config value.
//
// Directives (chrony's names and meanings; names and options match case-insensitively as in
// chrony):
//   server NAME [iburst] [xleave] [minpoll N] [maxpoll N] [port N] [prefer] [noselect] [trust]
//          [require]
//   pool NAME (server's options) [maxsources N]
//   bindcmdaddress PATH   control socket, an absolute path (at most 107 bytes)
//   driftfile PATH        an absolute path
//   hwtimestamp IFACE     hardware timestamping on IFACE (chrony's directive, without its
//                         options); one line per interface, "*" for every interface
//   logdir PATH           where log files go; log measurements   one CSV line per sample
// Source selection (lib/selection), chrony's defaults when absent:
//   minsources N          integer >= 1 (1)
//   maxdistance SECONDS   > 0 (3)           maxjitter SECONDS   > 0 (1)
//   combinelimit LIMIT    >= 0 (3; 0: only the system peer steers the clock)
// The clock (lib/servo, lib/timekeeping); defaults are the structs' (servo.hpp, timekeeper.hpp):
//   makestep THRESHOLD LIMIT        threshold >= 0 s; limit an integer, negative: at any update
//   maxslewrate PPM                 0 < PPM <= 100000 (what Linux can slew)
//   maxchange OFFSET START IGNORE   offset > 0 s, start an integer >= 0, ignore an integer
//                                   (negative: ignore every large offset, never stop)
//   maxdrift PPM                    0 < PPM <= 500000 (chrony's default, i.e. no limit)
//   corrtimeratio RATIO             > 0
//   maxclockerror PPM               > 0
// and three of ours:
//   timestamping auto|hardware|bpf|kernel|user   how packets are stamped (default auto)
//   bpfattach auto|tc|tcx|xdp-generic|xdp-native where the eBPF RX program attaches
//   servo estimate|pi     the servo strategy (servo.hpp; default estimate, chrony's way)
// Leap seconds and TAI (lib/timekeeping/leap_schedule.hpp), chrony's directives:
//   leapseclist PATH      the leap-seconds.list to read (absolute; default the tzdata file
//                         /usr/share/zoneinfo/leap-seconds.list)
//   leapsectz NAME        instead, the leap seconds of a TZif zone such as right/UTC
//                         (/usr/share/zoneinfo/NAME); with leapseclist, an error
//   leapsecmode system|step|slew|ignore   how a leap second is carried out (default system)
// Local time services (ours):
//   clockrecord PATH      publish the clock's error bound as a shared-memory record there
//                         (absolute; readers use include/taid/taid_clock.h; default: none)
//   signsocket PATH       the timestamp-signing socket (Unix stream; default: none)
//   signkey PATH          its Ed25519 key, made on first start, mode 0600
//                         (default /var/lib/taid/sign.key; the public half beside it, .pub)
//   signserials PATH      its serial store (default /var/lib/taid/sign.serial)
//   maxsignbound SECONDS  refuse to sign while the error bound is larger (> 0; default 0.1)
//   signallow UID...      the callers allowed (numeric uids or user names; repeatable;
//                         default: root and taid's own user)
//   tsaport PORT          RFC 3161 time-stamping over HTTP on this TCP port (1..65535; default
//                         none); tsabind ADDRESS (IPv4/IPv6 literal, default 127.0.0.1)
//   tsakey PATH, tsacert PATH   its key and certificate (PEM; default /var/lib/taid/tsa.key and
//                         tsa.pem, a self-signed pair made on first start when both are missing)
//   tsaserials PATH       its serial store (default /var/lib/taid/tsa.serial)
//   tsapolicy OID         the policy its replies name (dotted; default taid's, under 2.25)
// The NTP server (daemon/ntp_server.hpp, lib/server), chrony's directives:
//   allow [all] [SUBNET], deny [all] [SUBNET]   who may ask (chrony's rules: the most specific
//                         subnet wins; `all` also overrides the more specific rules before it).
//                         The server runs when at least one allow line is written.
//   port N                the UDP port it serves (0..65535; default 123; 0: no server)
//   bindaddress ADDRESS   an IPv4 or IPv6 literal to serve on; one of each family (default:
//                         0.0.0.0 and ::)
//   local [stratum N] [distance D]   serve the local clock as stratum N (1..15, default 10) while
//                         unsynchronized, or synchronized with a root distance above D (> 0 s,
//                         default 1); without it an unsynchronized taid answers LI=3, stratum 16
//   ratelimit [interval I] [burst B] [leak L] [kod K]   per-client rate limit (lib/server/
//                         rate_limit.hpp; chrony's ranges and defaults, 3 8 2 0)
//   clientloglimit N      bytes for the rate limiter's client table (chrony's name; default
//                         524288), a fixed table: a flood of spoofed addresses cannot grow it
// and two of ours:
//   serverworkers N       worker threads, each with its own SO_REUSEPORT socket (1..64;
//                         default: one per online CPU)
//   xdpserver IFACE [native|generic]   answer plain client requests in the kernel on IFACE with
//                         an XDP program (repeatable, one line per interface). Default: native,
//                         generic where the driver has no XDP. On a veth, native XDP_TX reaches
//                         the peer only when the peer runs an XDP program: say generic there.
// minpoll/maxpoll are log2 seconds in -6..17 (below 4, i.e. 16 s, only for links one owns, as
// in chrony), port 1..65535, maxsources 1..16. Numbers are decimal ("0.5", "1e-3"; no sign "+",
// no hex, no "inf"/"nan"); seconds at most 10^9 (they become int64 nanoseconds). chrony checks
// none of the ranges above but minsources': it takes any number its sscanf reads. A line whose
// first non-blank character is # ! ; or % is a comment (as in chrony, not after other text). A
// config with no server or pool is valid: the daemon then only serves its control socket.
//
// Where chrony quietly repairs, we refuse: an unknown option, a repeated option, any repeated
// directive but server/pool/hwtimestamp/log, the same hwtimestamp interface twice, or minpoll >
// maxpoll when both are written are errors. When only one of minpoll/maxpoll is written and it
// crosses the other's default, the default follows it (chrony does the same), so
// "server x minpoll 12" means minpoll 12, maxpoll 12. "timestamping hardware" without an
// hwtimestamp line is an error: it would name no interface to stamp on. noselect with prefer,
// trust or require on one line is an error (a noselect source is never selectable, so a
// "require" on it could block every update), and so is a minsources above the sources the file
// can ever give (a server each, maxsources per pool, noselect ones not counted).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "net/stamp_choice.hpp"
#include "server/access.hpp"
#include "server/rate_limit.hpp"
#include "selection/selection.hpp"
#include "timekeeping/timekeeper.hpp"

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
  selection::Options options;            // prefer, noselect, trust, require
  std::string origin;                    // "file:line", for messages about this source
};

// One xdpserver line.
struct XdpServerDirective {
  enum class Mode { native_first, native, generic };
  std::string interface;
  Mode mode = Mode::native_first;
  friend bool operator==(const XdpServerDirective&, const XdpServerDirective&) = default;
};

// The NTP server's settings.
struct ServerConfig {
  server::AccessList access;
  bool any_allow = false;  // an allow line was written: the server runs (unless port is 0)
  uint16_t port = 123;
  std::vector<std::string> bind_addresses;  // at most one IPv4 and one IPv6 literal
  std::optional<uint8_t> local_stratum;
  Duration local_distance = Duration::from_s(1);
  std::optional<server::RateLimitSettings> rate_limit;
  std::size_t client_log_bytes = 524288;
  int workers = 0;  // 0: one per online CPU
  std::vector<XdpServerDirective> xdp_interfaces;
  bool enabled() const { return any_allow && port != 0; }
};

struct Config {
  std::vector<SourceDirective> sources;  // in file order
  std::string bindcmdaddress = "/run/taid/taid.sock";
  std::string driftfile;  // empty: no drift file
  // How often the drift file is written while running (chrony: hourly). Not a directive; a test
  // shortens it to see the periodic write happen.
  std::chrono::seconds drift_write_interval{3600};
  TimestampingMode timestamping = TimestampingMode::auto_;
  // hwtimestamp interfaces in file order, each once; "*" means every interface.
  std::vector<std::string> hwtimestamp_interfaces;
  BpfAttach bpf_attach = BpfAttach::auto_;
  std::string logdir;             // empty: no log files
  bool log_measurements = false;  // `log measurements`: one CSV line per sample in logdir
  // The leap table: a leap-seconds.list, or a TZif zone's leap records when leapsectz is set.
  std::string leapseclist = "/usr/share/zoneinfo/leap-seconds.list";
  std::string leapsectz;  // the zone's name (e.g. right/UTC); empty: leapseclist is used
  std::string clockrecord;  // the shared-memory clock record's path; empty: none
  // The signing socket (daemon/sign_server.hpp); empty signsocket: none.
  std::string signsocket;
  std::string signkey = "/var/lib/taid/sign.key";
  std::string signserials = "/var/lib/taid/sign.serial";
  Duration max_sign_bound = Duration::from_ms(100);
  std::vector<uint32_t> sign_allowed_uids;  // empty: root and taid's own user
  // RFC 3161 over HTTP (daemon/tsa_server.hpp); tsaport 0: none.
  uint16_t tsaport = 0;
  std::string tsabind = "127.0.0.1";
  std::string tsakey = "/var/lib/taid/tsa.key";
  std::string tsacert = "/var/lib/taid/tsa.pem";
  std::string tsaserials = "/var/lib/taid/tsa.serial";
  std::string tsapolicy;  // empty: TsaServer's default
  ServerConfig server;
  // Selection, servo and clock settings; the structs' defaults where the file says nothing.
  // initial_frequency_ppb is left empty: the drift file's content is read at start, not here.
  timekeeping::Settings timekeeping;
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
