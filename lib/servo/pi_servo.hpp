// The "pi" servo: linuxptp's proportional-integral controller (pi.c) on the offset alone, its
// output expressed as our Decision. Pure: no clock, no I/O.
//
// What it does and why:
// - makestep and maxchange first (StepPolicy), as for every servo, so the configuration means
//   the same whichever strategy runs. linuxptp's step_threshold is not used, and its
//   first_step_threshold only decides the jump at the second sample, which is a slew (below):
//   makestep is the one rule for steps.
// - Gains as linuxptp computes them from the update interval T (its pi_sync_interval):
//   kp = proportional_scale · T^proportional_exponent, at most proportional_norm_max / T, and
//   ki likewise with the integral_* numbers, both in 1/s (ppb of frequency per ns of offset).
//   linuxptp's defaults: exponents −0.3 and 0.4, norm_max 0.7 and 0.3, scales 0.7 / 0.3 with
//   hardware time stamps and 0.1 / 0.001 with software ones. We default to the software scales:
//   NTP offsets carry tens of µs of network noise, and the integral gain turns that straight
//   into frequency noise (ki·noise); 0.001 keeps it about six times lower than 0.3 at T = 16 s.
//   At T ≥ 64 s the norm_max caps bind for both sets (kp·T = 0.7, ki·T = 0.3). T is the update's
//   since_last, recomputed at every update because NTP's poll interval changes (linuxptp's sync
//   interval is fixed); an update without since_last is treated as the first one (unlocked).
// - linuxptp's state machine. unlocked: the first sample is kept and nothing changes. The
//   second, once it is at least min(0.016 / ki, 1000) s after the first (linuxptp's
//   freq_est_interval, with its 0.1 % margin), gives the frequency error directly:
//   base += (1e9 + base) · Δoffset/Δt, and the servo is locked. From then on each update
//   moves the base by the integral term and slews the proportional term. A step (makestep) is
//   the jump state; the sample after it counts from the stepped clock (offset − correction), so
//   a step on the first or second update does not lose the frequency estimate.
// - The jump at the second sample, as a slew. ptp4l jumps the clock at the second sample when
//   the offset exceeds first_step_threshold (20 µs), so its integrator starts from an offset
//   near zero. We step only under makestep (an offset of 0.1 s is slewed under Debian's
//   `makestep 1 3`), so that jump is carried out as a slew of the whole offset at maxslewrate
//   (state jump): in the core's cooked time scale the correction is credited to the sample
//   histories at once, so the next offset is measured from the corrected clock exactly as after
//   ptp4l's jump. Without it (the first version) the P term slewed the 0.1 s out at 70 % per
//   update while the I term took ki·x of it as frequency: 0.3/64 s × 38 ms = 175 ppm wrong at
//   the third update, a 10 ms overshoot and sync after ~600 s even with fresh offsets.
// - What diverged in the reference scenario (max |offset| 0.7 s, RMS frequency error 733 ppm,
//   growing oscillation), and what still makes it diverge with several servers, is the core's:
//   an update's offset is each source's offset_estimate(), the clock filter's pick whenever its
//   error bound beats the delay envelope's, and the core carries only the envelope's estimate to
//   `now`. Until 874cc7f the same pick was handed over at every update until a newer one was
//   released (4 s to 81 s: six updates, one sample, so the two-sample frequency estimate came out
//   0 against a 100 ppm clock); a pick on first use, and in a combination every source but the
//   one that just answered, are still as old as their sample. Corrected histories make that
//   worse than late: the remap for each frequency change leaves an old sample reading x − r·age
//   (x the offset now, r the residual frequency), so a clock running slow shows an old offset
//   that says "ahead", and the integrator pushes it slower still. With a = kp·T, b = ki·T and an
//   offset k intervals old the closed loop's determinant is 1 − a + b·k: unstable once b·k > a,
//   i.e. k > 2.3 at linuxptp's caps (a 0.7, b 0.3), which bind at every poll ≥ 48 s. Lower
//   integral caps only hide it (b = 0.01: seed 1 passed, seeds 2–8 ended 13 ms off). At fd1936a
//   this servo meets the reference limits on 5 seeds (sync ≤ 83 s, max |offset| ≤ 605 µs, RMS ≤
//   59 µs, RMS frequency error ≤ 0.49 ppm) but diverges with 5 servers (2 false); with every
//   pick carried to `now` by the envelope's frequency (one line in the core's estimate_of,
//   proposed in docs/SERVO.md, not made here) it passes that too.
// - Its own slew in progress is not error. The core hands over the clock's whole error, the
//   measured offset plus what the slew in progress has still to do (chrony's offset register),
//   and replaces that slew with the decision's correction. linuxptp's P term acts over one
//   interval and is done by the next sample; here an update can come before the slew ends (a
//   second source's sample seconds later, or the jump's slew), and integrating the remainder
//   again would count the same error at every such update. So the servo subtracts what is left
//   of the correction it decided last (linear in time over its duration: the core's raw-time
//   duration differs by the slew rate, ≤ 8 %, only while a slew runs near maxslewrate), runs the
//   PI on the measured part x, and asks for remainder + kp·T·x over max(T, what maxslewrate
//   needs).
// - The integrator is the base frequency the caller reports as applied (update's
//   frequency_ppb), not a copy of our own: when the driver clamps a frequency the integrator
//   does not wind up past it (linuxptp stops integrating when it clamps, to the same end).
// - At the second sample linuxptp returns the estimated frequency alone (and the jump); so do
//   we: an offset within first_step_threshold is left to the next update's P term.
// - residual_frequency and offset_sd are not used: this is the offset-only controller that
//   the "estimate" servo is compared against.
#pragma once

#include <string_view>

#include "servo/servo.hpp"
#include "servo/step_policy.hpp"

namespace taid::servo {

// linuxptp's pi_* configuration numbers (same names without the pi_ prefix).
struct PiConfig {
  // pi_proportional_const / pi_integral_const: when both are > 0 they are the gains (1/s) at
  // every interval, capped at 1.0 / T and 2.0 / T (linuxptp's MAX_KP_NORM_MAX, MAX_KI_NORM_MAX).
  double proportional_const = 0;
  double integral_const = 0;
  // 0 picks linuxptp's default for the kind of time stamps (see software_timestamps).
  double proportional_scale = 0;
  double proportional_exponent = -0.3;
  double proportional_norm_max = 0.7;
  double integral_scale = 0;
  double integral_exponent = 0.4;
  double integral_norm_max = 0.3;
  // Scales 0.1 / 0.001 (software stamps) or 0.7 / 0.3 (hardware stamps) when left at 0.
  bool software_timestamps = true;
  // linuxptp's first_step_threshold: at the second sample an offset above it is removed at once
  // (ptp4l steps; we slew it at maxslewrate, see above). 0: never.
  Duration first_step_threshold = Duration::from_us(20);
};

struct PiGains {
  double kp_per_s = 0;  // ppb of frequency per ns of offset
  double ki_per_s = 0;
};

// The gains for an update interval (> 0), as linuxptp's pi_sync_interval computes them.
PiGains pi_gains(Duration interval, const PiConfig& config);

class PiServo final : public Servo {
 public:
  explicit PiServo(const Settings& settings, const PiConfig& config = {});
  std::string_view name() const override { return "pi"; }
  Decision update(const Update& update, double frequency_ppb) override;
  // Forgets the samples and the lock, as linuxptp resets its PI on a jump: the next update starts
  // a new frequency estimate from the base frequency then applied (the integrator's value, so
  // the oscillator's frequency is kept). makestep's update count is kept (chrony counts for its
  // life).
  void sync_lost() override;
  State state() const { return state_; }

 private:
  // linuxptp's count: 0 no sample, 1 one sample kept, 2 frequency estimated.
  enum class Phase { empty, one_sample, locked };
  double estimated_frequency(const Update& update, double frequency_ppb) const;
  Decision after_step(Decision step, const Update& update, double frequency_ppb);
  Decision unchanged(double frequency_ppb) const;
  Decision decide(const Update& update, double frequency_ppb);
  Decision proportional(Decision decision, Duration measured, Duration left, Duration interval,
                        const PiGains& gains) const;
  Decision first_jump(Decision decision, const Update& update);
  // What is left at `now` of the correction this servo decided last.
  Duration slew_left(UtcTime now) const;
  Decision remember_slew(Decision decision, UtcTime now);

  Settings settings_;
  PiConfig config_;
  StepPolicy policy_;
  Phase phase_ = Phase::empty;
  State state_ = State::unlocked;
  Duration first_offset_;  // the kept sample, on the clock as it is after any step
  UtcTime first_at_;
  // The last slew decided: `correction` from `at` over `duration` (zero: none).
  Duration slew_correction_;
  Duration slew_duration_;
  UtcTime slew_at_;
};

}  // namespace taid::servo
