// AdjtimexDriver: disciplines the system clock (CLOCK_REALTIME) through adjtimex, as chrony's
// sys_timex.c and sys_linux.c do; plus the CAP_SYS_TIME check the daemon makes before using it.
//
// The kernel's own PLL is switched off at open(), so the clock runs at exactly the frequency
// taid sets: tick length (±10 %) and ADJ_FREQUENCY (±500 ppm) together, split as chrony splits
// them. Frequencies are ppb, positive = the clock runs faster (ClockDriver's convention).
//
// Interference: noticed_interference() compares the kernel's tick and frequency word with what
// this driver last applied, and, since the last check, the change of (CLOCK_TAI −
// CLOCK_BOOTTIME) with the steps and TAI offset changes this driver made, and the change of the
// kernel's TAI offset with this driver's. A frequency change (adjtimex or the tick) slews every
// clock alike; only a step or a TAI offset change moves CLOCK_TAI against BOOTTIME. CLOCK_TAI
// rather than CLOCK_REALTIME: the kernel's own leap second (STA_INS/STA_DEL, armed here) moves
// REALTIME by ∓1 s and the TAI offset by ±1 together, and CLOCK_TAI not at all, so a leap is not
// a step; it shows as the TAI offset changing by ±1 while CLOCK_TAI stayed, and
// noticed_kernel_leap() reports it once (judge_clock_check() below is the rule). CLOCK_BOOTTIME
// rather than CLOCK_MONOTONIC: a suspend advances REALTIME and BOOTTIME by the time asleep but
// not MONOTONIC, and must not look like a step.
//
// Kernel behaviour a caller must know (Linux 6.1, seen in tests/vm's leap test): a step
// (ADJ_SETOFFSET, settimeofday) runs ntp_clear(), which sets STA_UNSYNC and forgets an armed
// leap's second while the state stays TIME_INS: the kernel then does not insert at midnight.
// After a step, arm again (set_leap(none), then set_leap(insert) a second later), or step first.
//
// Not thread-safe: the engine's thread owns the driver. Only this driver should write the
// clock; every adjtimex here but the reads sets mode bits and needs CAP_SYS_TIME.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "clock/clock_driver.hpp"
#include "core/result.hpp"
#include "core/time.hpp"

namespace taid::clock {

// Whether this process may write the clock: CAP_SYS_TIME in its effective capability set (root
// has it unless dropped). The error tells the operator what to do about it.
Result<void> check_clock_privilege();

// --- The pure arithmetic behind the driver (no syscalls; unit-tested on the host). ---

// The kernel's frequency knobs: timex.tick and timex.freq.
struct TickAndFrequency {
  int64_t tick_us = 0;      // microseconds the clock advances per USER_HZ tick
  int64_t freq_scaled = 0;  // ppm * 2^16 ("scaled ppm"), at most ±500 ppm
  bool operator==(const TickAndFrequency&) const = default;
};

// What the kernel accepts for a given USER_HZ (sysconf(_SC_CLK_TCK), 100 on x86).
struct TickRange {
  int64_t nominal_us = 0;  // round(1e6 / USER_HZ), as the kernel computes its default
  int64_t min_us = 0;      // 900000 / USER_HZ: the kernel refuses a shorter tick (-10 %)
  int64_t max_us = 0;      // 1100000 / USER_HZ: and a longer one (+10 %)
};
TickRange tick_range(int64_t user_hz);

// The kernel's limit on timex.freq: ±500 ppm.
inline constexpr int64_t kMaxFreqScaled = int64_t{500} << 16;

// The clock's rate for a tick and frequency word, in ppb: the kernel's second is
// tick_us * USER_HZ microseconds plus freq (an absolute ns/s), so 1 µs of tick is USER_HZ ppm.
double combined_frequency_ppb(const TickAndFrequency& tf, int64_t user_hz);

// Splits ppb (clamped to what the tick and freq can reach) into a tick and a frequency word:
// the tick that brings the rest nearest zero, except that (chrony, USER_HZ <= 250) a tick next
// to current_tick_us stays, so the tick does not flap and stays nominal below 1.5 ticks'
// worth (150 ppm at USER_HZ 100); the rest goes to freq, rounded to 2^-16 ppm.
TickAndFrequency split_frequency(double ppb, int64_t user_hz, int64_t current_tick_us);

// ADJ_SETOFFSET | ADJ_NANO's timex.time for a step: seconds and nanoseconds with the
// nanoseconds in [0, 1e9), as the kernel demands (−1.5 s is {−2 s, 500 000 000 ns}).
struct SetOffsetTime {
  int64_t seconds = 0;
  int64_t nanoseconds = 0;
  bool operator==(const SetOffsetTime&) const = default;
};
SetOffsetTime setoffset_time(Duration offset);

// Status words for ADJ_STATUS, from the kernel's current status: only the bits a process may
// write are kept (the kernel keeps its read-only ones itself), then:
// the kernel PLL, FLL and PPS discipline off (open());
uint32_t status_without_pll(uint32_t kernel_status);
// STA_INS / STA_DEL as `leap` says, every other writable bit as it was;
uint32_t status_with_leap(uint32_t kernel_status, LeapState leap);
// STA_UNSYNC clear when synchronized, set otherwise, every other writable bit as it was.
uint32_t status_with_sync(uint32_t kernel_status, bool synchronized);

// The kernel's ceiling for maxerror and esterror (NTP_PHASE_LIMIT, 16 s); at it the kernel
// sets STA_UNSYNC by itself.
inline constexpr int64_t kMaxErrorUs = 16'000'000;
// An error bound in the kernel's microseconds: rounded up (a bound must not shrink), 0 for a
// negative one, at most kMaxErrorUs.
int64_t error_bound_us(Duration error);

// A step of the clock nobody here made: |observed − own_steps| above kStepInterferenceThreshold
// plus the uncertainty of the two readings behind observed_change.
inline constexpr Duration kStepInterferenceThreshold = Duration::from_ms(1);
std::optional<Duration> unexplained_step(Duration observed_change, Duration own_steps,
                                         Duration uncertainty = Duration{});

// One reading of CLOCK_TAI − CLOCK_BOOTTIME, good to ± uncertainty (half the time between the
// BOOTTIME reads around the TAI one: a stalled vCPU or a preempted thread widens it).
struct ClockDifference {
  Duration value;
  Duration uncertainty;
};
// A reading this uncertain is not used to judge a step; the next check tries again.
inline constexpr Duration kMaxReadingUncertainty = Duration::from_us(250);

// The one-line reports of noticed_interference().
std::string frequency_interference_message(double kernel_ppb, double taid_ppb);
std::string step_interference_message(Duration step);
std::string tai_interference_message(int32_t from_s, int32_t to_s);

// What one interference check saw since the last one.
struct ClockCheck {
  Duration tai_clock_change;     // change of CLOCK_TAI − CLOCK_BOOTTIME
  Duration uncertainty;          // of that change (both readings')
  Duration own_steps;            // the steps this driver made
  int32_t tai_before_s = 0;      // the kernel's TAI offset at the last check
  int32_t tai_now_s = 0;         // and now
  int32_t own_tai_change_s = 0;  // what this driver's ADJ_TAI writes changed it by
  // +1 / −1 when this driver had STA_INS / STA_DEL set at any time since the last check, else 0.
  int armed_leap = 0;
};
struct ClockCheckVerdict {
  std::optional<int> kernel_leap;               // +1 inserted, −1 deleted by the kernel
  std::optional<std::string> tai_interference;  // tai_interference_message()
  std::optional<Duration> step;                 // a step nobody here made (unexplained_step())
  bool operator==(const ClockCheckVerdict&) const = default;
};
// The rule: the TAI offset's change beyond our own is the kernel's leap when it is the ±1 we
// armed and CLOCK_TAI did not move with it (the kernel moved REALTIME instead); any other
// foreign change of the offset is interference, and it moves CLOCK_TAI by itself, so that much
// of CLOCK_TAI's move is put down to it rather than to a step. What is left beyond our own
// steps and TAI changes, past the threshold, is a foreign step.
ClockCheckVerdict judge_clock_check(const ClockCheck& check);

// --- The driver. ---

class AdjtimexDriver final : public ClockDriver {
 public:
  // Switches the kernel PLL off and clears its offset and any adjtime() slew in progress (like
  // chrony's start), adopts the kernel's tick and frequency as the starting point, and takes
  // the first REALTIME − BOOTTIME reading. Without CAP_SYS_TIME it writes nothing and fails
  // with check_clock_privilege()'s error. A PLL offset that was being slewed keeps slewing
  // until the kernel's next second boundary (its share for the current second is already in
  // the tick length), so the first frequency measurement should start a second after open().
  static Result<std::unique_ptr<AdjtimexDriver>> open();

  std::string_view name() const override { return "adjtimex"; }
  UtcTime now() override;
  Result<double> frequency_ppb() override;
  double max_frequency_ppb() const override { return kSystemClockMaxFrequencyPpb; }
  // One ADJ_TICK | ADJ_FREQUENCY call; returns the frequency the kernel reports after it.
  Result<double> set_frequency_ppb(double ppb) override;
  // ADJ_SETOFFSET: the kernel adds the offset to the clock at once.
  Result<void> step(Duration offset) override;
  Result<void> step_with_tai_offset(Duration offset, int32_t tai_offset_s) override;
  Result<void> set_leap(LeapState leap) override;
  // maxerror, esterror and STA_UNSYNC in one adjtimex.
  Result<void> set_sync_status(const SyncStatus& status) override;
  // ADJ_TAI; the kernel ignores a negative offset, so that is an error here.
  Result<void> set_tai_offset(int32_t seconds) override;
  Result<KernelTimeState> state() override;
  std::optional<std::string> noticed_interference() override;
  std::optional<int> noticed_kernel_leap() override;

  // The kernel status before open() and the status open() wrote (for the start-up log).
  uint32_t status_before_open() const { return status_before_open_; }
  uint32_t status_after_open() const { return status_after_open_; }
  int64_t user_hz() const { return user_hz_; }

 private:
  AdjtimexDriver() = default;

  // CLOCK_TAI − CLOCK_BOOTTIME now (see the header comment), the best of a few readings.
  static ClockDifference tai_minus_boottime();
  // The kernel's TAI offset now, for an ADJ_TAI write's own change.
  Result<int32_t> kernel_tai_offset();
  // One interference check (the frequency, then CLOCK_TAI and the TAI offset): its findings wait
  // in pending_report_ and kernel_leap_ for noticed_interference() and noticed_kernel_leap(),
  // so either may be asked first and neither loses the other's news.
  void check();
  void add_report(const std::string& line);

  int64_t user_hz_ = 100;
  uint32_t status_before_open_ = 0;
  uint32_t status_after_open_ = 0;
  // The tick and frequency word the kernel reported after our last write (or at open()).
  TickAndFrequency applied_;
  // TAI − BOOTTIME and the kernel's TAI offset at the last check; our steps and TAI offset
  // changes since then.
  ClockDifference tai_minus_boottime_;
  int32_t tai_offset_s_ = 0;
  Duration own_steps_;
  int32_t own_tai_change_s_ = 0;
  // The leap this driver has armed now, and the one armed at any time since the last check.
  int armed_leap_ = 0;
  int armed_leap_since_check_ = 0;
  // A kernel leap the last check found, until noticed_kernel_leap() hands it out.
  std::optional<int> kernel_leap_;
  std::string pending_report_;  // interference found and not yet handed out
};

}  // namespace taid::clock
