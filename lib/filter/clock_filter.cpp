// RFC 5905 §10 clock filter: shift register, min-delay pick, dispersion and jitter.
#include "filter/clock_filter.hpp"

#include <algorithm>
#include <cmath>

#include "filter/local_clock_change.hpp"

namespace taid::filter {

Duration dispersion_growth(Duration age) {
  if (age.ns() <= 0) return Duration{};
  return Duration::from_seconds(kPhi * age.seconds());
}

std::optional<Estimate> ClockFilter::add(Duration offset, Duration delay, Duration dispersion,
                                         UtcTime time, Duration precision, Duration poll) {
  precision_ = precision;
  poll_ = poll;
  shift_in(Stage{offset, delay, std::min(dispersion, kMaxDispersion), time, true});
  return evaluate();
}

void ClockFilter::add_dummy(UtcTime time) {
  shift_in(Stage{Duration{}, Duration{}, kMaxDispersion, time, false});
  evaluate();
}

void ClockFilter::shift_in(const Stage& stage) {
  // A second measurement of the instant the newest stage holds (interleaved mode re-measures
  // the previous exchange with the server's real transmit stamp) replaces it: one exchange,
  // one stage.
  if (stage.valid && stages_[0].valid && stage.time == stages_[0].time) {
    stages_[0] = stage;
    return;
  }
  // Age every stage already held by the time since the register last changed. Samples can
  // arrive slightly out of time order (an interleaved sample carries the previous T4, after a
  // dummy stamped at poll time), so the register's clock never runs backwards.
  const Duration growth = last_update_ ? dispersion_growth(stage.time - *last_update_) : Duration{};
  for (std::size_t i = kStages - 1; i > 0; --i) {
    stages_[i] = stages_[i - 1];
    stages_[i].dispersion = std::min(stages_[i].dispersion + growth, kMaxDispersion);
  }
  stages_[0] = stage;
  last_update_ = last_update_ ? std::max(*last_update_, stage.time) : stage.time;
}

ClockFilter::Summary ClockFilter::summarize() {
  // Sort by delay. The RFC's pseudo-code sorts on delay alone; dummy and empty stages carry
  // delay 0, so like ntpd's reference code we rank every invalid stage after the valid ones.
  std::array<const Stage*, kStages> order{};
  for (std::size_t i = 0; i < kStages; ++i) order[i] = &stages_[i];
  std::stable_sort(order.begin(), order.end(), [](const Stage* a, const Stage* b) {
    if (a->valid != b->valid) return a->valid;
    return a->delay < b->delay;
  });

  double dispersion_s = 0;
  for (std::size_t i = 0; i < kStages; ++i)
    dispersion_s += order[i]->dispersion.seconds() / static_cast<double>(1U << (i + 1));
  peer_dispersion_ = std::min(Duration::from_seconds(dispersion_s), kMaxDispersion);

  const Stage& best = *order[0];
  std::size_t valid = 0;
  double sum_sq = 0;
  for (const Stage* s : order) {
    if (!s->valid) continue;
    ++valid;
    const double d = (s->offset - best.offset).seconds();
    sum_sq += d * d;
  }
  jitter_ = valid > 1 ? Duration::from_seconds(std::sqrt(sum_sq / static_cast<double>(valid - 1)))
                      : Duration{};
  jitter_ = std::max(jitter_, precision_);
  return {&best, valid};
}

std::optional<Estimate> ClockFilter::evaluate() {
  const auto [best_stage, valid] = summarize();
  const Stage& best = *best_stage;
  if (estimate_) {
    estimate_->dispersion = peer_dispersion_;
    estimate_->jitter = jitter_;
    estimate_->error_bound += dispersion_growth(*last_update_ - estimate_->updated);
    estimate_->updated = *last_update_;
  }
  if (!best.valid) return std::nullopt;
  // Use a sample only once and never one older than the last used.
  if (last_released_time_ && best.time <= *last_released_time_) return std::nullopt;
  // Popcorn spike (RFC 5905 A.5.2; ntpd's clock_filter): a jump from the last released offset
  // beyond SGATE × jitter, soon after that release, is held back. With one valid stage the
  // jitter is only the precision floor and says nothing of the spread, so ntpd (m > 1) and we
  // let it through; so does a jump that two polls have not confirmed as a spike.
  if (estimate_ && valid > 1 &&
      (best.offset - estimate_->offset).abs().seconds() > kSpikeGate * jitter_.seconds() &&
      best.time - *last_released_time_ < poll_ * 2) {
    ++spikes_;
    return std::nullopt;
  }
  last_released_time_ = best.time;
  estimate_ = Estimate{best.offset,
                       best.delay,
                       peer_dispersion_,
                       jitter_,
                       best.time,
                       *last_update_,
                       best.delay / 2 + best.dispersion};
  return estimate_;
}

void ClockFilter::correct_for_local_clock(UtcTime when, double dfrequency, Duration doffset,
                                       Duration scale_shift) {
  const LocalClockChange change{when, dfrequency, doffset, scale_shift};
  // A stage keeps only T4 and δ; its T1 is taken as T4 − δ, the server's turnaround (T3 − T2,
  // microseconds as a rule, 4 s at most) being unknown here. That puts its offset off by
  // turnaround × dfrequency / 2 (5 ps for 10 µs at 1 ppm) and its delay by twice that; a step
  // alone (dfrequency = 0) is exact. Dummy and empty stages hold no measurement, and their times
  // are never compared, so they stay as they are. Dispersion is no measurement of the local
  // clock either: it keeps what it has accrued.
  const auto remeasured = [&](Duration offset, Duration delay, UtcTime received) {
    return remeasure(change, offset, delay, received - delay, received);
  };
  for (Stage& s : stages_) {
    if (!s.valid) continue;
    const Remeasured r = remeasured(s.offset, s.delay, s.time);
    s.offset = r.offset;
    s.delay = r.delay;
    s.time = r.received;
  }
  if (last_update_) last_update_ = change.map(*last_update_);
  if (last_released_time_) last_released_time_ = change.map(*last_released_time_);
  // The released estimate is remeasured from its own fields (its stage may have left the
  // register), so the popcorn suppressor compares the next pick with what the new clock would
  // have released; its error bound follows its delay.
  if (estimate_) {
    const Remeasured r = remeasured(estimate_->offset, estimate_->delay, estimate_->time);
    estimate_->error_bound += (r.delay - estimate_->delay) / 2;
    estimate_->offset = r.offset;
    estimate_->delay = r.delay;
    estimate_->time = r.received;
    estimate_->updated = change.map(estimate_->updated);
  }
  // Jitter (about the best stage, the suppressor's yardstick) and peer dispersion (over the
  // stages in delay order) of the remeasured register; nothing is released here.
  summarize();
  if (estimate_) {
    estimate_->dispersion = peer_dispersion_;
    estimate_->jitter = jitter_;
  }
}

std::size_t ClockFilter::valid_stages() const {
  return static_cast<std::size_t>(
      std::count_if(stages_.begin(), stages_.end(), [](const Stage& s) { return s.valid; }));
}

std::optional<Duration> ClockFilter::error_bound_at(UtcTime now) const {
  if (!estimate_) return std::nullopt;
  return estimate_->error_bound + dispersion_growth(now - estimate_->updated);
}

Duration ClockFilter::dispersion_at(UtcTime now) const {
  if (!last_update_) return kMaxDispersion;
  return std::min(peer_dispersion_ + dispersion_growth(now - *last_update_), kMaxDispersion);
}

}  // namespace taid::filter
