// The "pi" servo: linuxptp's PI controller mapped onto a base frequency and a slew.
#include "servo/pi_servo.hpp"

#include <algorithm>
#include <cmath>

namespace taid::servo {
namespace {

// linuxptp's defaults when the scales are left at 0, and the caps of fixed gains.
constexpr double kHardwareKpScale = 0.7, kHardwareKiScale = 0.3;
constexpr double kSoftwareKpScale = 0.1, kSoftwareKiScale = 0.001;
constexpr double kConstKpNormMax = 1.0, kConstKiNormMax = 2.0;
// The frequency is estimated from two samples at least 0.016 / ki apart (so that the estimate's
// error stays below what the integrator would settle in that time), at most 1000 s; the span is
// stretched by 0.1 % so that samples one nominal interval apart qualify. (linuxptp)
constexpr double kFreqEstimateGain = 0.016, kFreqEstimateMaxS = 1000, kFreqEstimateMargin = 0.001;

}  // namespace

PiGains pi_gains(Duration interval, const PiConfig& config) {
  double kp_scale = config.proportional_scale, ki_scale = config.integral_scale;
  double kp_exponent = config.proportional_exponent, ki_exponent = config.integral_exponent;
  double kp_norm_max = config.proportional_norm_max, ki_norm_max = config.integral_norm_max;
  if (config.proportional_const > 0 && config.integral_const > 0) {
    kp_scale = config.proportional_const;
    ki_scale = config.integral_const;
    kp_exponent = ki_exponent = 0;
    kp_norm_max = kConstKpNormMax;
    ki_norm_max = kConstKiNormMax;
  } else if (kp_scale == 0 || ki_scale == 0) {
    kp_scale = config.software_timestamps ? kSoftwareKpScale : kHardwareKpScale;
    ki_scale = config.software_timestamps ? kSoftwareKiScale : kHardwareKiScale;
  }
  const double t_s = interval.seconds();
  return {std::min(kp_scale * std::pow(t_s, kp_exponent), kp_norm_max / t_s),
          std::min(ki_scale * std::pow(t_s, ki_exponent), ki_norm_max / t_s)};
}

PiServo::PiServo(const Settings& settings, const PiConfig& config)
    : settings_(settings), config_(config), policy_(settings) {}

void PiServo::sync_lost() {
  // A slew in progress runs out in the core; from here on the whole offset is the servo's.
  slew_correction_ = Duration();
  phase_ = Phase::empty;
  state_ = State::unlocked;
  policy_.reset();
}

Decision PiServo::unchanged(double frequency_ppb) const {
  Decision decision;
  decision.kind = Decision::Kind::slew;
  decision.frequency_ppb = frequency_ppb;
  decision.state = state_;
  return decision;
}

// `measured`: the update's offset less what is left of our slew; the remainder is kept.
Decision PiServo::proportional(Decision decision, Duration measured, Duration left,
                               Duration interval, const PiGains& gains) const {
  const double t_s = interval.seconds();
  const double max_rate = settings_.max_slew_rate_ppm * 1e-6;
  const double max_s = max_rate * t_s;
  const double correction_s =
      left.seconds() + std::clamp(gains.kp_per_s * t_s * measured.seconds(), -max_s, max_s);
  decision.correction = Duration::from_seconds(correction_s);
  decision.slew_duration =
      std::max(interval, Duration::from_seconds(std::abs(correction_s) / max_rate));
  return decision;
}

Duration PiServo::slew_left(UtcTime now) const {
  if (slew_correction_ == Duration() || slew_duration_ <= Duration()) return {};
  const double done = std::clamp((now - slew_at_).seconds() / slew_duration_.seconds(), 0.0, 1.0);
  return Duration::from_seconds(slew_correction_.seconds() * (1 - done));
}

Decision PiServo::remember_slew(Decision decision, UtcTime now) {
  if (decision.kind == Decision::Kind::slew) {
    slew_correction_ = decision.correction;
    slew_duration_ = decision.slew_duration;
    slew_at_ = now;
  } else if (decision.kind == Decision::Kind::step) {
    slew_correction_ = Duration();  // the step did what was left too
  }
  return decision;
}

// linuxptp's jump at the second sample, carried out as a slew of the whole offset at
// maxslewrate (makestep alone decides steps); within first_step_threshold only the frequency
// changes, as in pi.c.
Decision PiServo::first_jump(Decision decision, const Update& update) {
  const Duration threshold = config_.first_step_threshold;
  if (threshold <= Duration() || update.offset.abs() <= threshold) {
    state_ = State::locked;
    decision.state = state_;
    return decision;
  }
  state_ = State::jump;
  decision.state = state_;
  decision.correction = update.offset;
  decision.slew_duration = Duration::from_seconds(update.offset.abs().seconds() /
                                                  (settings_.max_slew_rate_ppm * 1e-6));
  if (decision.slew_duration <= Duration()) decision.slew_duration = Duration::from_ns(1);
  return decision;
}

// Whether the kept sample and `update` are far enough apart to estimate the frequency from.
static bool spans_estimate(Duration span, Duration interval, const PiConfig& config) {
  if (span <= Duration()) return false;
  const double needed_s =
      std::min(kFreqEstimateGain / pi_gains(interval, config).ki_per_s, kFreqEstimateMaxS);
  return span.seconds() * (1 + kFreqEstimateMargin) >= needed_s;
}

// The base that cancels the drift between the kept sample and `update`: a residual r (s/s)
// under a base f ppb needs f + r·(1e9 + f), as the kernel's frequency scales the tick.
double PiServo::estimated_frequency(const Update& update, double frequency_ppb) const {
  const double drift =
      (update.offset - first_offset_).seconds() / (update.now - first_at_).seconds();
  return clamp_frequency(frequency_ppb + (1e9 + frequency_ppb) * drift, settings_);
}

Decision PiServo::after_step(Decision step, const Update& update, double frequency_ppb) {
  // Both samples were taken before the step, so the frequency they show is still the clock's.
  if (phase_ == Phase::one_sample && update.since_last &&
      spans_estimate(update.now - first_at_, *update.since_last, config_)) {
    step.frequency_ppb = estimated_frequency(update, frequency_ppb);
    phase_ = Phase::locked;
  } else {
    // A step while locked means the loop lost the clock: estimate its frequency again (as
    // linuxptp restarts after step_threshold), from the base already integrated.
    first_offset_ = update.offset - step.correction;
    first_at_ = update.now;
    phase_ = Phase::one_sample;
  }
  state_ = State::jump;
  step.state = state_;
  return step;
}

Decision PiServo::update(const Update& update, double frequency_ppb) {
  return remember_slew(decide(update, frequency_ppb), update.now);
}

Decision PiServo::decide(const Update& update, double frequency_ppb) {
  if (auto decision = policy_.check(update, frequency_ppb)) {
    if (decision->kind == Decision::Kind::step) return after_step(*decision, update, frequency_ppb);
    decision->state = state_;  // an ignored update changes nothing, the state included
    return *decision;
  }

  const Duration left = slew_left(update.now);
  const bool has_interval = update.since_last && *update.since_last > Duration();
  if (phase_ == Phase::locked && !has_interval) {
    // A second update at the same instant brings nothing to integrate: the slew goes on.
    Decision decision = unchanged(frequency_ppb);
    decision.correction = left;
    decision.slew_duration =
        std::max(slew_duration_ - (update.now - slew_at_), Duration::from_ns(1));
    return decision;
  }
  if (phase_ == Phase::empty || !has_interval ||
      (phase_ == Phase::one_sample && update.now <= first_at_)) {
    first_offset_ = update.offset;
    first_at_ = update.now;
    phase_ = Phase::one_sample;
    state_ = State::unlocked;
    return unchanged(frequency_ppb);
  }
  const Duration interval = *update.since_last;
  const PiGains gains = pi_gains(interval, config_);

  Decision decision;
  decision.kind = Decision::Kind::slew;
  if (phase_ == Phase::one_sample) {
    if (!spans_estimate(update.now - first_at_, interval, config_)) {
      state_ = State::unlocked;
      return unchanged(frequency_ppb);
    }
    decision.frequency_ppb = estimated_frequency(update, frequency_ppb);
    phase_ = Phase::locked;
    return first_jump(decision, update);
  }
  const Duration measured = update.offset - left;
  decision.frequency_ppb =
      clamp_frequency(frequency_ppb + gains.ki_per_s * measured.seconds() * 1e9, settings_);
  state_ = State::locked;
  decision.state = state_;
  return proportional(decision, measured, left, interval, gains);
}

}  // namespace taid::servo
