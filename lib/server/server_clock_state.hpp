// What the server says about its clock (the reply header's fields), from the timekeeping core.
//
// A pure function of the core's Tracking, after chrony's REF_GetReferenceParams:
//  - synchronized: leap from the armed leap (+1 add_second, -1 delete_second, else none),
//    stratum and reference id from tracking (the system peer's stratum + 1 and its refid), root
//    delay from tracking, reference time = the last update, and root dispersion chosen so that
//    root delay / 2 + root dispersion = the core's error bound now (Timekeeper::error_bound_at:
//    the measured offset is in it, so under -x, serving the unsteered kernel clock, a client is
//    never told more than taid knows). Under -x the kernel does not carry a leap out either: from
//    the leap on, the served clock is a second off UTC until the next update measures it, so the
//    bound grows by that second.
//  - synchronized but the root distance (delay / 2 + dispersion) above `local_distance`, or not
//    synchronized, with `local stratum N`: chrony's local reference: leap none, stratum N, refid
//    0x7F7F0101 ("127.127.1.1", chrony's LOCAL), root delay and dispersion 0, reference time =
//    now - 1 s (chrony: so a client's check that the transmit time is not before the reference
//    time holds even if reading the clock goes slightly wrong).
//  - neither: leap 3 (unsynchronized), stratum 16, refid 0, root delay, dispersion and reference
//    time 0. (chrony sends root delay and dispersion 1 s there; clients ignore them.)
#pragma once

#include <cstdint>
#include <optional>

#include "core/time.hpp"
#include "server/responder.hpp"
#include "timekeeping/timekeeper.hpp"

namespace taid::server {

inline constexpr uint32_t kLocalReferenceId = 0x7F7F0101;

struct ServerClockInputs {
  UtcTime now;  // when the state is taken (the local reference's time, the -x leap check)
  // Timekeeper::error_bound_at(now); nullopt: tracking.error_bound (the bound at the last update).
  std::optional<Duration> error_bound;
  int8_t precision_log2 = -20;                    // of the stamps the replies carry
  std::optional<uint8_t> local_stratum;           // chrony's `local stratum N`
  Duration local_distance = Duration::from_s(1);  // chrony's `local distance` (default 1 s)
  bool observe_only = false;                      // -x: the kernel clock is not steered
};

ServerClockState server_clock_state(const timekeeping::Tracking& tracking,
                                    const ServerClockInputs& inputs);

}  // namespace taid::server
