// The "estimate" servo: frequency from the sources' estimates, offset slewed out (chrony).
#include "servo/estimate_servo.hpp"

#include <algorithm>
#include <cmath>

#include "core/strcat.hpp"

namespace taid::servo {

Decision EstimateServo::update(const Update& update, double frequency_ppb) {
  const double interval_s = update.since_last ? std::max(update.since_last->seconds(), 1e-3)
                                              : kFirstIntervalS;
  double base_ppb = base_ppb_.value_or(frequency_ppb);
  // The base frequency's uncertainty grows while it is not re-estimated.
  double skew = skew_;
  if (update.since_last)
    skew = std::min(kUnknownSkew, std::hypot(skew, kWanderPerRootSecond * std::sqrt(interval_s)));
  if (update.residual_frequency) {
    const double target_ppb = frequency_ppb + *update.residual_frequency * 1e9;
    const double new_skew = std::max(update.skew, 1e-12);
    // An estimate the base frequency cannot explain refutes it (the oscillator jumped, or the
    // base was wrong all along): start from the estimate instead of averaging it away.
    if (std::abs(target_ppb - base_ppb) * 1e-9 > kRefuteSigmas * std::hypot(skew, new_skew))
      skew = kUnknownSkew;
    const double w_old = 1 / (skew * skew);
    const double w_new = 1 / (new_skew * new_skew);
    base_ppb += (target_ppb - base_ppb) * w_new / (w_old + w_new);
    skew = 1 / std::sqrt(w_old + w_new);
  }
  base_ppb = clamp_frequency(base_ppb, settings_);

  Decision decision;
  if (auto policy = policy_.check(update, base_ppb)) {
    // An ignored update changes nothing, not even the frequency.
    if (policy->kind == Decision::Kind::ignore || policy->kind == Decision::Kind::stop) {
      policy->frequency_ppb = base_ppb_.value_or(frequency_ppb);
      return *policy;
    }
    base_ppb_ = base_ppb;
    skew_ = skew;
    policy->frequency_ppb = base_ppb;
    return *policy;
  }
  base_ppb_ = base_ppb;
  skew_ = skew;
  decision.frequency_ppb = base_ppb;
  decision.kind = Decision::Kind::slew;
  decision.state = skew_ < 10e-6 ? State::locked : State::unlocked;
  const double offset_s = update.offset.seconds();
  if (offset_s == 0) return decision;
  const double sd_s = std::max(update.offset_sd.seconds(), 1e-9);
  double duration_s = settings_.corr_time_ratio * sd_s * interval_s / (2 * std::abs(offset_s));
  // Never faster than maxslewrate.
  duration_s = std::max(duration_s, std::abs(offset_s) / (settings_.max_slew_rate_ppm * 1e-6));
  decision.correction = update.offset;
  decision.slew_duration = Duration::from_seconds(duration_s);
  if (decision.slew_duration <= Duration{}) decision.slew_duration = Duration::from_ns(1);
  return decision;
}

void EstimateServo::sync_lost() { policy_.reset(); }

}  // namespace taid::servo
