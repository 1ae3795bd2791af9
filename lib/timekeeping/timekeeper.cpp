// The timekeeping core: selection over the sources' estimates, the servo's decision turned into
// clock actions, the sync state, and the correction of every source's history for what taid
// did to the clock.
#include "timekeeping/timekeeper.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "core/strcat.hpp"
#include "servo/step_policy.hpp"

namespace taid::timekeeping {

namespace {

// How much of the RMS offset a new update carries (chrony's tracking RMS is a running average).
constexpr double kRmsWeight = 1.0 / 8;
// The largest frequency error an offset between two updates is taken as (see on_source_event).
constexpr double kMaxFllFrequency = 100e-6;
// Before a first update the bound is the RFC's MAXDISP: nothing is known.
constexpr Duration kUnknownBound = Duration::from_s(16);

}  // namespace

struct Timekeeper::Impl {
  struct Entry {
    ntp::SourceConfig config;
    selection::Options options;
    std::function<uint64_t()> random_u64;
    std::unique_ptr<ntp::Exchange> exchange;
    selection::Mark mark = selection::Mark::unusable;
    uint64_t samples_used = 0;  // the exchange's sample count at the last update it took part in
    // The time of the estimate the last update took from this source (cooked scale).
    std::optional<UtcTime> used_time;
  };
  std::map<SourceId, Entry> sources;
  SourceId next_id = 1;
  std::unique_ptr<servo::Servo> servo;

  double applied_ppb = 0;  // what the driver last applied (base + slew)
  double base_ppb = 0;     // the servo's base frequency
  // The base frequency the cooked scale runs at as applied (what the sources' histories are
  // relative to): the applied frequency less the slew's extra.
  double cooked_base_ppb = 0;
  // The slew in progress, in raw local time: `total` to correct from `start` by running
  // `rate` (s/s) faster than the base `base` (s/s) until `end`; `ended` once the extra was taken
  // off (a late timer overshoots: what is left then is negative and stays until the next slew).
  struct Slew {
    UtcTime start;
    UtcTime end;
    Duration total;
    double rate = 0;
    double base = 0;
    std::optional<UtcTime> ended;
  };
  std::optional<Slew> slew;
  // What of the next step the histories have already: a step also carries out what the slew had
  // still to do (they had it, cooked), and a leap step was a move of the time scale (done at once).
  Duration step_includes_slew;

  Duration still_to_slew(UtcTime raw) const {
    if (!slew) return {};
    if (raw <= slew->start) return slew->total;
    const UtcTime until = slew->ended ? std::min(raw, *slew->ended) : raw;
    // The raw clock runs at 1 + base + rate, the cooked one at 1 + base.
    const double done_s =
        (until - slew->start).seconds() * slew->rate / (1 + slew->base + slew->rate);
    return slew->total - Duration::from_seconds(done_s);
  }
  double slew_ppb() const { return slew && !slew->ended ? slew->rate * 1e9 : 0; }

  std::optional<std::size_t> previous_peer;  // index into the last candidate list
  std::vector<SourceId> previous_ids;        // ids of that candidate list
  std::string last_reason;
  double rms_sq = 0;
  bool any_update = false;
  bool announce_sync = false;
  std::optional<double> last_fll;  // the previous update's offset / interval, s/s

  LeapSchedule leap{LeapMode::system, 0};
  LeapVote last_vote;  // the selected sources' LI at the last source event
  int64_t last_vote_day = 0;  // the UTC day (days since 1970) it was taken on
  // (realtime − monotonic) of the last stamp cooked: a kernel leap second moves it by ∓1 s.
  std::optional<Duration> realtime_minus_monotonic;
  // What cook() found (it cannot emit actions): the kernel's leap, to log and account for in the
  // tracking at the next event.
  std::optional<int> kernel_leap_seen;
  Duration last_update_shift;
  bool announced_drop = false;
};

Timekeeper::Timekeeper(Settings settings, double frequency_ppb)
    : impl_(std::make_unique<Impl>()), settings_(std::move(settings)) {
  impl_->servo = servo::make_servo(settings_.servo_kind, settings_.servo);
  impl_->applied_ppb = frequency_ppb;
  impl_->base_ppb = frequency_ppb;
  impl_->cooked_base_ppb = frequency_ppb;
  tracking_.frequency_ppb = frequency_ppb;
  tracking_.error_bound = kUnknownBound;
  impl_->leap = LeapSchedule(settings_.leap_mode, settings_.kernel_tai_offset_s);
  impl_->leap.set_table(settings_.leap_table, settings_.leap_table_note);
  update_leap_tracking();
}

Timekeeper::~Timekeeper() = default;

Actions Timekeeper::start(UtcTime now) {
  Actions actions;
  if (settings_.observe_only) {
    leap_actions(now, impl_->last_vote);  // only what taid vouches for: nothing is set
    return actions;
  }
  if (settings_.initial_frequency_ppb) {
    impl_->base_ppb = servo::clamp_frequency(*settings_.initial_frequency_ppb, settings_.servo);
    actions.push_back(SetFrequency{impl_->base_ppb});
    actions.push_back(LogLine{false, strcat("starting at the drift file's frequency ",
                                            impl_->base_ppb / 1000, " ppm")});
  }
  actions.push_back(SetSyncStatus{{false, kUnknownBound, kUnknownBound}});
  for (Action& a : leap_actions(now, impl_->last_vote)) actions.push_back(std::move(a));
  actions.push_back(SetTimer{kInterferenceCheck});
  return actions;
}

SourceId Timekeeper::add_source(ntp::SourceConfig config, selection::Options options,
                                std::function<uint64_t()> random_u64) {
  const SourceId id = impl_->next_id++;
  auto exchange = std::make_unique<ntp::Exchange>(config, random_u64);
  impl_->sources.emplace(id, Impl::Entry{std::move(config), options, std::move(random_u64),
                                         std::move(exchange), selection::Mark::unusable, 0,
                                         std::nullopt});
  return id;
}

void Timekeeper::restart_source(SourceId id, ntp::SourceConfig config) {
  auto& entry = impl_->sources.at(id);
  entry.config = std::move(config);
  // Assigned in place, so references the daemon holds stay valid.
  *entry.exchange = ntp::Exchange(entry.config, entry.random_u64);
  entry.samples_used = 0;
  entry.used_time.reset();
  entry.mark = selection::Mark::unusable;
}

ntp::Exchange& Timekeeper::exchange(SourceId id) { return *impl_->sources.at(id).exchange; }
const ntp::Exchange& Timekeeper::exchange(SourceId id) const {
  return *impl_->sources.at(id).exchange;
}

std::vector<SourceView> Timekeeper::sources() const {
  std::vector<SourceView> views;
  for (const auto& [id, entry] : impl_->sources)
    views.push_back({id, entry.exchange.get(), entry.options, entry.mark});
  return views;
}

// A source's estimate as selection and the servo use it.
struct SourceEstimate {
  Duration offset;  // at `now`
  Duration root_distance;
  Duration root_delay;
  Duration root_dispersion;
  Duration jitter;
  std::optional<double> frequency;  // residual, s/s
  double skew = 0;
  uint8_t stratum = 16;
  uint32_t reference_id = 0;
  ntp::Leap leap = ntp::Leap::none;  // the last sample's LI
  UtcTime leap_time;                 // that sample's time
  // The slope between the two newest samples (corrected like the rest, so relative to the
  // frequency applied now), s/s: a residual frequency from two points, whichever sample the
  // filter picks; nullopt with fewer than two.
  std::optional<double> pair_frequency;
  // Its uncertainty, s/s, from the two samples' delays alone: on a symmetric path an offset is
  // off by at most half its delay's excess over the register's least delay, so the slope by at
  // most the two halves over the interval. Unlike the jitter, it does not grow with the drift
  // (the slope of a clock 5 % off is still told apart from noise).
  double pair_skew = 0;
  UtcTime time;  // of the offset (cooked)
};

namespace {

// `used`: the time of the estimate the last update took from this source.
std::optional<SourceEstimate> estimate_of(const ntp::Exchange& exchange, UtcTime now,
                                          std::optional<UtcTime> used) {
  const auto& status = exchange.status();
  const auto& picked = exchange.filter().estimate();
  if (status.state != ntp::SourceState::reachable || !picked || !status.last_sample)
    return std::nullopt;
  auto offset = exchange.offset_estimate();
  if (!offset) return std::nullopt;
  const ntp::Sample& last = *status.last_sample;
  SourceEstimate e;
  e.offset = offset->offset;
  e.time = offset->time;
  e.jitter = picked->jitter;
  e.root_delay = last.root_delay + picked->delay;
  // The source's own part of the root dispersion: the chosen sample's dispersion (stamp
  // precision and PHI for its age), not RFC 5905's register-wide ε, which counts each empty
  // stage as MAXDISP and so gives a new source seconds of distance: five sources 1 s apart
  // would all agree for their first polls, and the first liars to answer could win (chrony
  // too judges a source by its own statistics). The jitter is added as the RFC does.
  const Duration stage_dispersion =
      std::max(exchange.filter().error_bound_at(now).value_or(picked->delay / 2) -
                   picked->delay / 2,
               Duration{});
  e.root_dispersion = last.root_dispersion + stage_dispersion + picked->jitter;
  e.root_distance = e.root_delay / 2 + e.root_dispersion;
  e.stratum = last.stratum;
  e.reference_id = last.reference_id;
  const filter::Stage* newest = nullptr;
  const filter::Stage* before = nullptr;
  std::optional<Duration> least_delay;
  for (const filter::Stage& stage : exchange.filter().stages()) {
    if (!stage.valid) continue;
    least_delay = std::min(least_delay.value_or(stage.delay), stage.delay);
    if (!newest || stage.time > newest->time) {
      before = newest;
      newest = &stage;
    } else if (!before || stage.time > before->time) {
      before = &stage;
    }
  }
  if (newest && before && newest->time > before->time) {
    const double interval_s = (newest->time - before->time).seconds();
    e.pair_frequency = (newest->offset - before->offset).seconds() / interval_s;
    const Duration excess = (newest->delay - *least_delay) + (before->delay - *least_delay);
    e.pair_skew = std::max(excess.seconds() / 2, 1e-9) / interval_s;
  }
  // A clock-filter pick the last update already used (the minimum-delay sample may stay the
  // pick for eight polls) says nothing new, and remapped along our corrections it reads what
  // they assumed rather than what the clock did since: the delay envelope's newer fit speaks
  // instead, or the newest sample while the envelope has none.
  const auto& fit = exchange.envelope().estimate();
  if (offset->estimator == std::string_view("clock_filter") && used && offset->time <= *used) {
    if (fit && fit->time > *used) {
      e.offset = fit->offset;
      e.time = fit->time;
    } else if (newest && newest->time > *used) {
      e.offset = newest->offset;
      e.time = newest->time;
    }
  }
  e.leap = last.leap;
  e.leap_time = last.time;
  if (const auto& envelope = exchange.envelope().estimate()) {
    e.frequency = envelope->frequency;
    // Every offset refers to its own sample's time (the pick's may be polls old): carry it to
    // `now` along the residual frequency.
    e.offset = e.offset + Duration::from_seconds(envelope->frequency * (now - e.time).seconds());
    // Its frequency's uncertainty, as a regression's over the same window would be (the
    // envelope does better; this errs on the safe side): σ √(12/n) / span, σ the queueing.
    const double span_s = std::max(envelope->span.seconds(), 1e-3);
    const double sigma_s = std::max(envelope->mean_excess.seconds(), 1e-9);
    e.skew = sigma_s * std::sqrt(12.0 / static_cast<double>(envelope->samples)) / span_s;
  }
  return e;
}

}  // namespace

ntp::LocalTimestamp Timekeeper::cook(ntp::LocalTimestamp raw) const {
  if (raw.monotonic) {
    const Duration rm = Duration::from_ns(raw.time.unix_ns() - raw.monotonic->ns());
    const int armed = impl_->leap.armed();
    if (impl_->realtime_minus_monotonic && armed != 0 && impl_->leap.mode() == LeapMode::system &&
        !settings_.observe_only && impl_->leap.near_leap(raw.time)) {
      // The kernel's step is −1 s for an insertion, +1 s for a deletion; a stamp's pair of
      // readings is good to far better than 0.2 s.
      const Duration jump = rm - *impl_->realtime_minus_monotonic;
      if ((jump + Duration::from_s(armed)).abs() < Duration::from_ms(200)) kernel_leap_seen(armed);
    }
    impl_->realtime_minus_monotonic = rm;
  }
  const Duration left = impl_->still_to_slew(raw.time);
  raw.time = raw.time + left;
  if (raw.monotonic) *raw.monotonic += left;
  return raw;
}

void Timekeeper::kernel_leap_seen(int direction) const {
  // Every stamp so far was taken before the kernel's step: all move by it. The servers' UTC
  // moved alike, so no offset changes (chrony's LCL_NotifyLeap).
  const Duration shift = Duration::from_s(-direction);
  for (auto& [id, entry] : impl_->sources) {
    entry.exchange->shift_time_scale(shift, shift, ntp::Exchange::OffsetKind::step);
    if (entry.used_time) *entry.used_time = *entry.used_time + shift;
  }
  impl_->last_update_shift += shift;
  impl_->leap.on_leap_done(direction);
  impl_->kernel_leap_seen = direction;
}

Actions Timekeeper::on_kernel_leap(UtcTime now, int direction) {
  Actions actions;
  if (impl_->leap.armed() == direction) {
    kernel_leap_seen(direction);
  } else if (!impl_->kernel_leap_seen && impl_->leap.armed() == 0 &&
             !impl_->leap.near_leap(now)) {
    // Not ours: someone else armed the kernel. Still a step of every history, and a TAI change.
    actions.push_back(LogLine{true, strcat("the kernel carried out a leap second taid did not arm (",
                                           direction > 0 ? "insertion" : "deletion", ")")});
    kernel_leap_seen(direction);
  }
  for (Action& a : leap_actions(now + impl_->still_to_slew(now), impl_->last_vote))
    actions.push_back(std::move(a));
  return actions;
}

const std::optional<timescale::LeapTable>& Timekeeper::leap_table() const {
  return impl_->leap.table();
}

double Timekeeper::drift_ppb() const {
  // The residual frequency too, steering or not: under -x the clock keeps it; when steering, the
  // servo's correction of it is itself an estimate (after estimators restart, a young one: a
  // simulated foreign step showed the clock 13 ppm off for a while with skew + maxclockerror at 7).
  return settings_.max_clock_error_ppm * 1000 + tracking_.skew_ppb +
         std::abs(tracking_.residual_frequency_ppb);
}

Duration Timekeeper::still_to_slew(UtcTime now) const { return impl_->still_to_slew(now); }

Duration Timekeeper::error_bound_at(UtcTime now) const {
  if (!tracking_.last_update) return tracking_.error_bound;
  const double age_s = std::max((now - *tracking_.last_update).seconds(), 0.0);
  return tracking_.error_bound + Duration::from_ns(static_cast<int64_t>(std::ceil(drift_ppb() * age_s)));
}

SigningVerdict Timekeeper::signing_time(UtcTime now, Duration max_bound) const {
  using Why = SigningRefusal::Why;
  if (!tracking_.synchronized)
    return SigningRefusal{Why::unsynchronized,
                          strcat("not synchronized", tracking_.no_selection_reason.empty()
                                                         ? std::string()
                                                         : ": " + tracking_.no_selection_reason)};
  if (tracking_.disrupted)
    return SigningRefusal{Why::unsynchronized,
                          "the clock was changed behind taid's back; waiting for the next update"};
  if (impl_->leap.near_leap(now))
    return SigningRefusal{Why::tai_unvouched, "TAI - UTC not vouched for: within 2 s of a leap second"};
  const auto& table = impl_->leap.table();
  // The table speaks for today (the day may have changed since the last source event).
  const int64_t now_s = floor_div(now.unix_ns(), int64_t{1000000000});
  const auto offset = table && table->covers(now_s) ? table->offset_at(now_s) : std::nullopt;
  if (!offset)
    return SigningRefusal{Why::tai_unvouched, strcat("TAI - UTC not vouched for: ", tracking_.tai_note)};
  // The core's best time: the clock plus what it has still to slew out (the cooked scale, which
  // the bound is of), not the raw reading, which is off by the slew's remainder.
  const UtcTime best = now + impl_->still_to_slew(now);
  const Duration bound = std::max(error_bound_at(now), Duration::from_ns(1));
  if (bound > max_bound)
    return SigningRefusal{Why::bound_too_large,
                          strcat("error bound ", bound.to_string(), " exceeds maxsignbound ",
                                 max_bound.to_string())};
  SigningTime time;
  time.tai_ns = best.unix_ns() + int64_t{*offset} * 1000000000;
  time.bound = bound;
  time.leap = tracking_.leap_armed;
  time.measured = settings_.observe_only;
  return time;
}

void Timekeeper::on_interference(UtcTime now) {
  impl_->leap.on_clock_stepped(now);
  tracking_.disrupted = true;
}

void Timekeeper::set_leap_table(std::optional<timescale::LeapTable> table, std::string note) {
  impl_->leap.set_table(std::move(table), std::move(note));
  update_leap_tracking();
}

ntp::Actions Timekeeper::on_packet(SourceId id, std::span<const uint8_t> bytes,
                                   ntp::LocalTimestamp rx) {
  if (impl_->leap.near_leap(rx.time)) {
    // Counted as an answer (the source stays reachable, the clock synchronized), not measured.
    ++tracking_.replies_dropped_near_leap;
    ntp::Actions actions = exchange(id).on_packet(bytes, rx, ntp::Exchange::SampleUse::discard);
    if (!impl_->announced_drop)
      actions.push_back(ntp::LogLine{false, strcat("replies within ",
                                                   LeapSchedule::kLeapClose.seconds(),
                                                   " s of the leap second are not measured")});
    impl_->announced_drop = true;
    return actions;
  }
  impl_->announced_drop = false;
  return exchange(id).on_packet(bytes, rx);
}

void Timekeeper::update_leap_tracking() {
  const LeapSchedule& leap = impl_->leap;
  tracking_.tai_offset_s = leap.kernel_tai_offset_s();
  tracking_.tai_vouched = leap.vouched();
  tracking_.table_tai_offset_s = leap.known_offset();
  tracking_.tai_note = leap.tai_note();
  tracking_.leap_table = leap.table() ? leap.table()->origin : leap.table_note();
  tracking_.leap_mode = leap.mode();
  tracking_.leap_armed = leap.armed();
  tracking_.leap_at = leap.due_at();
  tracking_.leap_from = std::string(leap.armed_from());
}

Actions Timekeeper::leap_actions(UtcTime now, const LeapVote& vote) {
  Actions actions;
  if (impl_->last_update_shift != Duration{}) {
    if (tracking_.last_update) tracking_.last_update = *tracking_.last_update + impl_->last_update_shift;
    impl_->last_update_shift = Duration{};
  }
  if (impl_->kernel_leap_seen) {
    const int direction = *impl_->kernel_leap_seen;
    impl_->kernel_leap_seen.reset();
    ++tracking_.leap_seconds;
    actions.push_back(LogLine{false, strcat("the kernel ", direction > 0 ? "inserted" : "deleted",
                                            " the leap second; TAI offset now ",
                                            impl_->leap.kernel_tai_offset_s(), " s")});
  }
  const int armed_before = impl_->leap.armed();
  // A vote taken yesterday (the last source event before midnight) says nothing about tonight.
  LeapVote today_vote = vote;
  if (floor_div(now.unix_ns(), int64_t{86400} * 1000000000) != impl_->last_vote_day)
    today_vote.insert = today_vote.delete_ = 0;
  const auto step =
      impl_->leap.update(now, tracking_.synchronized, today_vote, settings_.observe_only);
  if (step.set_tai_offset_s) actions.push_back(SetTaiOffset{*step.set_tai_offset_s});
  if (step.arm)
    actions.push_back(SetLeap{*step.arm > 0   ? clock::LeapState::insert
                              : *step.arm < 0 ? clock::LeapState::delete_
                                              : clock::LeapState::none});
  if (!step.log.empty()) actions.push_back(LogLine{step.log_is_warning, step.log});
  update_leap_tracking();
  if ((impl_->leap.armed() != armed_before || step.arm) && !settings_.observe_only)
    actions.push_back(SetTimer{next_wake(now - impl_->still_to_slew(now))});
  return actions;
}

Duration Timekeeper::next_wake(UtcTime now) const {
  Duration next = kInterferenceCheck;
  if (impl_->slew && !impl_->slew->ended) next = std::min(next, impl_->slew->end - now);
  if (const auto rearm = impl_->leap.rearm_at())
    next = std::min(next, std::max(*rearm - (now + impl_->still_to_slew(now)), Duration::from_ms(1)));
  if (impl_->leap.armed() != 0 && impl_->leap.due_at()) {
    // At the midnight (the core's own leap); under `system` just after it, to take the kernel's
    // leap from the driver even when no stamp has shown it yet.
    Duration until = *impl_->leap.due_at() - (now + impl_->still_to_slew(now));
    if (impl_->leap.mode() == LeapMode::system) until += Duration::from_ms(100);
    next = std::min(next, std::max(until, Duration::from_ms(1)));
  }
  return std::max(next, Duration::from_us(1));
}

Actions Timekeeper::carry_out_leap(UtcTime now) {
  Actions actions;
  LeapSchedule& leap = impl_->leap;
  const int direction = leap.armed();
  const UtcTime cooked_now = now + impl_->still_to_slew(now);
  if (direction == 0 || leap.mode() == LeapMode::system || !leap.due_at() ||
      cooked_now < *leap.due_at())
    return actions;
  const int32_t tai = leap.kernel_tai_offset_s() + direction;
  const Duration correction = Duration::from_s(-direction);
  const std::string what = direction > 0 ? "(insertion)" : "(deletion)";
  switch (leap.mode()) {
    case LeapMode::step:
      // CLOCK_REALTIME steps, CLOCK_TAI does not: one call. The servers' UTC stepped alike, so
      // the histories move in time only, now; on_stepped then has nothing left to move.
      for (auto& [sid, other] : impl_->sources) {
        other.exchange->shift_time_scale(correction, correction, ntp::Exchange::OffsetKind::step);
        if (other.used_time) *other.used_time = *other.used_time + correction;
      }
      impl_->step_includes_slew = correction;
      actions.push_back(StepClock{correction, tai});
      actions.push_back(LogLine{false, strcat("leap second ", what, ": clock stepped by ",
                                              correction.to_string(), ", TAI offset ", tai, " s")});
      ++tracking_.steps;
      break;
    case LeapMode::slew: {
      // Done at once in the cooked scale, slewed out by the clock at maxslewrate.
      actions.push_back(SetTaiOffset{tai});
      for (auto& [sid, other] : impl_->sources) {
        other.exchange->shift_time_scale(correction, correction,
                                         ntp::Exchange::OffsetKind::slewed);
        if (other.used_time) *other.used_time = *other.used_time + correction;
      }
      const Duration total = impl_->still_to_slew(now) + correction;
      const double base = impl_->base_ppb * 1e-9;
      const double max_rate = settings_.servo.max_slew_rate_ppm * 1e-6;
      const double limit = settings_.max_frequency_ppb * 1e-9;
      double rate = total < Duration{} ? -max_rate : max_rate;
      rate = std::clamp(base + rate, -limit, limit) - base;
      const Duration duration = Duration::from_seconds(total.seconds() * (1 + base + rate) / rate);
      impl_->slew = Impl::Slew{now, now + duration, total, rate, base, std::nullopt};
      actions.push_back(SetFrequency{impl_->base_ppb + rate * 1e9});
      actions.push_back(LogLine{false, strcat("leap second ", what, ": slewing ",
                                              correction.to_string(), " out over ",
                                              duration.to_string(), ", TAI offset ", tai, " s")});
      break;
    }
    case LeapMode::ignore:
      // The servers' scale moved, the clock did not: every history's offsets move by the leap,
      // so the sources agree at once that the clock is a second off, and the servo corrects it.
      for (auto& [sid, other] : impl_->sources)
        other.exchange->shift_time_scale(Duration{}, correction, ntp::Exchange::OffsetKind::step);
      actions.push_back(SetTaiOffset{tai});
      actions.push_back(LogLine{true, strcat("leap second ", what,
                                             " ignored (leapsecmode ignore): the clock is ",
                                             Duration::from_s(direction).to_string(),
                                             " off UTC until the servo corrects it; TAI offset ",
                                             tai, " s")});
      break;
    case LeapMode::system:
      break;
  }
  leap.on_leap_done(direction);
  ++tracking_.leap_seconds;
  update_leap_tracking();
  return actions;
}

Actions Timekeeper::on_source_event(SourceId id, UtcTime now) {
  Actions actions = source_event(id, now);
  for (Action& a : leap_actions(now + impl_->still_to_slew(now), impl_->last_vote))
    actions.push_back(std::move(a));
  return actions;
}

Actions Timekeeper::source_event(SourceId id, UtcTime now) {
  Actions actions;
  const UtcTime cooked_now = now + impl_->still_to_slew(now);
  // Selection over every source.
  std::vector<SourceId> ids;
  std::vector<std::optional<SourceEstimate>> estimates;
  std::vector<selection::Candidate> candidates;
  for (const auto& [sid, entry] : impl_->sources) {
    ids.push_back(sid);
    estimates.push_back(estimate_of(*entry.exchange, cooked_now, entry.used_time));
    selection::Candidate c;
    c.options = entry.options;
    const auto& status = entry.exchange->status();
    c.pending = (status.state == ntp::SourceState::init ||
                 status.state == ntp::SourceState::reachable) &&
                status.requests_sent <= static_cast<uint64_t>(ntp::kBurstCount);
    if (const auto& e = estimates.back()) {
      c.usable = true;
      c.offset = e->offset;
      c.root_distance = e->root_distance;
      c.jitter = e->jitter;
      c.stratum = e->stratum;
    }
    candidates.push_back(c);
  }
  std::optional<std::size_t> previous;
  if (tracking_.reference) {
    const auto it = std::find(ids.begin(), ids.end(), *tracking_.reference);
    if (it != ids.end()) previous = static_cast<std::size_t>(it - ids.begin());
  }
  const selection::Result result = selection::select(candidates, settings_.selection, previous);
  for (std::size_t i = 0; i < ids.size(); ++i) impl_->sources.at(ids[i]).mark = result.marks[i];
  // The selected sources' word on a leap second tonight: an estimate from an earlier UTC day
  // (a poll ago, across midnight) says nothing about tonight.
  LeapVote vote;
  const int64_t today = floor_div(cooked_now.unix_ns(), int64_t{86400} * 1000000000);
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (!result.system_peer || result.weights[i] <= 0 || !estimates[i]) continue;
    ++vote.selected;
    if (floor_div(estimates[i]->leap_time.unix_ns(), int64_t{86400} * 1000000000) != today)
      continue;
    if (estimates[i]->leap == ntp::Leap::add_second) ++vote.insert;
    if (estimates[i]->leap == ntp::Leap::delete_second) ++vote.delete_;
  }
  impl_->last_vote = vote;
  impl_->last_vote_day = today;

  if (!result.system_peer) {
    tracking_.no_selection_reason = result.reason;
    if (result.reason != impl_->last_reason) {
      impl_->last_reason = result.reason;
      actions.push_back(LogLine{true, strcat("cannot synchronise: ", result.reason)});
    }
    if (tracking_.synchronized) {
      // chrony: no selectable source makes the clock unsynchronised (STA_UNSYNC, LI 3). The
      // frequency stays; a slew in progress runs out.
      tracking_.synchronized = false;
      tracking_.reference.reset();
      tracking_.stratum = 16;
      tracking_.leap = ntp::Leap::unsynchronized;
      actions.push_back(SetSyncStatus{{false, kUnknownBound, kUnknownBound}});
      actions.push_back(LogLine{true, "clock unsynchronised: no source can be selected"});
      impl_->servo->sync_lost();
    }
    return actions;
  }
  if (!impl_->last_reason.empty()) {
    impl_->last_reason.clear();
    tracking_.no_selection_reason.clear();
  }

  // The clock is updated when a combined source brought a sample it has not used yet.
  const auto self = std::find(ids.begin(), ids.end(), id);
  if (self == ids.end()) return actions;
  const std::size_t index = static_cast<std::size_t>(self - ids.begin());
  auto& entry = impl_->sources.at(id);
  const uint64_t samples = entry.exchange->status().samples;
  if (result.weights[index] <= 0 || samples == entry.samples_used) return actions;
  for (std::size_t i = 0; i < ids.size(); ++i)
    if (result.weights[i] > 0) {
      auto& used = impl_->sources.at(ids[i]);
      used.samples_used = used.exchange->status().samples;
      used.used_time = estimates[i]->time;
    }

  // The combined estimate.
  const std::size_t peer = *result.system_peer;
  const SourceEstimate& pe = *estimates[peer];
  double frequency = 0, frequency_weight = 0, skew_sq = 0;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (result.weights[i] <= 0 || !estimates[i]->frequency) continue;
    frequency += result.weights[i] * *estimates[i]->frequency;
    frequency_weight += result.weights[i];
    skew_sq += result.weights[i] * estimates[i]->skew * estimates[i]->skew;
  }
  servo::Update update;
  update.now = now;
  // The clock's whole error: what the sources measure in the cooked scale plus what the slew
  // in progress has still to do. The servo decides for all of it (chrony's offset register):
  // deciding for the measured part alone and adding the rest to the new slew would spread an
  // old remainder over the short correction time of a small new offset — a crawl.
  const Duration left = impl_->still_to_slew(now);
  update.offset = result.offset + left;
  update.offset_sd = std::max(result.jitter, Duration::from_ns(1));
  // (Never zero or negative: a step by someone else moves `now` before we know of it.)
  if (tracking_.last_update && now > *tracking_.last_update)
    update.since_last = now - *tracking_.last_update;
  if (frequency_weight > 0) {
    update.residual_frequency = frequency / frequency_weight;
    update.skew = std::sqrt(skew_sq / frequency_weight);
  } else if (pe.pair_frequency && !settings_.observe_only) {
    // No source has a frequency (an estimator started over, or too few samples yet): the slope
    // between the system peer's two newest samples (an FLL), if it is no more than
    // kMaxFllFrequency — beyond that it is more likely a step (someone stepped the clock or the
    // source) than an oscillator's drift — or if two updates in a row agree within a quarter
    // (a step does not repeat itself): a clock 5 % off is caught in the burst.
    const double fll = *pe.pair_frequency;
    const bool repeated = impl_->last_fll && (*impl_->last_fll > 0) == (fll > 0) &&
                          std::abs(fll - *impl_->last_fll) <= std::abs(fll) / 4;
    if (std::abs(fll) <= kMaxFllFrequency || repeated) {
      update.residual_frequency = fll;
      // As good as the two samples' delays allow (pair_skew), and a repeated slope no better
      // than its two disagree: two slopes of noise agree within a quarter often enough (after a
      // foreign step, two 2 s slopes once claimed 3 ppm between them, refuted a base frequency
      // known to 0.1 ppm and set it 17 ppm off).
      update.skew = repeated ? std::max({std::abs(fll - *impl_->last_fll), pe.pair_skew, 1e-7})
                             : pe.pair_skew;
    }
    impl_->last_fll = fll;
  } else {
    impl_->last_fll.reset();
  }
  if (settings_.observe_only) {
    // Measured, never corrected: the offset is the clock's error as it stands.
    record_update(update, result, ids[peer], pe, servo::State::unlocked, false);
    return actions;
  }
  const servo::Decision decision = impl_->servo->update(update, impl_->cooked_base_ppb);

  if (decision.kind == servo::Decision::Kind::stop) {
    actions.push_back(LogLine{true, decision.reason});
    actions.push_back(Stop{decision.reason});
    return actions;
  }
  if (decision.kind == servo::Decision::Kind::ignore) {
    actions.push_back(LogLine{true, decision.reason});
    return actions;
  }

  impl_->base_ppb = decision.frequency_ppb;
  // The part of the correction the cooked scale has not credited yet (the rest is the slew's
  // remainder, credited when that slew was decided).
  const Duration fresh = decision.correction - left;
  if (decision.kind == servo::Decision::Kind::step) {
    // The step does what the slew had left too.
    impl_->slew.reset();
    impl_->step_includes_slew = left;
    actions.push_back(SetFrequency{impl_->base_ppb});
    actions.push_back(StepClock{decision.correction, std::nullopt});
    actions.push_back(LogLine{true, decision.reason});
    ++tracking_.steps;
  } else {
    // In the cooked scale the correction is done now: the histories move by it at once, and the
    // clock follows by slewing (the new slew replaces what the previous one had left).
    if (fresh != Duration{})
      for (auto& [sid, other] : impl_->sources) {
        other.exchange->correct_for_local_clock(cooked_now, 0, fresh,
                                                ntp::Exchange::OffsetKind::slewed);
        if (other.used_time) *other.used_time = *other.used_time + fresh;
      }
    const Duration total = decision.correction;
    const double base = impl_->base_ppb * 1e-9;
    double rate = 0;
    if (total != Duration{} && decision.slew_duration > Duration{}) {
      rate = total.seconds() / decision.slew_duration.seconds();
      // maxslewrate, and the driver's range around the base.
      const double max_rate = settings_.servo.max_slew_rate_ppm * 1e-6;
      const double limit = settings_.max_frequency_ppb * 1e-9;
      rate = std::clamp(rate, -max_rate, max_rate);
      rate = std::clamp(base + rate, -limit, limit) - base;
    }
    if (rate != 0) {
      // Raw time the raw clock needs to gain `total` on the cooked one.
      const Duration duration = Duration::from_seconds(total.seconds() * (1 + base + rate) / rate);
      impl_->slew = Impl::Slew{now, now + duration, total, rate, base, std::nullopt};
      actions.push_back(SetFrequency{impl_->base_ppb + rate * 1e9});
      actions.push_back(SetTimer{next_wake(now)});
    } else {
      // Nothing to slew now: what is left stays in the cooked scale until the next slew.
      impl_->slew = Impl::Slew{now, now, left, 0, base, now};
      actions.push_back(SetFrequency{impl_->base_ppb});
    }
  }

  record_update(update, result, ids[peer], pe, decision.state,
                decision.kind == servo::Decision::Kind::step);
  tracking_.system_offset = impl_->still_to_slew(now);
  actions.push_back(SetSyncStatus{{true, tracking_.error_bound, update.offset_sd}});
  if (tracking_.updates == 1 || impl_->announce_sync) {
    impl_->announce_sync = false;
    actions.push_back(LogLine{false, strcat("synchronised to source ", ids[peer], ", offset ",
                                            result.offset.to_string())});
  }
  return actions;
}

void Timekeeper::record_update(const servo::Update& update, const selection::Result& result,
                               SourceId peer, const SourceEstimate& pe, servo::State state,
                               bool stepped) {
  const Duration offset = result.offset;
  tracking_.update_interval = update.since_last.value_or(Duration{});
  tracking_.last_update = update.now;
  tracking_.last_offset = offset;
  const double offset_s = offset.seconds();
  impl_->rms_sq = impl_->any_update
                      ? impl_->rms_sq + kRmsWeight * (offset_s * offset_s - impl_->rms_sq)
                      : offset_s * offset_s;
  impl_->any_update = true;
  tracking_.rms_offset = Duration::from_seconds(std::sqrt(impl_->rms_sq));
  tracking_.frequency_ppb = settings_.observe_only ? impl_->applied_ppb : impl_->base_ppb;
  tracking_.residual_frequency_ppb = update.residual_frequency.value_or(0) * 1e9;
  tracking_.skew_ppb = update.skew * 1e9;
  tracking_.servo_state = state;
  tracking_.reference = peer;
  tracking_.reference_id = pe.reference_id;
  tracking_.stratum = static_cast<uint8_t>(std::min(pe.stratum + 1, 16));
  tracking_.leap = pe.leap;
  tracking_.root_delay = pe.root_delay;
  tracking_.root_dispersion = pe.root_dispersion + result.jitter;
  tracking_.system_offset = stepped ? Duration{} : offset;
  tracking_.disrupted = false;
  ++tracking_.updates;
  // |true − clock| ≤ |offset| + root delay / 2 + root dispersion (issue 10's bound, at the
  // update; the kernel adds its own 500 ppm per second to maxerror from there). A step has
  // removed the offset it measured: counting it still gave 11.9 s after a 10 s foreign step.
  tracking_.error_bound = (stepped ? Duration{} : offset.abs()) + tracking_.root_delay / 2 +
                          tracking_.root_dispersion;
  if (!tracking_.synchronized) impl_->announce_sync = true;
  tracking_.synchronized = true;
}

Actions Timekeeper::on_timer(UtcTime now) {
  Actions actions;
  if (settings_.observe_only) return actions;
  if (impl_->slew && !impl_->slew->ended && now >= impl_->slew->end - Duration::from_us(1)) {
    // Whatever the timer's lateness made the slew overshoot stays in the cooked scale.
    impl_->slew->ended = now;
    actions.push_back(SetFrequency{impl_->base_ppb});
    tracking_.system_offset = impl_->still_to_slew(now);
  }
  for (Action& a : carry_out_leap(now)) actions.push_back(std::move(a));
  for (Action& a : leap_actions(now + impl_->still_to_slew(now), impl_->last_vote))
    actions.push_back(std::move(a));
  // Also the periodic look for interference: the carrier asks the driver after carrying these
  // out, whatever they are.
  actions.push_back(SetTimer{next_wake(now)});
  return actions;
}

void Timekeeper::on_frequency_applied(UtcTime when, double applied_ppb) {
  impl_->applied_ppb = applied_ppb;
  // The histories run at the base: only a change of the applied frequency beyond the slew's
  // extra changes them. Exactly: a past instant read t on a clock running at 1 + f_old; one at
  // 1 + f_new would have read when − (when − t)(1 + f_new)/(1 + f_old).
  const double new_base_ppb = applied_ppb - impl_->slew_ppb();
  const double dfrequency =
      (new_base_ppb - impl_->cooked_base_ppb) * 1e-9 / (1 + impl_->cooked_base_ppb * 1e-9);
  impl_->cooked_base_ppb = new_base_ppb;
  if (dfrequency == 0) return;
  const UtcTime cooked_when = when + impl_->still_to_slew(when);
  for (auto& [id, entry] : impl_->sources)
    entry.exchange->correct_for_local_clock(cooked_when, dfrequency, Duration{});
}

void Timekeeper::on_stepped(UtcTime when, Duration offset) {
  // The last update's time is a raw reading of the clock that was just stepped.
  if (tracking_.last_update) tracking_.last_update = *tracking_.last_update + offset;
  const Duration shift = offset - impl_->step_includes_slew;
  impl_->step_includes_slew = Duration{};
  impl_->leap.on_clock_stepped(when);
  if (impl_->realtime_minus_monotonic) *impl_->realtime_minus_monotonic += offset;
  for (auto& [id, entry] : impl_->sources) {
    entry.exchange->correct_for_local_clock(when, 0, shift);
    if (entry.used_time) *entry.used_time = *entry.used_time + shift;
  }
}

Actions apply_clock_actions(const Actions& actions, clock::ClockDriver& driver, Timekeeper& core) {
  Actions left;
  for (const Action& action : actions) {
    if (const auto* f = std::get_if<SetFrequency>(&action)) {
      if (auto applied = driver.set_frequency_ppb(f->ppb))
        core.on_frequency_applied(driver.now(), *applied);
      else
        left.push_back(LogLine{true, strcat("cannot set the frequency: ", applied.error().message())});
    } else if (const auto* s = std::get_if<StepClock>(&action)) {
      if (auto done = s->tai_offset_s ? driver.step_with_tai_offset(s->offset, *s->tai_offset_s)
                                      : driver.step(s->offset);
          done)
        core.on_stepped(driver.now(), s->offset);
      else
        left.push_back(LogLine{true, strcat("cannot step the clock: ", done.error().message())});
    } else if (const auto* st = std::get_if<SetSyncStatus>(&action)) {
      if (auto done = driver.set_sync_status(st->status); !done)
        left.push_back(LogLine{true, strcat("cannot set the sync status: ", done.error().message())});
    } else if (const auto* t = std::get_if<SetTaiOffset>(&action)) {
      if (auto done = driver.set_tai_offset(t->seconds); !done)
        left.push_back(LogLine{true, strcat("cannot set the TAI offset: ", done.error().message())});
    } else if (const auto* l = std::get_if<SetLeap>(&action)) {
      if (auto done = driver.set_leap(l->leap); !done)
        left.push_back(LogLine{true, strcat("cannot set the leap flag: ", done.error().message())});
    } else {
      left.push_back(action);
    }
  }
  if (auto leap = driver.noticed_kernel_leap()) {
    for (Action& a : apply_clock_actions(core.on_kernel_leap(driver.now(), *leap), driver, core))
      left.push_back(std::move(a));
  }
  if (auto noticed = driver.noticed_interference()) {
    left.push_back(LogLine{true, strcat("clock interference: ", *noticed)});
    // Whatever was done behind our back, measure from the frequency the clock has now, and
    // measure again at once: every source bursts (its step detector restarts its estimators
    // at the first stamp if the clock was stepped).
    if (auto frequency = driver.frequency_ppb()) core.on_frequency_applied(driver.now(), *frequency);
    core.on_interference(driver.now());
    for (const SourceView& view : core.sources()) {
      core.exchange(view.id).start_burst();
      left.push_back(PollNow{view.id});
    }
  }
  return left;
}

}  // namespace taid::timekeeping
