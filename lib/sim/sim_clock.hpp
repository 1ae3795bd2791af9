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
#pragma once

#include <cstdint>

#include "core/time.hpp"
#include "sim/random.hpp"

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
};

class SimClock {
 public:
  // `start` is the true UTC instant of t = 0; `seed` drives the wander.
  SimClock(const ClockModel& model, UtcTime start, uint64_t seed);

  // Runs the clock forward to true time `true_ns` (never backward: a call with an earlier time
  // does nothing).
  void advance_to(int64_t true_ns);

  int64_t true_ns() const { return true_ns_; }
  UtcTime true_utc() const { return start_ + Duration::from_ns(true_ns_); }
  // CLOCK_REALTIME now (the nanosecond the exact reading lies in).
  UtcTime local() const { return UtcTime::from_unix_ns(local_ns_); }
  // CLOCK_MONOTONIC now.
  Duration monotonic() const {
    return Duration::from_ns(local_ns_ - steps_ns_ - monotonic_base_ns_);
  }
  // local − true, ns, with the fraction of a nanosecond the int64 reading drops.
  double error_ns() const;
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

  // Total steps so far (sum of offsets).
  Duration stepped() const { return Duration::from_ns(steps_ns_); }

 private:
  // Integrates from true_ns_ to `to_ns` with the wander value held constant.
  void integrate(int64_t to_ns);
  double temperature_ppb(double t_s) const;

  ClockModel model_;
  UtcTime start_;
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
};

}  // namespace taid::sim
