// The NTP server's sockets: UDP workers that feed lib/server's Responder and send its replies.
//
// One worker thread per core (SO_REUSEPORT: the kernel spreads clients over the workers' sockets
// by their address and port), each with one socket per bound address family. A worker waits in
// poll(), takes up to 64 datagrams with one recvmmsg(), decides them all under the responder's
// lock, reads T3 once, writes it into the basic replies, and sends them with one sendmmsg(). At low
// rates a batch is one datagram, so T3 is read right before its own send.
//
// Stamps: every path's stamp of a request is collected — the kernel's software RX stamp
// (SO_TIMESTAMPING), the eBPF program's (taken at tc ingress of the interface the request came
// in on, by the lookup the engine gives), and a user-space read right after recvmmsg — and T2 is
// picked by the same StampChooser as the client's (lib/net/stamp_choice: fixed, or `auto` by
// measured lateness over the first requests answered). A reply to a request whose origin is set
// (an interleaving client's) asks for the kernel's TX stamp (SCM_TSTAMP_SND) with a
// SCM_TIMESTAMPING cmsg; it comes back on the error queue with a copy of the packet (no
// OPT_TSONLY): the reply's own receive field, in its last 48 bytes, says which
// reply it was, so no counter can slip out of step after a failed send. The responder keeps it
// for the next interleaved request (RFC 9769).
//
// Replies leave from the address the request came to (IP_PKTINFO / IPV6_PKTINFO), so a server
// bound to the wildcard on a multi-homed host answers from the address its clients asked.
#pragma once

#include <array>
#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "core/fd.hpp"
#include "core/result.hpp"
#include "core/time.hpp"
#include "net/stamp_choice.hpp"
#include "server/responder.hpp"

namespace taid::daemon {

struct NtpServerSettings {
  // IPv4/IPv6 literals (`bindaddress`); empty: 0.0.0.0 and :: (IPv6 only where the host has it).
  std::vector<std::string> bind_addresses;
  uint16_t port = 123;
  int workers = 0;  // 0: one per online CPU
  net::StampPolicy stamp_policy = net::StampPolicy::auto_;
  int8_t kernel_precision_log2 = -20;  // of kernel and eBPF stamps
  server::ResponderSettings responder;
};

// A kernel stamp of a request taken before the socket layer (the eBPF program's, CLOCK_TAI), if
// any: called by the workers with the request's source, the port it came to, the interface it
// came in on and its bytes. The workers turn it into UTC with the kernel's TAI offset, read twice
// per batch (before and after the lookups), not per request. Once `auto` has settled on another
// path the lookups stop: each is a system call, and the stamps nobody takes age out of the LRU map.
using RequestStampLookup = std::function<std::optional<TaiTime>(
    const server::ClientAddress& client, uint16_t local_port, int ifindex,
    std::span<const uint8_t> bytes)>;

// Whether a limiter in front of the server (the XDP fast path on interface `ifindex`) holds this
// client over its rate already; called for each request that came in on such an interface.
using OverLimitLookup = std::function<bool(const server::ClientAddress& client, int ifindex,
                                           int64_t monotonic_ns)>;

struct NtpServerStats {
  server::ResponderStats responder;
  uint64_t rx_kernel_stamps = 0;  // T2 from SO_TIMESTAMPING
  uint64_t rx_bpf_stamps = 0;     // T2 from the eBPF program
  uint64_t rx_user_stamps = 0;    // T2 read after recvmmsg
  // The chooser's state: the path T2 comes from, whether `auto` has decided, each path's lateness.
  ntp::TimestampSource stamp_path = ntp::TimestampSource::kernel;
  bool stamp_decided = false;
  std::vector<net::PathLateness> stamp_lateness;
  uint64_t tx_stamps = 0;         // kernel TX stamps of replies matched to their reply
  uint64_t send_errors = 0;       // replies the kernel refused (counted, not retried)
  uint64_t receive_errors = 0;
  uint64_t oversized = 0;         // datagrams longer than 1024 bytes: dropped unread
  int workers = 0;
  std::vector<std::string> listening;  // "0.0.0.0:123", "[::]:123"
};

class NtpServer {
 public:
  // Opens every socket and starts the workers; errors name the address ("bind [::]:123: ...").
  static Result<std::unique_ptr<NtpServer>> open(NtpServerSettings settings,
                                                 const server::ServerClockState& clock,
                                                 RequestStampLookup bpf_stamps = {},
                                                 OverLimitLookup over_limit = {});
  ~NtpServer();  // stops and joins the workers
  NtpServer(const NtpServer&) = delete;
  NtpServer& operator=(const NtpServer&) = delete;

  // What the replies say about the clock from now on (the engine, after every clock update).
  void set_clock(const server::ServerClockState& clock);
  NtpServerStats stats() const;

 private:
  struct Socket {
    Fd fd;
    int family = 0;
    uint16_t port = 0;
  };
  struct Worker;
  NtpServer() = default;
  void run(Worker& worker);
  void receive_batch(Worker& worker, Socket& socket);
  void read_tx_stamps(Worker& worker, Socket& socket);

  NtpServerSettings settings_;
  RequestStampLookup bpf_stamps_;
  OverLimitLookup over_limit_;
  mutable std::mutex mutex_;  // the responder, the clock state and the counters below
  std::optional<server::Responder> responder_;
  server::ServerClockState clock_;
  NtpServerStats counters_;
  std::optional<net::StampChooser> chooser_;
  Fd stop_;  // eventfd: readable once the server is being destroyed
  std::vector<std::unique_ptr<Worker>> workers_;
};

}  // namespace taid::daemon
