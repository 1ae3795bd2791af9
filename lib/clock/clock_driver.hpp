// ClockDriver: the one door to a clock. Every read and write of a clock's discipline goes through
// it, so tests and observe-only mode replace the system clock with a null or simulated driver.
//
// Units and sign: frequencies are parts per billion in the kernel's sense (timex.freq): positive
// makes the clock run faster. step(offset) adds offset to the clock (positive moves it forward).

#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"
#include "core/time.hpp"

struct timex;  // <sys/timex.h>; declared here so users of the interface do not pull it in

namespace taid::clock {

enum class LeapState { none, insert, delete_ };

// The system clock's frequency range through adjtimex: the tick length may move ±10 % from its
// nominal value (100 000 ppm) and ADJ_FREQUENCY adds ±500 ppm. The simulated system clock has
// the same range.
inline constexpr double kSystemClockMaxFrequencyPpb = 100'500'000;

// The kernel's NTP state as ntp_adjtime(modes = 0) and ntp_gettime() report it (read-only).
struct KernelTimeState {
  int clock_state = 0;       // adjtimex return value: TIME_OK, TIME_INS, ..., TIME_ERROR
  uint32_t status = 0;       // STA_* bits
  Duration offset;           // kernel PLL offset (ns when STA_NANO, else converted from us)
  double frequency_ppb = 0;  // kernel freq (scaled ppm converted to ppb)
  Duration max_error;        // maxerror (kernel keeps microseconds)
  Duration est_error;        // esterror
  int64_t time_constant = 0;
  Duration precision;        // clock precision reported by the kernel
  double tolerance_ppb = 0;  // maximum frequency error
  int32_t tai_offset_s = 0;  // TAI - UTC, seconds
  int64_t tick_us = 0;
  UtcTime time;  // the kernel's time at the read

  bool synchronized() const;                           // STA_UNSYNC clear and not TIME_ERROR
  std::vector<std::string> status_flag_names() const;  // "PLL", "UNSYNC", "NANO", ...
  std::string clock_state_name() const;                // "TIME_OK", "TIME_ERROR", ...
};

// What the daemon tells the kernel about how good the clock is (maxerror/esterror, UNSYNC).
struct SyncStatus {
  bool synchronized = false;
  Duration max_error;
  Duration est_error;
};

class ClockDriver {
 public:
  virtual ~ClockDriver() = default;
  virtual std::string_view name() const = 0;
  virtual UtcTime now() = 0;
  virtual Result<double> frequency_ppb() = 0;
  // The largest |frequency| set_frequency_ppb() can apply (the kernel's tick and frequency
  // ranges for the system clock); the servo never asks for more.
  virtual double max_frequency_ppb() const = 0;
  // Returns the frequency actually applied (a driver may clamp or round, or apply nothing).
  virtual Result<double> set_frequency_ppb(double ppb) = 0;
  virtual Result<void> step(Duration offset) = 0;
  // Steps the clock by `offset` and sets the TAI offset in one call (a leap second stepped by
  // the daemon: CLOCK_REALTIME moves by `offset`, CLOCK_TAI = REALTIME + TAI offset does not).
  virtual Result<void> step_with_tai_offset(Duration offset, int32_t tai_offset_s) = 0;
  virtual Result<void> set_leap(LeapState leap) = 0;
  virtual Result<void> set_sync_status(const SyncStatus& status) = 0;
  virtual Result<void> set_tai_offset(int32_t seconds) = 0;
  virtual Result<KernelTimeState> state() = 0;
  // A change of the clock that this driver did not make (another process stepped the clock or
  // set its frequency), described once per change; nullopt when there was none since the last
  // call. The daemon asks at every clock update and logs the answer.
  virtual std::optional<std::string> noticed_interference() { return std::nullopt; }
  // A leap second the kernel itself carried out (set_leap armed it; at the UTC midnight the
  // kernel stepped CLOCK_REALTIME by −1 s for an insertion, +1 s for a deletion, and changed its
  // TAI offset by +1 / −1), reported once: +1 inserted, −1 deleted; nullopt when there was none
  // since the last call. Not interference: CLOCK_TAI did not move.
  virtual std::optional<int> noticed_kernel_leap() { return std::nullopt; }
};

// Reads the system clock's kernel state with one adjtimex(modes = 0); never writes. One call
// (rather than adding ntp_gettime()) keeps the time and the NTP variables from the same instant.
Result<KernelTimeState> read_kernel_time_state();

// The pure half of read_kernel_time_state(): converts a timex filled by the kernel (and the
// adjtimex return value) into our units, so the conversion is testable on hand-made values.
KernelTimeState decode_timex(const ::timex& tx, int clock_state);

}  // namespace taid::clock
