// The "pi" servo: linuxptp's proportional-integral controller (pi.c) on the offset alone, its
// output expressed as our Decision. Pure: no clock, no I/O.
//
// What it does and why:
// - makestep and maxchange first (StepPolicy), as for every servo, so the configuration means
//   the same whichever strategy runs. linuxptp's own step_threshold / first_step_threshold are
//   not used: makestep is the one rule for steps.
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
// - Output mapping. linuxptp returns one frequency for the next interval:
//   ppb = base + ki·x + kp·x. We keep the integral part as the base (frequency_ppb =
//   clamp_frequency(base + ki·x)) and turn the proportional part into a slew of
//   correction = kp·T·x over slew_duration = T, so base + correction / duration is linuxptp's
//   ppb during one interval, while a missed update leaves the clock on the base instead of on
//   a proportional term that has already done its work. The slew rate is capped at
//   max_slew_rate_ppm (the correction shrinks, the duration stays).
// - The integrator is the base frequency the caller reports as applied (update's
//   frequency_ppb), not a copy of our own: when the driver clamps a frequency the integrator
//   does not wind up past it (linuxptp stops integrating when it clamps, to the same end).
// - At the second sample linuxptp returns the estimated frequency alone, because ptp4l jumps
//   the clock there when the offset exceeds first_step_threshold (20 µs). We step only under
//   makestep, so the proportional slew starts at that update as well, one interval earlier.
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
  // Forgets the samples and the lock: the next update starts a new frequency estimate from the
  // base frequency then applied. makestep's update count is kept (chrony counts for its life).
  void reset() override;
  State state() const { return state_; }

 private:
  // linuxptp's count: 0 no sample, 1 one sample kept, 2 frequency estimated.
  enum class Phase { empty, one_sample, locked };
  double estimated_frequency(const Update& update, double frequency_ppb) const;
  Decision after_step(Decision step, const Update& update, double frequency_ppb);
  Decision unchanged(double frequency_ppb) const;
  Decision proportional(Decision decision, const Update& update, Duration interval,
                        const PiGains& gains) const;

  Settings settings_;
  PiConfig config_;
  StepPolicy policy_;
  Phase phase_ = Phase::empty;
  State state_ = State::unlocked;
  Duration first_offset_;  // the kept sample, on the clock as it is after any step
  UtcTime first_at_;
};

}  // namespace taid::servo
