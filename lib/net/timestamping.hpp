// Kernel RX and TX timestamps (SO_TIMESTAMPING): socket set-up, control-message parsing, and
// the clock precision they carry.
//
// A software RX stamp is taken by the kernel when the packet enters the stack, before the
// scheduler gets to our process; a user-space stamp taken after recvmsg() returns adds that
// latency (50–116 µs measured on the reference machines, PEERS.md). Every stamp says which it is.
//
// TX stamps come back asynchronously on the socket's error queue (recvmsg with MSG_ERRQUEUE):
// one message per stamped datagram holding an SCM_TIMESTAMPING cmsg and a sock_extended_err
// (level SOL_IP/IP_RECVERR or SOL_IPV6/IPV6_RECVERR) whose ee_info says which point of the path
// was stamped (SCM_TSTAMP_SND, SCM_TSTAMP_SCHED) and whose ee_data is the OPT_ID counter: the
// index of the datagram on that socket, counted from 0.
//
// The parsers are pure functions of a msghdr, so tests feed them control buffers built with the
// CMSG_* macros exactly as the kernel lays them out.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <optional>

#include "core/result.hpp"
#include "core/time.hpp"
#include "ntp/exchange.hpp"

namespace taid::net {

// What one socket asks the kernel to stamp.
struct TimestampingOptions {
  // Software TX stamps on the error queue. We ask for SCM_TSTAMP_SND only: it is taken in the
  // driver's transmit routine (skb_tx_timestamp), the software point closest to the wire. SCHED
  // is taken before the qdisc, so it would leave queueing delay inside the measured round trip.
  bool tx_software = false;
  // Raw hardware RX (and, with tx_software, TX) stamps as well. They arrive only once the
  // interface itself was switched on (enable_hw_timestamping); software stamps keep coming.
  bool hardware = false;
};

// The SOF_TIMESTAMPING_* bits for `options`. Always software RX; TX requests add OPT_ID (so each
// stamp names its datagram) and OPT_TSONLY (the stamp without a copy of the packet, which also
// needs no privilege under net.core.tstamp_allow_data=0).
uint32_t timestamping_flags(TimestampingOptions options);

// Sets SO_TIMESTAMPING on `fd` to timestamping_flags(options).
Result<void> enable_timestamping(int fd, TimestampingOptions options);

// Asks the kernel for software RX timestamps on `fd` (SOF_TIMESTAMPING_RX_SOFTWARE|SOFTWARE).
Result<void> enable_rx_timestamping(int fd);

// Keeps the kernel stamping received packets for the life of the process, and checks that it
// does. The kernel stamps packets only while some socket wants RX stamps (the netstamp_needed
// static key), and switches that on in deferred work after setsockopt() returns; so a fresh
// socket per request, alone in the system, loses the stamp of a reply that arrives within
// ~100 µs (measured over loopback: 46 of 50 replies unstamped). The first call opens one UDP
// socket on 127.0.0.1 that asks for RX stamps and is never closed, then sends itself datagrams
// until one comes back stamped (bounded: about 200 ms). Later calls return the first result.
// UdpRequest::open() calls it; the daemon may call it at start-up to log the result early.
Result<void> hold_rx_timestamping_on();

// The sock_extended_err of an error-queue message, as the kernel filled it.
struct ExtendedError {
  uint32_t errno_value = 0;  // ENOMSG for a timestamp
  uint8_t origin = 0;        // SO_EE_ORIGIN_*; SO_EE_ORIGIN_TIMESTAMPING for a timestamp
  uint32_t info = 0;         // for a timestamp: SCM_TSTAMP_SND, SCM_TSTAMP_SCHED, ...
  uint32_t data = 0;         // for a timestamp: the OPT_ID counter of the stamped datagram
};

// Everything we use from one message's control data.
struct ControlData {
  std::optional<UtcTime> software;  // scm_timestamping ts[0] (CLOCK_REALTIME)
  // scm_timestamping ts[2], the raw hardware stamp, in ns on the NIC's PTP hardware clock. Its
  // scale is whatever that clock keeps (often TAI, sometimes free-running), hence not a UtcTime.
  std::optional<int64_t> hardware_raw_ns;
  std::optional<ExtendedError> error;  // error-queue messages only
  // The control data was cut short: the kernel set MSG_CTRUNC (the buffer was too small), or a
  // cmsg we read is shorter than its type or runs past msg_controllen. What it held is missing.
  bool truncated = false;
};

// Parses the SCM_TIMESTAMPING and IP_RECVERR/IPV6_RECVERR cmsgs of `message`; other cmsgs are
// skipped. Never reads outside msg_control[0, msg_controllen).
ControlData parse_control_data(const msghdr& message);

// A TX stamp read from the error queue.
// With hardware stamping on, the kernel sends the software and the hardware stamp of one
// datagram in two separate messages, so usually only one of the two is set.
struct TxStamp {
  std::optional<UtcTime> software;         // ts[0]
  std::optional<int64_t> hardware_raw_ns;  // ts[2], see ControlData
  uint32_t kind = 0;                       // SCM_TSTAMP_SND or SCM_TSTAMP_SCHED
  uint32_t id = 0;                         // OPT_ID counter: which datagram (0 = first sent)
};

// The TX stamp in an error-queue message: an extended error of origin TIMESTAMPING next to an
// SCM_TIMESTAMPING holding at least one stamp. Anything else (an ICMP error, a zero-copy
// completion, an extended error without its SCM_TIMESTAMPING) gives nullopt.
std::optional<TxStamp> tx_timestamp(const ControlData& control);

// log2 of the system clock's read precision in seconds, measured like ntpd/chrony: the smallest
// step between successive clock_gettime(CLOCK_REALTIME) readings.
int8_t measure_clock_precision_log2();

// Precision given to user-space receive stamps: the scheduling latency between the kernel's
// receipt and recvmsg() returning dominates the clock's own resolution. 2^-14 s ≈ 61 µs, the
// middle of the latency measured on the reference machines.
inline constexpr int8_t kUserStampPrecisionLog2 = -14;

}  // namespace taid::net
