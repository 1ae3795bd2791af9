// SimClock: a simulated local oscillator and the two kernel clocks it drives (CLOCK_REALTIME and
// CLOCK_MONOTONIC), integrated exactly against true time.
//
// True time t is nanoseconds since the start of the simulation (int64). The local clock reads
//     L(t) = start + initial_offset + t + ∫₀ᵗ f(s) ds + steps
// with the frequency error (s/s; positive: the clock runs fast)
//     1 + f(t) = (1 + o(t)) · (1 + d),    o(t) = frequency + w(t) + A·sin(2πt/P)
// where o is the oscillator's own error — w a random walk that takes a step of wander × N(0,1) at
// every whole true second, A·sin a temperature cycle — and d the driver frequency that
// set_driver_frequency_ppb() applied (kernel sense). The product, not the sum: the kernel scales
// the nanoseconds the oscillator counted, so a change of d changes the rate by (1 + d')/(1 + d)
// whatever o is, which is what the core assumes when it remaps its samples (the sum differs by
// o·d, 8 ppm in a 83 000 ppm slew of a 100 ppm oscillator). Between events every term is piecewise
// constant or integrated analytically, and the integral is kept as int64 ns plus a double fraction
// of a nanosecond below 1, so nothing accumulates float error over a long run: a +100 ppm clock is
// exactly 1 ms ahead after 10 s. CLOCK_MONOTONIC runs at the same rate (Linux slews it with the NTP
// frequency too) but is not stepped.
//
// The kernel's leap-second state machine runs on CLOCK_REALTIME as Linux's does
// (kernel/time/ntp.c second_overflow(), applied at the exact instant as the read path and the
// hrtimer offsets do): at the first whole second of CLOCK_REALTIME after STA_INS (STA_DEL) is
// set, TIME_OK → TIME_INS (TIME_DEL) and the next leap is the next UTC midnight M of
// CLOCK_REALTIME. Insertion: when CLOCK_REALTIME reaches M it steps back to M − 1 s, the TAI offset
// goes +1, TIME_OOP for that second, then TIME_WAIT until the flag is cleared, then TIME_OK at
// the next whole second. Deletion: when CLOCK_REALTIME reaches M − 1 s it jumps to M, TAI
// offset −1, TIME_WAIT. The leap is checked by equality, as the kernel's `secs ==
// ntp_next_leap_sec`: a clock stepped past M without reaching it there does not leap. A flag
// cleared before M takes the state back to TIME_OK at the next whole second. CLOCK_TAI is
// CLOCK_REALTIME + the TAI offset and never jumps at a kernel leap; CLOCK_MONOTONIC never steps.
// (Not modelled: the kernel's ntp_clear() on a step, which also cancels a pending leap.)
#pragma once

#include <cstdint>
#include <vector>

#include "clock/clock_driver.hpp"
#include "core/time.hpp"
#include "sim/random.hpp"
#include "sim/truth.hpp"

namespace taid::sim {

struct ClockModel {
  Duration initial_offset;   // local − true at the start
  double frequency_ppm = 0;  // the oscillator's own frequency error (positive: fast)
  // Random-walk frequency noise: each true second the frequency moves by wander × N(0,1) (s/s).
  double wander = 0;
  // Temperature: a frequency term A·sin(2πt/P).
  double temperature_amplitude_ppm = 0;
  Duration temperature_period = Duration::from_s(86400);
  // CLOCK_MONOTONIC at the start (time since boot).
  Duration initial_monotonic = Duration::from_s(1000);
  // The kernel frequency already set when the simulation starts (ppb, kernel sense).
  double initial_driver_frequency_ppb = 0;
  // The kernel's TAI offset at the start (0 on a fresh Linux machine).
  int32_t initial_tai_offset_s = 0;
};

// A leap second the simulated kernel carried out.
struct KernelLeap {
  int64_t true_ns = 0;  // true time of the step
  UtcTime local;        // CLOCK_REALTIME just after the step
  int direction = 1;    // +1 inserted (REALTIME −1 s), −1 deleted (REALTIME +1 s)
};

// A change of the kernel's TAI offset, by the kernel's leap or by a write.
struct TaiOffsetChange {
  int64_t true_ns = 0;
  int32_t from_s = 0;
  int32_t to_s = 0;
  bool by_kernel_leap = false;
};

class SimClock {
 public:
  // `start` is the true UTC instant of t = 0 (a truth without leap seconds); `seed` drives the
  // wander.
  SimClock(const ClockModel& model, UtcTime start, uint64_t seed)
      : SimClock(model, Truth(start), seed) {}
  // The truth gives true UTC (with its leap seconds) and true TAI.
  SimClock(const ClockModel& model, const Truth& truth, uint64_t seed);

  // Runs the clock forward to true time `true_ns` (never backward: a call with an earlier time
  // does nothing).
  void advance_to(int64_t true_ns);

  int64_t true_ns() const { return true_ns_; }
  // True POSIX UTC now (repeats an inserted second of the truth).
  UtcTime true_utc() const { return truth_.utc_at(true_ns_); }
  TaiTime true_tai() const { return truth_.tai_at(true_ns_); }
  const Truth& truth() const { return truth_; }
  // CLOCK_REALTIME now (the nanosecond the exact reading lies in).
  UtcTime local() const { return UtcTime::from_unix_ns(local_ns_); }
  // CLOCK_MONOTONIC now.
  Duration monotonic() const {
    return Duration::from_ns(local_ns_ - steps_ns_ - leap_steps_ns_ - monotonic_base_ns_);
  }
  // CLOCK_TAI now: CLOCK_REALTIME + the kernel's TAI offset.
  TaiTime clock_tai() const { return TaiTime::from_utc(local(), Duration::from_s(tai_offset_s_)); }
  // local − true POSIX UTC, ns, with the fraction of a nanosecond the int64 reading drops.
  double error_ns() const;
  // CLOCK_TAI − true TAI, ns (with the fraction).
  double tai_error_ns() const;
  // The oscillator's own frequency error now (frequency + wander + temperature), ppb.
  double oscillator_frequency_ppb() const;
  // The frequency the kernel applies on top of it, ppb.
  double driver_frequency_ppb() const { return driver_ppb_; }
  // How fast the clock runs against true time now, ppb: (1 + oscillator)(1 + driver) − 1.
  double total_frequency_ppb() const {
    const double o = oscillator_frequency_ppb();
    return o + driver_ppb_ + o * driver_ppb_ * 1e-9;
  }

  // Kernel writes (the driver, or another process): from now on the clock runs with this
  // frequency; the clock jumps by `offset` (CLOCK_MONOTONIC does not).
  void set_driver_frequency_ppb(double ppb) { driver_ppb_ = ppb; }
  void step(Duration offset);
  // The oscillator itself changes frequency (a scenario's event): frequency_ppm += delta.
  void change_oscillator_frequency_ppb(double delta_ppb) { base_ppb_ += delta_ppb; }

  // Total steps so far (sum of offsets; the kernel's own leaps not counted).
  Duration stepped() const { return Duration::from_ns(steps_ns_); }

  // The kernel's leap flags (STA_INS / STA_DEL, as adjtimex ADJ_STATUS writes them; none clears
  // both) and its TAI offset (ADJ_TAI).
  void set_kernel_leap(clock::LeapState flag) { leap_flag_ = flag; }
  clock::LeapState kernel_leap() const { return leap_flag_; }
  void set_tai_offset(int32_t seconds);
  int32_t tai_offset_s() const { return tai_offset_s_; }
  // The kernel's time_state: TIME_OK, TIME_INS, TIME_DEL, TIME_OOP or TIME_WAIT (adjtimex reports
  // TIME_ERROR instead while unsynchronized; that is the driver's business).
  int kernel_time_state() const { return time_state_; }
  // Every leap the kernel carried out, and every change of the TAI offset, in order.
  const std::vector<KernelLeap>& kernel_leaps() const { return kernel_leaps_; }
  const std::vector<TaiOffsetChange>& tai_offset_changes() const { return tai_offset_changes_; }

 private:
  struct Reading {
    int64_t local_ns;
    double fraction;
  };
  // CLOCK_REALTIME at `to_ns` ≥ true_ns_ with the wander value held constant (no kernel event).
  Reading reading_at(int64_t to_ns) const;
  // Integrates from true_ns_ to `to_ns` with the wander value held constant.
  void integrate(int64_t to_ns);
  // Integrates to `to_ns`, stopping at each whole second of CLOCK_REALTIME where the kernel's
  // leap state machine acts, and acting there.
  void integrate_with_kernel(int64_t to_ns);
  // The next whole second (POSIX s of CLOCK_REALTIME) at which second_overflow() changes
  // something, or INT64_MAX.
  int64_t next_kernel_second() const;
  // kernel/time/ntp.c second_overflow() for the second `secs` that CLOCK_REALTIME just began.
  void second_overflow(int64_t secs);
  double temperature_ppb(double t_s) const;

  ClockModel model_;
  Truth truth_;
  Random random_;
  int64_t true_ns_ = 0;
  int64_t local_ns_ = 0;       // CLOCK_REALTIME, whole ns
  double local_fraction_ = 0;  // [0, 1) ns on top of local_ns_
  int64_t steps_ns_ = 0;
  int64_t monotonic_base_ns_ = 0;  // local_ns_ − steps_ns_ − monotonic at the same instant
  double base_ppb_ = 0;            // frequency_ppm as ppb, plus oscillator changes
  double wander_ppb_ = 0;
  double driver_ppb_ = 0;
  int64_t next_wander_ns_ = 1000000000;  // the next whole true second
  // The kernel's leap second state.
  clock::LeapState leap_flag_ = clock::LeapState::none;
  int time_state_ = 0;  // TIME_OK
  int64_t next_leap_s_ = INT64_MAX;
  int32_t tai_offset_s_ = 0;
  int64_t leap_steps_ns_ = 0;  // the kernel's leap steps (CLOCK_MONOTONIC ignores them too)
  std::vector<KernelLeap> kernel_leaps_;
  std::vector<TaiOffsetChange> tai_offset_changes_;
};

}  // namespace taid::sim
