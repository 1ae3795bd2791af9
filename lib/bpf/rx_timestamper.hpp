// Loads, attaches and owns the eBPF RX timestamp program (bpf/rx_timestamp.bpf.c); takes stamps.
//
// RxTimestamper is RAII and move-only: attach() runs open skeleton → set rodata (ntp_port) →
// load → attach; take() looks a packet's stamp up and deletes it; the destructor removes exactly
// what attach() added and destroys the skeleton. Stamps are CLOCK_TAI, taken by the program
// before it parses the packet (tc: at ingress, before the IP stack; XDP native: in the driver;
// XDP generic: just before tc).
//
// Ownership: several taids may stamp on one interface at once (each its own program and map), and
// a crashed one's leftovers must go without touching a live one's. Per attach mode:
//   tc_clsact   a classic tc filter outlives its process. Ours sits at priority kTcPriority with a
//               handle that names its owner (TcOwner: pid, instance, clsact ownership), so taids
//               coexist at one priority. attach() removes taid filters (by program name) whose
//               owner is dead: that pid holds no fd of the filter's program (/proc/PID/fdinfo
//               prog_id), which also tells a reused pid from the owner. A filter we cannot prove
//               dead stays. Someone else's filter at our exact place is an error (EBUSY).
//               Limit: taids that share a network namespace must share the pid namespace, or
//               each sees the other's pid as dead (use tcx there).
//               The clsact qdisc (the kernel keeps no owner for it): ours if attach() created it,
//               or if a taid filter on it (live or dead) carries the owner bit, so the ownership
//               passes from taid to taid and the last one out deletes it. On destruction an own
//               qdisc is deleted only when no tc filter of anyone remains on its ingress or egress
//               hook (an RTM_GETTFILTER dump of both): we never flush other people's filters. A
//               qdisc someone else created is left alone. Not covered: a crash between creating
//               the qdisc and attaching the filter, or between removing the filter and deleting
//               the qdisc, leaves an empty clsact qdisc; two taids starting in the same instant
//               may both miss the owner bit; a filter added in the instant between the dump and
//               the delete would go with the qdisc (netlink has no "delete if empty").
//   tcx         a bpf_link held only by our fd: the kernel detaches it when the process dies, and
//               tcx runs several programs side by side.
//   xdp_*       a bpf_link too (BPF_XDP, kernel >= 5.9): no leftover after a crash, and a live one
//               cannot be replaced. A device has one XDP program per mode, so a second taid gets
//               EBUSY here; attach_order() then falls back to tc (tcx or clsact). An XDP program
//               of ours attached without a link (an older taid) is replaced; anyone else's, or one
//               held by a link, is EBUSY.
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
#include <vector>

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

// Our tc filters' priority on the clsact ingress hook ("7a1d" ~ "taid"), shared by every taid:
// ahead of the kernel's automatic priorities (49152 and down) so the stamp is taken before other
// auto-placed filters run; our program returns TC_ACT_UNSPEC, so everything after it (other
// taids' filters at the same priority included) still runs.
inline constexpr uint32_t kTcPriority = 0x7a1d;

// Who owns a tc filter, encoded in its handle: pid << 10 | owns_clsact << 9 | instance. The pid
// fits: Linux pids stay below 2^22 (PID_MAX_LIMIT). instance tells apart the filters of one
// process (one per server port on an interface). owns_clsact: the owner may delete the clsact
// qdisc once it is empty, and whoever attaches next to this filter inherits that.
struct TcOwner {
  int32_t pid = 0;
  bool owns_clsact = false;
  uint32_t instance = 0;  // 0..511
};
uint32_t tc_handle(const TcOwner& owner);
TcOwner tc_owner(uint32_t handle);

// Whether this kernel has tcx (Linux >= 6.6), asked of the kernel itself: a tcx link request for a
// trivial program on ifindex 0, which a tcx kernel refuses with ENODEV (no such device) and an
// older one with EINVAL (unknown attach type). Errors (EPERM without CAP_BPF) are returned.
Result<bool> tcx_supported();

// The attach modes to try, in order, for `bpfattach auto`: tcx where tcx_supported(), tc clsact
// everywhere (also when the probe fails: clsact's own error then says why).
std::vector<AttachMode> auto_attach_order();
// For an explicit `bpfattach MODE`: MODE alone, except XDP, which falls back to auto's order: a
// device has one XDP program per mode, and another live taid may hold it.
std::vector<AttachMode> attach_order(AttachMode requested);

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

// What a program stamps: a client's replies (from the server port to another), or a server's
// requests (to its port, from any).
enum class Stamped { replies, requests };

class RxTimestamper {
 public:
  // Attaches to the interface `ifindex` of the calling thread's network namespace. Stamps UDP
  // replies: packets from `ntp_port` to another port (or, for Stamped::requests, packets to it). Errors carry errno: EPERM without
  // CAP_BPF/CAP_NET_ADMIN, EBUSY if a live program holds our place (XDP), EOPNOTSUPP for tcx on a
  // kernel without it, ENODEV, ...
  static Result<RxTimestamper> attach(int ifindex, AttachMode mode, uint16_t ntp_port = 123,
                                      Stamped what = Stamped::replies);

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
  uint32_t link_id() const;    // tcx and XDP; 0 for tc clsact
  uint32_t tc_handle() const;  // tc clsact only; 0 otherwise

 private:
  struct State;
  explicit RxTimestamper(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;  // null only when moved from
};

}  // namespace taid::bpf
