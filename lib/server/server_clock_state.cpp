// ServerClockState from the core's Tracking: synchronized, chrony's local reference, or neither.
#include "server/server_clock_state.hpp"

#include <algorithm>

namespace taid::server {

ServerClockState server_clock_state(const timekeeping::Tracking& tracking,
                                    const ServerClockInputs& inputs) {
  ServerClockState state;
  state.precision_log2 = inputs.precision_log2;

  Duration bound = inputs.error_bound.value_or(tracking.error_bound);
  // -x: the kernel inserts or deletes no second, so after the leap it is off by one.
  if (inputs.observe_only && tracking.leap_armed != 0 && tracking.leap_at &&
      inputs.now >= *tracking.leap_at) {
    bound += Duration::from_s(1);
  }
  const Duration half_delay = tracking.root_delay / 2;
  const Duration dispersion = std::max(bound - half_delay, Duration{});
  const bool too_far = inputs.local_stratum && half_delay + dispersion > inputs.local_distance;

  if (tracking.synchronized && !too_far) {
    state.leap = tracking.leap_armed > 0   ? ntp::Leap::add_second
                 : tracking.leap_armed < 0 ? ntp::Leap::delete_second
                                           : ntp::Leap::none;
    state.stratum = tracking.stratum;
    state.reference_id = tracking.reference_id;
    state.root_delay = NtpShort::from_duration(tracking.root_delay);
    // NtpShort rounds to 2^-16 s: round the dispersion up so delay/2 + dispersion still covers
    // the bound on the wire.
    const NtpShort disp = NtpShort::from_duration(dispersion);
    state.root_dispersion = disp.to_duration() < dispersion && disp.raw() != UINT32_MAX
                                ? NtpShort::from_raw(disp.raw() + 1)
                                : disp;
    if (tracking.last_update) state.reference_time = NtpTimestamp::from_utc(*tracking.last_update);
    return state;
  }
  if (inputs.local_stratum) {
    state.leap = ntp::Leap::none;
    state.stratum = *inputs.local_stratum;
    state.reference_id = kLocalReferenceId;
    state.reference_time = NtpTimestamp::from_utc(inputs.now - Duration::from_s(1));
    return state;  // root delay and dispersion 0
  }
  state.leap = ntp::Leap::unsynchronized;
  state.stratum = 16;
  return state;
}

}  // namespace taid::server
