// NullClockDriver: observe-only access to the system clock (chrony's -x); writes are suppressed.
//
// Reads are real (CLOCK_REALTIME and adjtimex with modes = 0), so the daemon measures and serves
// time as usual; every write is counted, logged at debug level and reported as a success
// without reaching the kernel. set_frequency_ppb() returns the kernel's unchanged frequency,
// because that is what was actually applied.
#pragma once

#include <atomic>
#include <cstdint>
#include <string_view>

#include "clock/clock_driver.hpp"

namespace taid::clock {

class NullClockDriver final : public ClockDriver {
 public:
  std::string_view name() const override { return "null"; }
  UtcTime now() override;
  Result<double> frequency_ppb() override;
  // What the kernel accepts through ADJ_FREQUENCY alone (500 ppm): nothing is written anyway.
  double max_frequency_ppb() const override { return 500e3; }
  Result<double> set_frequency_ppb(double ppb) override;
  Result<void> step(Duration offset) override;
  Result<void> step_with_tai_offset(Duration offset, int32_t tai_offset_s) override;
  Result<void> set_leap(LeapState leap) override;
  Result<void> set_sync_status(const SyncStatus& status) override;
  Result<void> set_tai_offset(int32_t seconds) override;
  Result<KernelTimeState> state() override;

  // Writes that were asked for and not carried out, since construction.
  uint64_t suppressed_writes() const { return suppressed_writes_.load(std::memory_order_relaxed); }

 private:
  void suppress(std::string_view what);

  // Atomic because the control socket may read the count while the engine writes.
  std::atomic<uint64_t> suppressed_writes_{0};
};

}  // namespace taid::clock
