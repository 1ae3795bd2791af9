// Loads, attaches and owns the eBPF RX timestamp program (bpf/rx_timestamp.bpf.c); takes stamps.
//
// RxTimestamper is RAII and move-only: attach() runs open skeleton → set rodata (ntp_port) →
// load → attach; take() looks a packet's stamp up and deletes it; the destructor removes exactly
// what attach() added and destroys the skeleton. Stamps are CLOCK_TAI, taken by the program
// before it parses the packet (tc: at ingress, before the IP stack; XDP native: in the driver;
// XDP generic: just before tc).
//
// Crash/restart cleanliness, per attach mode:
//   tc_clsact   a classic tc filter outlives its process, so ours always sits at our own handle
//               and priority (kTcHandle, kTcPriority); a restart finds a leftover filter of ours
//               there (by program name) and replaces it atomically. Someone else's filter at that
//               place is an error (EBUSY), never replaced.
//               The clsact qdisc: ours if attach() created it, or if it held a leftover filter of
//               ours (a crashed run used it and can no longer say whether it made it; the kernel
//               keeps no owner for a qdisc). On destruction an own qdisc is deleted only when no
//               tc filter of anyone remains on its ingress or egress hook (an RTM_GETTFILTER dump
//               of both): we never flush other people's filters, and after crash + restart +
//               clean exit nothing of ours is left. A qdisc someone else created is left alone
//               unless a crashed run of ours was using it and it ends up empty. Not covered: a
//               crash between creating the qdisc and attaching the filter, or between removing
//               the filter and deleting the qdisc, leaves an empty clsact qdisc; and a filter
//               added in the instant between the dump and the delete would go with the qdisc
//               (netlink has no "delete if empty").
//   tcx         a bpf_link held only by our fd: the kernel detaches it when the process dies.
//   xdp_*       an XDP program outlives its process; a leftover of ours (by name) is replaced,
//               anyone else's is an error (EBUSY). Detach names our program, so it never
//               removes a program someone attached after us.
// The network namespace of attach() is remembered: the destructor detaches there even when the
// thread has since moved to another namespace (it holds that namespace open until then).
#pragma once

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string_view>

#include "core/result.hpp"
#include "core/time.hpp"
#include "rx_timestamp.h"

namespace taid::bpf {

enum class AttachMode {
  tc_clsact,    // tc ingress filter on a clsact qdisc (bpf_tc_hook_create + bpf_tc_attach)
  tcx,          // tcx ingress link (kernel ≥ 6.6), raw bpf_link_create(BPF_TCX_INGRESS)
  xdp_generic,  // XDP in generic (skb) mode: works on any device, after the skb is built
  xdp_native,   // XDP in the driver (veth, most NICs): the earliest point a stamp can be taken
};

std::string_view to_string(AttachMode mode);

// Our tc filter's place on the clsact ingress hook. Priority: ahead of the kernel's automatic
// priorities (49152 and down) so the stamp is taken before other auto-placed filters run; our
// program returns TC_ACT_UNSPEC, so everything after it still runs. Handle: a fixed value ("7a1d"
// ~ "taid") by which a restart recognises the filter a crashed run left behind.
inline constexpr uint32_t kTcHandle = 0x7a1d;
inline constexpr uint32_t kTcPriority = 0x7a1d;

// Program names as the kernel shows them (`bpftool prog`), 15 characters at most.
inline constexpr std::string_view kTcProgramName = "taid_rx_tc";
inline constexpr std::string_view kXdpProgramName = "taid_rx_xdp";

// The key's address form of a socket address: IPv6 as is, IPv4 as v4-mapped ::ffff:a.b.c.d
// (which is also how a dual-stack socket reports an IPv4 peer). nullopt for other families.
std::optional<std::array<uint8_t, 16>> to_key_address(const sockaddr_storage& address);

// The key of a received packet: `remote` is its source (recvfrom's address), `local_port` the
// port it was sent to (ours), `transmit` its NTP transmit timestamp.
std::optional<rx_ts_key> make_key(const sockaddr_storage& remote, uint16_t local_port,
                                  NtpTimestamp transmit);
// Same, reading the transmit timestamp straight from the received NTP packet (bytes 40..47);
// nullopt if the packet is shorter than an NTP header (the program does not stamp those).
std::optional<rx_ts_key> make_key(const sockaddr_storage& remote, uint16_t local_port,
                                  std::span<const uint8_t> ntp_packet);

class RxTimestamper {
 public:
  // Attaches to the interface `ifindex` of the calling thread's network namespace. Stamps UDP
  // packets whose source or destination port is `ntp_port`. Errors carry errno: EPERM without
  // CAP_BPF/CAP_NET_ADMIN, EBUSY if someone else's program holds our place, ENODEV, ...
  static Result<RxTimestamper> attach(int ifindex, AttachMode mode, uint16_t ntp_port = 123);

  RxTimestamper(RxTimestamper&&) noexcept;
  RxTimestamper& operator=(RxTimestamper&&) noexcept;
  RxTimestamper(const RxTimestamper&) = delete;
  RxTimestamper& operator=(const RxTimestamper&) = delete;
  ~RxTimestamper();

  // The CLOCK_TAI arrival stamp of the packet with this key, removed from the map (each stamp is
  // taken once). nullopt if there is none: not seen (yet), evicted, or not an NTP packet to us.
  std::optional<TaiTime> take(const rx_ts_key& key);

  AttachMode mode() const;
  int ifindex() const;
  // Kernel object ids, for diagnostics and for tests that check nothing is left behind.
  uint32_t program_id() const;
  uint32_t map_id() const;
  uint32_t link_id() const;  // tcx only; 0 otherwise

 private:
  struct State;
  explicit RxTimestamper(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;  // null only when moved from
};

}  // namespace taid::bpf
