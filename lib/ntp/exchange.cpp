// Per-source client exchange: requests, reply sanity tests, samples, poll control.
#include "ntp/exchange.hpp"

#include <algorithm>
#include <cmath>
#include <utility>

#include "core/strcat.hpp"
#include "filter/local_clock_change.hpp"

namespace taid::ntp {
namespace {

constexpr int kPollLimit = 30;   // RFC 5905 LIMIT: hysteresis of the poll counter
constexpr double kPollGate = 4;  // RFC 5905 PGATE

Duration from_log2(int8_t log2) { return Duration::from_log2_s(log2); }

// The step of the local clock between two stamps: the change of (realtime − monotonic) when
// slewing cannot explain it, zero when it can or a stamp lacks its monotonic reading.
Duration step_between(const LocalTimestamp& a, const LocalTimestamp& b) {
  if (!a.monotonic || !b.monotonic) return Duration{};
  const Duration change = (b.time - a.time) - (*b.monotonic - *a.monotonic);
  const Duration elapsed = (*b.monotonic - *a.monotonic).abs();
  const Duration allowed = Duration::from_seconds(kMaxSlewRate * elapsed.seconds()) + kStepMargin;
  return change.abs() > allowed ? change : Duration{};
}

}  // namespace

Duration randomized_poll_interval(int poll_log2_s, uint64_t random) {
  const Duration poll = Duration::from_log2_s(poll_log2_s);
  const double unit = static_cast<double>(random >> 11) * 0x1.0p-53;  // [0, 1)
  const double spread_ns = static_cast<double>(poll.ns()) * std::ldexp(1.0, -kPollSpreadLog2);
  return poll + Duration::from_ns(static_cast<int64_t>(std::floor(spread_ns * unit)));
}

std::string_view to_string(TimestampSource source) {
  switch (source) {
    case TimestampSource::user:
      return "user";
    case TimestampSource::kernel:
      return "kernel";
    case TimestampSource::bpf:
      return "bpf";
    case TimestampSource::hardware:
      return "hardware";
  }
  return "?";
}

std::string_view to_string(SourceState state) {
  switch (state) {
    case SourceState::init:
      return "init";
    case SourceState::reachable:
      return "reachable";
    case SourceState::unreachable:
      return "unreachable";
    case SourceState::demobilized:
      return "demobilized";
  }
  return "?";
}

Exchange::Exchange(SourceConfig config, std::function<uint64_t()> random_u64)
    : config_(std::move(config)), random_u64_(std::move(random_u64)) {
  config_.minpoll = std::clamp(config_.minpoll, kMinPoll, kMaxPoll);
  config_.maxpoll = std::clamp(config_.maxpoll, config_.minpoll, kMaxPoll);
  status_.poll_log2_s = config_.minpoll;
  if (config_.iburst) start_burst();
  poll_floor_log2_s_ = config_.minpoll;
}

Duration Exchange::next_interval() {
  // A burst packet follows 2 s after the last, or sooner when the poll itself is shorter
  // (chrony: "2 seconds or less").
  if (status_.burst_remaining > 0)
    return std::min(kBurstSpacing, Duration::from_log2_s(status_.poll_log2_s));
  return randomized_poll_interval(status_.poll_log2_s, random_u64_());
}

void Exchange::check_for_step(const LocalTimestamp& stamp, Actions& actions) {
  if (!stamp.monotonic) return;
  if (last_clock_reading_) {
    if (const Duration step = step_between(*last_clock_reading_, stamp); step != Duration{}) {
      // Every local time the estimators hold is on the old scale: a restart is the only way to
      // compare like with like (the filter's never-older rule would otherwise block every
      // sample until the clock passed the old T4 again, the envelope would mix both scales).
      filter_.reset();
      envelope_.reset();
      previous_.reset();
      last_released_offset_.reset();
      actions.push_back(
          LogLine{true, strcat(config_.name, ": the local clock was stepped by ", step.to_string(),
                               "; clock filter, delay envelope and interleaved "
                               "state start over")});
    }
  }
  last_clock_reading_ = stamp;
}

void Exchange::correct_for_local_clock(UtcTime when, double dfrequency, Duration doffset,
                                       OffsetKind kind) {
  correct(when, dfrequency, doffset, Duration{}, kind);
}

void Exchange::shift_time_scale(Duration local, Duration remote, OffsetKind kind) {
  correct(UtcTime{}, 0, local, remote, kind);
}

void Exchange::correct(UtcTime when, double dfrequency, Duration doffset, Duration scale_shift,
                       OffsetKind kind) {
  const filter::LocalClockChange change{when, dfrequency, doffset, scale_shift};
  // CLOCK_MONOTONIC runs at the rate adjtimex sets, as CLOCK_REALTIME does, but is never
  // stepped: a step moves its reading by the frequency part of the map only, so (time −
  // monotonic) moves by exactly doffset, as it does for the next real stamp, however fast taid
  // slews. An offset being slewed out moves both (header).
  const auto remap = [&change, kind](LocalTimestamp& stamp) {
    const Duration shift = change.shift(stamp.time);
    if (stamp.monotonic)
      *stamp.monotonic += kind == OffsetKind::slewed ? shift : shift - change.doffset;
    stamp.time = stamp.time + shift;
  };
  filter_.correct_for_local_clock(when, dfrequency, doffset, scale_shift);
  envelope_.correct_for_local_clock(when, dfrequency, doffset, scale_shift);
  if (status_.requests_sent > 0) remap(t1_);
  if (previous_) {
    remap(previous_->t1);
    remap(previous_->t4);
  }
  // adjust_poll takes every release, and a reset clears both, so the last released offset is
  // the filter's estimate's: remeasured with its stamps just now.
  if (last_released_offset_ && filter_.estimate())
    last_released_offset_ = filter_.estimate()->offset;
  if (last_clock_reading_) remap(*last_clock_reading_);
}

void Exchange::start_burst() {
  if (status_.state == SourceState::demobilized) return;
  status_.burst_remaining = kBurstCount;
  burst_replacements_left_ = kBurstCount;
}

Actions Exchange::on_timer(LocalTimestamp now) {
  Actions actions;
  if (status_.state == SourceState::demobilized) return actions;
  check_for_step(now, actions);

  const bool previous_unanswered = awaiting_reply_;
  const uint8_t old_reach = status_.reach;
  status_.reach = static_cast<uint8_t>(status_.reach << 1);
  // A lost request of a burst in progress is replaced (the last one's loss is seen only at the
  // next poll, when the burst is over: it is not).
  if (previous_unanswered && status_.burst_remaining > 0 && burst_replacements_left_ > 0) {
    ++status_.burst_remaining;
    --burst_replacements_left_;
  }
  const bool in_burst = status_.burst_remaining > 0;

  if (status_.reach == 0 && status_.requests_sent > 0) {
    // Nothing heard in the last eight requests (or ever): unreachable.
    if (status_.state != SourceState::unreachable) {
      status_.state = SourceState::unreachable;
      actions.push_back(
          LogLine{true, strcat(config_.name, ": unreachable, no reply to ",
                               std::min<uint64_t>(status_.requests_sent, 8), " request(s)")});
    }
    if (!in_burst && status_.poll_log2_s < config_.maxpoll) {
      if (!backed_off_from_log2_s_) backed_off_from_log2_s_ = status_.poll_log2_s;
      ++status_.poll_log2_s;
      actions.push_back(
          LogLine{true, strcat(config_.name, ": unreachable, poll backs off to ",
                               Duration::from_log2_s(status_.poll_log2_s).seconds(), " s")});
    }
  } else if (status_.reach != 0 && (status_.reach & 0x07) == 0) {
    // The last two polls went unanswered: age the filter with a dummy stage.
    filter_.add_dummy(now.time);
  }
  if (previous_unanswered && old_reach != 0)
    actions.push_back(LogLine{false, strcat(config_.name, ": no reply to the last request")});
  // Interleaved mode completes the previous exchange; after four silent polls the server has
  // likely dropped its record of it (chrony's limit too), so ask in basic mode again.
  unanswered_in_a_row_ = previous_unanswered ? unanswered_in_a_row_ + 1 : 0;
  if (unanswered_in_a_row_ >= kMaxInterleavedGap) previous_.reset();

  // A fresh random cookie for the transmit timestamp; zero is reserved for "not set".
  uint64_t cookie = 0;
  while (cookie == 0) cookie = random_u64_();
  cookie_ = NtpTimestamp::from_raw(cookie);
  t1_ = now;
  awaiting_reply_ = true;

  Packet request;
  request.leap = Leap::unsynchronized;  // a client that does not serve says nothing of its clock
  request.version = kVersion;
  request.mode = Mode::client;
  request.poll = static_cast<int8_t>(status_.poll_log2_s);
  request.precision = now.precision_log2;
  request.transmit_time = cookie_;
  xleave_cookie_ = NtpTimestamp{};
  if (config_.xleave && previous_) {
    request.origin_time = previous_->t2;
    uint64_t second = 0;
    while (second == 0 || second == cookie) second = random_u64_();
    xleave_cookie_ = NtpTimestamp::from_raw(second);
    request.receive_time = xleave_cookie_;
  }
  actions.emplace_back(SendRequest{encode(request)});

  ++status_.requests_sent;
  status_.last_request = now.time;
  if (in_burst) --status_.burst_remaining;
  actions.emplace_back(SetTimer{next_interval()});
  return actions;
}

void Exchange::on_transmit_timestamp(LocalTimestamp tx) {
  if (status_.requests_sent == 0) return;
  t1_ = tx;
  if (previous_ && previous_->request == status_.requests_sent) previous_->t1 = tx;
}

Actions Exchange::reject(std::string why) {
  ++status_.rejected;
  status_.last_rejection = why;
  return {LogLine{false, strcat(config_.name, ": reply dropped: ", why)}};
}

Actions Exchange::on_kiss(const Packet& reply) {
  const uint32_t code = reply.reference_id;
  const std::string text = reference_id_to_string(code, 0);
  if (code == kiss_code("DENY") || code == kiss_code("RSTR")) {
    status_.state = SourceState::demobilized;
    return {LogLine{true, strcat(config_.name, ": kiss-o'-death ", text, ", stop polling")},
            Demobilize{strcat("kiss-o'-death ", text)}};
  }
  if (code == kiss_code("RATE")) {
    // Back off at least one step and to at least the server's own poll, ending any burst. The
    // poll we were kissed at is too fast for this server: never go back to it (chrony raises
    // its minpoll to the server's poll the same way).
    const int wanted = std::max(status_.poll_log2_s + 1, static_cast<int>(reply.poll));
    status_.poll_log2_s = std::clamp(wanted, config_.minpoll, kMaxPoll);
    poll_floor_log2_s_ = std::max(poll_floor_log2_s_, status_.poll_log2_s);
    status_.burst_remaining = 0;
    // It passed the origin test, so the server answered, only slower than we asked: the reach
    // bit (chrony updates reachability for it too), though no sample and no state change.
    // Without the bit, the next poll would call it unreachable and back off a second time.
    status_.reach |= 1;
    return {LogLine{true, strcat(config_.name, ": kiss-o'-death RATE, poll backs off to ",
                                 Duration::from_log2_s(status_.poll_log2_s).seconds(), " s")},
            SetTimer{next_interval()}};
  }
  return reject(strcat("kiss-o'-death ", text, " (not acted on)"));
}

Actions Exchange::on_packet(std::span<const uint8_t> bytes, LocalTimestamp rx, SampleUse use) {
  if (status_.state == SourceState::demobilized) return {};
  auto decoded = decode(bytes);
  if (!decoded) return reject(strcat("malformed: ", decoded.error().message()));
  const Packet& reply = *decoded;

  // Tests that need no state first, then the ones that match the reply to our request. Until
  // the origin test passes, the packet may be forged by anyone who can reach our port and must
  // not change anything but the rejection counters.
  if (reply.mode != Mode::server)
    return reject(strcat("mode ", static_cast<int>(reply.mode), " is not server (4)"));
  if (reply.transmit_time.is_zero()) return reject("zero transmit timestamp");
  if (reply.transmit_time == last_transmit_) return reject("duplicate (same transmit timestamp)");
  if (!awaiting_reply_) return reject("no request outstanding (one reply per request)");
  const bool interleaved = !xleave_cookie_.is_zero() && reply.origin_time == xleave_cookie_;
  if (reply.origin_time != cookie_ && !interleaved)
    return reject("bogus: origin does not match our request");

  // The reply answers our request: whatever follows, the request is finished.
  awaiting_reply_ = false;
  last_transmit_ = reply.transmit_time;

  Actions actions;
  check_for_step(rx, actions);
  const auto then = [&actions](Actions more) {
    actions.insert(actions.end(), std::make_move_iterator(more.begin()),
                   std::make_move_iterator(more.end()));
    return std::move(actions);
  };
  // The exchange this reply completes in interleaved mode, if any. Whatever this reply turns
  // out to be, the next request may only name this exchange (set below once its header is
  // valid) or none: a request naming an older one would pair stamps from long ago.
  const std::optional<Previous> previous = std::exchange(previous_, std::nullopt);

  if (reply.stratum == 0) return then(on_kiss(reply));
  if (reply.leap == Leap::unsynchronized) return then(reject("server unsynchronized (LI = 3)"));
  if (reply.stratum > 15)
    return then(reject(strcat("stratum ", int{reply.stratum}, " is above 15")));
  if (reply.receive_time.is_zero()) return then(reject("zero receive timestamp"));
  if (reply.precision < kMinPrecisionLog2 || reply.precision > kMaxPrecisionLog2)
    return then(reject(strcat("precision ", int{reply.precision}, " is outside ", kMinPrecisionLog2,
                              "..", kMaxPrecisionLog2)));
  // A valid header from the server: it is reachable, whatever the fitness tests below say
  // (RFC 5905 sets the reach bit here, before the distance test).
  status_.reach |= 1;
  status_.state = SourceState::reachable;
  if (backed_off_from_log2_s_) {
    // The timer runs at the backed-off interval (up to maxpoll): the next poll comes at the
    // restored one from now instead.
    status_.poll_log2_s = std::max(*backed_off_from_log2_s_, poll_floor_log2_s_);
    backed_off_from_log2_s_.reset();
    actions.push_back(SetTimer{next_interval()});
  }

  // This exchange becomes the one the next interleaved reply completes (set before the
  // fitness tests: the server keeps its record of this exchange whether or not we use it),
  // unless our own T1 and T4 of it straddle a step of the local clock.
  const bool stepped_during = step_between(t1_, rx) != Duration{};
  if (!stepped_during) previous_ = Previous{t1_, reply.receive_time, rx, status_.requests_sent};
  if (use == SampleUse::discard) return actions;
  // Interleaved mode completes an exchange from before a step that has since been detected.
  if (interleaved && !previous)
    return then(reject("interleaved reply to an exchange from before a step of the local clock"));
  // Basic mode measures this exchange. Interleaved mode measures the previous one: its T1, T2,
  // T4, and the server's real transmit stamp of its reply, which this reply carries as T3.
  const LocalTimestamp stamp1 = interleaved ? previous->t1 : t1_;
  const LocalTimestamp stamp4 = interleaved ? previous->t4 : rx;
  const NtpTimestamp wire2 = interleaved ? previous->t2 : reply.receive_time;
  if (step_between(stamp1, stamp4) != Duration{})
    return then(reject("the local clock was stepped during the exchange"));
  // T1, T4 are local; T2, T3 are the server's, placed in the era nearest T1.
  const UtcTime t1 = stamp1.time;
  const UtcTime t2 = wire2.to_utc(t1);
  const UtcTime t3 = reply.transmit_time.to_utc(t1);
  const UtcTime t4 = stamp4.time;
  if (t3 - t2 > kMaxServerInterval || t3 < t2)
    return then(
        reject(strcat("server interval T3 - T2 = ", (t3 - t2).to_string(), " is outside 0..4 s")));
  const Duration offset = ((t2 - t1) + (t3 - t4)) / 2;
  const Duration precision = from_log2(stamp4.precision_log2);
  const Duration delay = std::max((t4 - t1) - (t3 - t2), precision);
  // ε = server precision + precision of our stamps + PHI × round trip.
  const Duration dispersion =
      from_log2(reply.precision) + precision + filter::dispersion_growth(t4 - t1);

  const Duration root_delay = reply.root_delay.to_duration();
  const Duration root_dispersion = reply.root_dispersion.to_duration();
  const Duration root_distance = (root_delay + delay) / 2 + root_dispersion + dispersion;
  if (root_distance > kMaxRootDistance)
    return then(reject(strcat("root distance ", root_distance.to_string(), " exceeds 16 s")));

  Sample sample{
      t4,          offset,        delay,      dispersion, stamp4.source,   stamp1.source,
      interleaved, reply.stratum, reply.leap, root_delay, root_dispersion, reply.reference_id};
  if (interleaved) ++status_.interleaved_samples;
  ++status_.samples;
  status_.last_sample = sample;

  // Jitter cannot be finer than the stamps that measure it.
  const uint64_t spikes = filter_.spikes();
  std::optional<filter::Estimate> released = filter_.add(
      offset, delay, dispersion, t4, precision, Duration::from_log2_s(status_.poll_log2_s));
  if (released) adjust_poll(*released);
  if (filter_.spikes() != spikes)
    actions.push_back(LogLine{
        false, strcat(config_.name, ": popcorn spike held back (offset ", offset.to_string(),
                      ", jitter ", filter_.estimate()->jitter.to_string(), ")")});
  // Said once per change: a source that never fits a line has no estimate to lose.
  const uint64_t restarts = envelope_.restarts();
  const bool had_estimate = envelope_.estimate().has_value();
  auto envelope = envelope_.add(offset, delay, t1, t4);
  if (envelope_.restarts() != restarts && had_estimate) {
    actions.push_back(
        LogLine{true, strcat(config_.name,
                             ": samples no longer fit one line (a clock was stepped or the "
                             "path changed); the envelope keeps the newest ",
                             envelope_.size())});
    // Samples a poll apart no longer lie on one line: the oscillator (or the path) changes
    // faster than this poll can follow, so poll faster. The RFC hysteresis alone cannot see it
    // here: the filter's jitter, its gate, grows with the very wander (chrony shortens its poll
    // when its regression's runs test keeps trimming the window, for the same reason).
    if (status_.poll_log2_s > poll_floor_log2_s_) {
      --status_.poll_log2_s;
      poll_counter_ = 0;
    }
  }
  actions.push_back(SampleAccepted{sample, released, std::move(envelope)});
  return actions;
}

std::optional<OffsetEstimate> Exchange::offset_estimate() const {
  const auto& picked = filter_.estimate();
  const auto& envelope = envelope_.estimate();
  if (envelope && picked) {
    // Each estimate refers to its own time: the pick to its sample's, the envelope to its newest
    // sample's. Both bounds are taken under one assumption about the path: symmetric, with
    // one-way delays at least D̂ less the queueing the envelope's fastest packets can be expected
    // to still carry (the samples' mean queueing over their number, as for the minimum of
    // exponential delays). Without such an assumption (one-way delays ≥ 0) both bounds are
    // dominated by the same allowance for asymmetry and do not tell the estimators apart (in
    // the exchange test's model that switch was 40 % worse than the pick at 4 samples). The
    // filter's bound is then δ/2 less that clearance; the envelope's, how far the lines that keep
    // that clearance from every bound (any slope the samples allow) put the offset from its
    // estimate. Ties go to the filter.
    const Duration expected_queueing =
        envelope->mean_excess / static_cast<int64_t>(envelope->samples);
    const Duration clearance = std::max(envelope->half_min_delay - expected_queueing, Duration{});
    const auto envelope_bound = envelope_.error_bound(clearance);
    const Duration filter_bound = picked->delay / 2 - clearance;
    if (envelope_bound && *envelope_bound < filter_bound)
      return OffsetEstimate{envelope->offset, envelope->time, "delay_envelope",
                            *envelope_.error_bound()};
  }
  if (picked)
    return OffsetEstimate{picked->offset, picked->time, "clock_filter",
                          *filter_.error_bound_at(picked->updated)};
  if (envelope)
    return OffsetEstimate{envelope->offset, envelope->time, "delay_envelope",
                          *envelope_.error_bound()};
  return std::nullopt;
}

void Exchange::adjust_poll(const filter::Estimate& released) {
  const Duration residual =
      last_released_offset_ ? (released.offset - *last_released_offset_).abs() : Duration{};
  last_released_offset_ = released.offset;
  const int poll = status_.poll_log2_s;
  // RFC 5905 counts in units of the poll exponent, which is never below 4 there; sub-16 s polls
  // (down to -6) would flip the sign, so each step counts at least 1.
  const int step = std::max(poll, 1);
  if (residual.seconds() < kPollGate * released.jitter.seconds()) {
    poll_counter_ = std::min(poll_counter_ + step, kPollLimit + 1);
    if (poll_counter_ > kPollLimit) {
      poll_counter_ = kPollLimit;
      if (poll < config_.maxpoll) {
        poll_counter_ = 0;
        ++status_.poll_log2_s;
      }
    }
  } else {
    poll_counter_ = std::max(poll_counter_ - 2 * step, -kPollLimit - 1);
    if (poll_counter_ < -kPollLimit) {
      poll_counter_ = -kPollLimit;
      if (poll > poll_floor_log2_s_) {
        poll_counter_ = 0;
        --status_.poll_log2_s;
      }
    }
  }
}

}  // namespace taid::ntp
