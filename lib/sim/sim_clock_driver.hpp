// SimClockDriver: the ClockDriver of a SimClock, with the system clock's range and resolution,
// the kernel's sync-status bookkeeping and leap second state (set_leap arms the SimClock's
// STA_INS/STA_DEL, set_tai_offset is ADJ_TAI), and "another process" that can step the clock or
// set its frequency behind the daemon's back.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "clock/clock_driver.hpp"
#include "sim/sim_clock.hpp"

namespace taid::sim {

class SimClockDriver final : public clock::ClockDriver {
 public:
  explicit SimClockDriver(SimClock& clock)
      : clock_(clock), applied_ppb_(clock.driver_frequency_ppb()) {}

  std::string_view name() const override { return "sim"; }
  UtcTime now() override { return clock_.local(); }
  Result<double> frequency_ppb() override { return clock_.driver_frequency_ppb(); }
  double max_frequency_ppb() const override { return clock::kSystemClockMaxFrequencyPpb; }
  // Clamped to ±max_frequency_ppb() and rounded to the kernel's resolution (timex.freq is ppm
  // in units of 2^-16; the tick's 100 ppm steps are whole multiples of it); returns that.
  Result<double> set_frequency_ppb(double ppb) override;
  Result<void> step(Duration offset) override;
  // One kernel call: the step and the TAI offset at the same instant (CLOCK_TAI moves by
  // offset + the change of the TAI offset: not at all for −1 s and +1).
  Result<void> step_with_tai_offset(Duration offset, int32_t tai_offset_s) override;
  // Sets or clears the SimClock's STA_INS/STA_DEL; the kernel state machine does the rest.
  Result<void> set_leap(clock::LeapState leap) override;
  Result<void> set_sync_status(const clock::SyncStatus& status) override;
  Result<void> set_tai_offset(int32_t seconds) override;
  // As adjtimex reports it: STA_UNSYNC, STA_INS/STA_DEL, STA_NANO; TIME_ERROR while unsynchronized
  // (else the kernel's TIME_OK/INS/DEL/OOP/WAIT); maxerror grown by 500 µs per second since it
  // was set, and STA_UNSYNC once it passes 16 s, as the kernel's second_overflow() does; the
  // kernel's TAI offset.
  Result<clock::KernelTimeState> state() override;
  // A kernel leap is not interference (it is not another process's step).
  std::optional<std::string> noticed_interference() override;
  // Each leap the SimClock's kernel carried out, once: +1 inserted, −1 deleted (the latest when
  // more than one happened since the last call).
  std::optional<int> noticed_kernel_leap() override;

  // Another process (a scenario's event): steps the clock, or sets the kernel frequency, without
  // this driver knowing. noticed_interference() then describes it once, as the adjtimex driver
  // does (same messages; a net step of 1 ms or less goes unnoticed there, so here too).
  void interfere_step(Duration offset);
  void interfere_set_frequency_ppb(double ppb);

  // What the daemon did through this driver.
  uint64_t steps() const { return steps_; }
  uint64_t frequency_sets() const { return frequency_sets_; }
  clock::LeapState leap() const { return leap_; }
  const clock::SyncStatus& sync_status() const { return sync_; }
  int32_t tai_offset_s() const { return clock_.tai_offset_s(); }

  // The kernel's rounding and range, for tests and the interference path.
  static double kernel_frequency_ppb(double ppb);

 private:
  SimClock& clock_;
  clock::LeapState leap_ = clock::LeapState::none;
  clock::SyncStatus sync_;
  Duration sync_set_monotonic_;  // when set_sync_status() last wrote maxerror
  std::size_t reported_kernel_leaps_ = 0;
  uint64_t steps_ = 0;
  uint64_t frequency_sets_ = 0;
  double applied_ppb_ = 0;  // what this driver last applied (or last reported as interference)
  Duration foreign_steps_;  // steps by another process since the last noticed_interference()
};

}  // namespace taid::sim
