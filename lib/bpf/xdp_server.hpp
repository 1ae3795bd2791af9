// Loads, attaches and feeds the XDP NTP server fast path (bpf/ntp_server_xdp.bpf.c).
//
// XdpServer is RAII and move-only: attach() runs open skeleton → rodata (port) → load → attach by
// bpf_link (BPF_XDP), so the kernel detaches it when the last fd goes, after a crash too; the
// destructor detaches at once. Until set_clock() gets a valid clock the program answers nothing
// (every request goes up to the daemon's socket, counted clock_unset), and until set_access()
// gets a rule that allows a client, that client goes up too (no_rule). What the program does not
// answer reaches user space unchanged (XDP_PASS), so the daemon's own server (lib/server) stays
// the authority for everything but the plain case; see the program's header comment for which
// requests that is, and why origin must be zero.
//
// Consistency: the clock, the rate limit and the current access trie share one settings element,
// written with BPF_F_LOCK and read by the program under bpf_spin_lock. A plain array update is a
// memcpy into the live element (kernel: copy_map_value), not atomic for a reader on another CPU;
// with the lock a reply never mixes a leap indicator of one update with a TAI offset of another.
// Access rules go into the idle one of two tries, then the slot flips; the old trie is then
// emptied shortest prefix first, so a packet still looking at it finds its old longest match or
// nothing (passed up), never a shorter rule that the full table overrode.
//
// One XDP program per device and mode: the RX timestamper's XDP mode cannot share an interface
// with this (it falls back to tc there).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string_view>

#include "core/result.hpp"
#include "core/time.hpp"
#include "ntp_server_xdp.h"

namespace taid::bpf {

enum class XdpMode {
  native,   // in the driver: T2 before any skb exists; on veth the peer needs NAPI (see tests)
  generic,  // skb mode: any device, later and slower
};
std::string_view to_string(XdpMode mode);

// The program's name as `bpftool prog` shows it.
inline constexpr std::string_view kXdpServerProgramName = "taid_ntp_xdp";

// What replies say about the server's clock, and how CLOCK_TAI maps to UTC. The daemon keeps it
// current; valid = false sends every request up (e.g. around a leap second, when the TAI offset
// changes at an instant the map cannot follow exactly).
struct XdpClock {
  bool valid = false;
  uint8_t leap = 3;  // LI: 0 none, 1 insert, 2 delete, 3 unsynchronized
  uint8_t stratum = 16;
  int8_t precision_log2 = -20;
  uint32_t reference_id = 0;  // as a number (written big-endian)
  NtpShort root_delay;
  NtpShort root_dispersion;
  NtpTimestamp reference_time;
  int32_t tai_offset_s = 0;  // TAI - UTC
};

// One access rule. IPv4 as v4-mapped ::ffff:a.b.c.d with prefix_len = 96 + n. Longest prefix
// wins; an address no rule covers goes up to user space.
struct XdpPrefix {
  std::array<uint8_t, 16> address{};
  uint8_t prefix_len = 0;  // 0..128
  bool allow = false;
};

// chrony's `ratelimit interval I burst B`: on average one answer per 2^I s, B at once.
struct XdpRateLimit {
  int interval_log2 = 3;  // -20..30
  uint32_t burst = 8;     // >= 1
};

struct XdpStats {
  std::array<uint64_t, XDP_NTP_STAT_COUNT> count{};  // indexed by xdp_ntp_stat
  uint64_t operator[](xdp_ntp_stat stat) const { return count[static_cast<std::size_t>(stat)]; }
};
std::string_view to_string(xdp_ntp_stat stat);

class XdpServer {
 public:
  // Attaches to `ifindex` in the calling thread's network namespace, answering on UDP `port`.
  // Errors carry errno: EPERM without CAP_BPF/CAP_NET_ADMIN, EBUSY when an XDP program (ours or
  // anyone's) holds the device, EOPNOTSUPP for native mode on a driver without XDP, ENODEV.
  static Result<XdpServer> attach(int ifindex, XdpMode mode, uint16_t port = 123);

  XdpServer(XdpServer&&) noexcept;
  XdpServer& operator=(XdpServer&&) noexcept;
  XdpServer(const XdpServer&) = delete;
  XdpServer& operator=(const XdpServer&) = delete;
  ~XdpServer();

  // One locked update of the settings element.
  Result<void> set_clock(const XdpClock& clock);
  // Replaces the whole rule set (the daemon converts lib/server's AccessList's
  // longest_prefix_table()). EINVAL for prefix_len > 128, E2BIG beyond XDP_NTP_ACCESS_ENTRIES;
  // on error the previous rules stay in force.
  Result<void> set_access(std::span<const XdpPrefix> rules);
  // nullopt: no limit. A client over its rate is passed up, for the daemon's limiter and KoD.
  Result<void> set_rate_limit(std::optional<XdpRateLimit> limit);
  // Counters summed over CPUs since attach().
  Result<XdpStats> stats() const;
  // The client's rate state: its GCRA theoretical arrival time in CLOCK_MONOTONIC ns (it is over
  // the limit while that lies more than (burst - 1) intervals ahead of now). nullopt: the program
  // never answered it, or the LRU table let it go. For the daemon's limiter, which sees only what
  // was passed up: a client XDP answered at full rate is not a fresh client there.
  std::optional<uint64_t> client_tat_ns(const std::array<uint8_t, 16>& address) const;
  // Whether the program would refuse this client at `now_monotonic_ns` (CLOCK_MONOTONIC), by the
  // program's own test. A request passed up as rate_limited is still over when user space reads
  // it; the daemon should then give it the limiter's treatment (drop, leak, KoD) and not a fresh
  // burst of its own: otherwise a client gets the burst twice, once here and once there. False
  // without a rate limit or without state for the client.
  bool client_over_limit(const std::array<uint8_t, 16>& address, uint64_t now_monotonic_ns) const;

  XdpMode mode() const;
  int ifindex() const;
  uint32_t program_id() const;
  uint32_t link_id() const;

 private:
  struct State;
  explicit XdpServer(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;  // null only when moved from
};

}  // namespace taid::bpf
