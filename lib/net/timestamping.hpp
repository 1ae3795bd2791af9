// Kernel receive timestamps (SO_TIMESTAMPING) and the clock precision they carry.
//
// A software RX stamp is taken by the kernel when the packet enters the stack, before the
// scheduler gets to our process; a user-space stamp taken after recvmsg() returns adds that
// latency (50–116 µs measured on the reference machines, PEERS.md). Every stamp says which it is.
#pragma once

#include <sys/socket.h>

#include <optional>

#include "core/result.hpp"
#include "core/time.hpp"
#include "ntp/exchange.hpp"

namespace taid::net {

// Asks the kernel for software RX timestamps on `fd` (SOF_TIMESTAMPING_RX_SOFTWARE|SOFTWARE).
Result<void> enable_rx_timestamping(int fd);

// The software timestamp in a received message's control data, if the kernel attached one.
std::optional<UtcTime> software_rx_timestamp(const msghdr& message);

// log2 of the system clock's read precision in seconds, measured like ntpd/chrony: the smallest
// step between successive clock_gettime(CLOCK_REALTIME) readings.
int8_t measure_clock_precision_log2();

// Precision given to user-space receive stamps: the scheduling latency between the kernel's
// receipt and recvmsg() returning dominates the clock's own resolution. 2^-14 s ≈ 61 µs, the
// middle of the latency measured on the reference machines.
inline constexpr int8_t kUserStampPrecisionLog2 = -14;

}  // namespace taid::net
