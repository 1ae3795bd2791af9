// The "estimate" servo (chrony's way, with the kernel PLL off): the frequency comes from the
// sources' residual-frequency estimates over their corrected sample histories, and the offset
// is slewed out by a temporary extra frequency. Pure.
//
// Frequency. The sample histories are corrected for every frequency taid applies, so a
// source's residual r is relative to the frequency applied now (slew included): the clock
// would keep time at applied + r. That target is blended into the base frequency with the
// weights of the two uncertainties, as chrony blends its old and new frequency: the base's
// skew grows with the time since the last update (oscillator wander), the estimate's is the
// estimator's own. A fresh estimate of a short window thus moves the base a little, a tight one
// over a long window moves it nearly all the way. An estimate more than kRefuteSigmas combined
// skews from the base refutes it (a jump of the oscillator): the base starts over from it.
//
// Offset. chrony's non-linear slew: the correction lasts corrtimeratio × σ × T / (2|θ|)
// (σ: the offset's standard error, T: the update interval), so an offset at the noise level is
// spread over about corrtimeratio update intervals (noise is not chased) and a large one is
// removed quickly, at up to maxslewrate. The slew replaces the previous one: the measured offset
// already contains whatever of it was still to be done.
#pragma once

#include <optional>

#include "servo/servo.hpp"
#include "servo/step_policy.hpp"

namespace taid::servo {

class EstimateServo final : public Servo {
 public:
  explicit EstimateServo(const Settings& settings) : settings_(settings), policy_(settings) {}
  std::string_view name() const override { return "estimate"; }
  Decision update(const Update& update, double frequency_ppb) override;
  // Keeps the base frequency and its skew: the skew grows with the time to the next update
  // (kWanderPerRootSecond), so a long silence is weighed as such, while the few noisy samples of
  // the burst that follows a step no longer replace a frequency learnt over hours (they did:
  // after a foreign step the base was forgotten and a 2 s burst set it 35 ppm off). Only the
  // maxchange budget starts over.
  void sync_lost() override;

  // How far the base frequency may have wandered per √s since it was last estimated (s/s):
  // about a PC oscillator's Allan deviation at 1000 s, scaled as a random walk.
  static constexpr double kWanderPerRootSecond = 1e-9;
  // The base's uncertainty before any estimate: the kernel's whole range.
  static constexpr double kUnknownSkew = 500e-6;
  // A residual this many combined skews away from the base refutes the base.
  static constexpr double kRefuteSigmas = 5;
  // Used as the update interval for the first update.
  static constexpr double kFirstIntervalS = 16;

 private:
  Settings settings_;
  StepPolicy policy_;
  std::optional<double> base_ppb_;
  double skew_ = kUnknownSkew;  // s/s, of base_ppb_
};

}  // namespace taid::servo
