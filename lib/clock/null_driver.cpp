// NullClockDriver: reads the system clock, counts and drops every write (observe-only mode).
#include "clock/null_driver.hpp"

#include <string_view>

#include "core/log.hpp"

namespace taid::clock {
namespace {

const char* leap_name(LeapState leap) {
  switch (leap) {
    case LeapState::none:
      return "none";
    case LeapState::insert:
      return "insert";
    case LeapState::delete_:
      return "delete";
  }
  return "?";
}

}  // namespace

void NullClockDriver::suppress(std::string_view what) {
  suppressed_writes_.fetch_add(1, std::memory_order_relaxed);
  // Debug only: in observe mode these arrive every poll and are expected, not news.
  log_debug(strcat("null clock: not applied: ", what));
}

UtcTime NullClockDriver::now() { return realtime_now(); }

Result<double> NullClockDriver::frequency_ppb() {
  auto s = read_kernel_time_state();
  if (!s) return s.error();
  return s->frequency_ppb;
}

Result<double> NullClockDriver::set_frequency_ppb(double ppb) {
  suppress(strcat("frequency ", ppb, " ppb"));
  // Nothing was applied, so the honest answer is the frequency the kernel still runs at.
  return frequency_ppb();
}

Result<void> NullClockDriver::step(Duration offset) {
  suppress(strcat("step ", offset.to_string()));
  return {};
}

Result<void> NullClockDriver::step_with_tai_offset(Duration offset, int32_t tai_offset_s) {
  suppress(strcat("step ", offset.to_string(), " with TAI offset ", tai_offset_s, " s"));
  return {};
}

Result<void> NullClockDriver::set_leap(LeapState leap) {
  suppress(strcat("leap ", leap_name(leap)));
  return {};
}

Result<void> NullClockDriver::set_sync_status(const SyncStatus& status) {
  suppress(strcat("sync status ", status.synchronized ? "synchronized" : "unsynchronized",
                  " maxerror ", status.max_error.to_string(), " esterror ",
                  status.est_error.to_string()));
  return {};
}

Result<void> NullClockDriver::set_tai_offset(int32_t seconds) {
  suppress(strcat("TAI offset ", seconds, " s"));
  return {};
}

Result<KernelTimeState> NullClockDriver::state() { return read_kernel_time_state(); }

}  // namespace taid::clock
