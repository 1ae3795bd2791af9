// SimClock: exact piecewise integration of the simulated oscillator and the kernel's leap second
// state machine on it (see sim_clock.hpp).
#include "sim/sim_clock.hpp"

#include <sys/timex.h>

#include <cmath>
#include <numbers>

namespace taid::sim {
namespace {
constexpr int64_t kNsPerS = 1000000000;
constexpr int64_t kSecondsPerDay = 86400;
}  // namespace

SimClock::SimClock(const ClockModel& model, const Truth& truth, uint64_t seed)
    : model_(model), truth_(truth), random_(seed) {
  local_ns_ = truth.utc_at(0).unix_ns() + model.initial_offset.ns();
  tai_offset_s_ = model.initial_tai_offset_s;
  monotonic_base_ns_ = local_ns_ - model.initial_monotonic.ns();
  base_ppb_ = model.frequency_ppm * 1000;
  driver_ppb_ = model.initial_driver_frequency_ppb;
}

double SimClock::temperature_ppb(double t_s) const {
  if (model_.temperature_amplitude_ppm == 0) return 0;
  return model_.temperature_amplitude_ppm * 1000 *
         std::sin(2 * std::numbers::pi * t_s / model_.temperature_period.seconds());
}

double SimClock::oscillator_frequency_ppb() const {
  return base_ppb_ + wander_ppb_ + temperature_ppb(static_cast<double>(true_ns_) * 1e-9);
}

double SimClock::error_ns() const {
  return static_cast<double>(local_ns_ - true_utc().unix_ns()) + local_fraction_;
}

double SimClock::tai_error_ns() const {
  return static_cast<double>(clock_tai().tai_ns() - true_tai().tai_ns()) + local_fraction_;
}

SimClock::Reading SimClock::reading_at(int64_t to_ns) const {
  const int64_t dt_ns = to_ns - true_ns_;
  if (dt_ns <= 0) return {local_ns_, local_fraction_};
  // (1 + o)(1 + d) − 1 = o + d + o·d, in ppb; ppb × ns / 1e9 = ns. Divided (not multiplied by
  // 1e-9) so whole numbers stay exact.
  const double o_ppb = base_ppb_ + wander_ppb_;
  const double rate_ppb = o_ppb + driver_ppb_ + o_ppb * driver_ppb_ * 1e-9;
  double extra_ns = rate_ppb * static_cast<double>(dt_ns) / 1e9;
  if (model_.temperature_amplitude_ppm != 0) {
    // ∫ A sin(2πs/P) ds = A·P/(2π)·(cos(2πt₀/P) − cos(2πt₁/P)); A in ppb, P in s: ns.
    const double period_s = model_.temperature_period.seconds();
    const double w = 2 * std::numbers::pi / period_s;
    const double t0 = static_cast<double>(true_ns_) * 1e-9;
    const double t1 = static_cast<double>(to_ns) * 1e-9;
    extra_ns += model_.temperature_amplitude_ppm * 1000 / w *
                (std::cos(w * t0) - std::cos(w * t1)) * (1 + driver_ppb_ * 1e-9);
  }
  const double sum = local_fraction_ + extra_ns;
  const double whole = std::floor(sum);
  return {local_ns_ + dt_ns + static_cast<int64_t>(whole), sum - whole};
}

void SimClock::integrate(int64_t to_ns) {
  if (to_ns <= true_ns_) return;
  const Reading r = reading_at(to_ns);
  local_ns_ = r.local_ns;
  local_fraction_ = r.fraction;
  true_ns_ = to_ns;
}

int64_t SimClock::next_kernel_second() const {
  const int64_t now_s = floor_div(local_ns_, kNsPerS);
  const int64_t next_s = now_s + 1;
  switch (time_state_) {
    case TIME_OK:
      return leap_flag_ != clock::LeapState::none ? next_s : INT64_MAX;
    case TIME_INS:
      if (leap_flag_ != clock::LeapState::insert) return next_s;
      return next_leap_s_ > now_s ? next_leap_s_ : INT64_MAX;  // stepped past it: never
    case TIME_DEL:
      if (leap_flag_ != clock::LeapState::delete_) return next_s;
      return next_leap_s_ > now_s ? next_leap_s_ : INT64_MAX;
    case TIME_OOP:
      return next_s;
    case TIME_WAIT:
      return leap_flag_ == clock::LeapState::none ? next_s : INT64_MAX;
  }
  return INT64_MAX;
}

void SimClock::second_overflow(int64_t secs) {
  int leap = 0;
  switch (time_state_) {
    case TIME_OK:
      if (leap_flag_ == clock::LeapState::insert) {
        time_state_ = TIME_INS;
        next_leap_s_ = secs + kSecondsPerDay - (secs % kSecondsPerDay);
      } else if (leap_flag_ == clock::LeapState::delete_) {
        time_state_ = TIME_DEL;
        next_leap_s_ = secs + kSecondsPerDay - ((secs + 1) % kSecondsPerDay);
      }
      break;
    case TIME_INS:
      if (leap_flag_ != clock::LeapState::insert) {
        next_leap_s_ = INT64_MAX;
        time_state_ = TIME_OK;
      } else if (secs == next_leap_s_) {
        leap = -1;
        time_state_ = TIME_OOP;
      }
      break;
    case TIME_DEL:
      if (leap_flag_ != clock::LeapState::delete_) {
        next_leap_s_ = INT64_MAX;
        time_state_ = TIME_OK;
      } else if (secs == next_leap_s_) {
        leap = 1;
        next_leap_s_ = INT64_MAX;
        time_state_ = TIME_WAIT;
      }
      break;
    case TIME_OOP:
      next_leap_s_ = INT64_MAX;
      time_state_ = TIME_WAIT;
      break;
    case TIME_WAIT:
      if (leap_flag_ == clock::LeapState::none) time_state_ = TIME_OK;
      break;
  }
  if (leap == 0) return;
  // timekeeping.c: xtime_sec += leap, the TAI offset −= leap; CLOCK_MONOTONIC unmoved.
  local_ns_ += leap * kNsPerS;
  leap_steps_ns_ += leap * kNsPerS;
  tai_offset_changes_.push_back({true_ns_, tai_offset_s_, tai_offset_s_ - leap, true});
  tai_offset_s_ -= leap;
  kernel_leaps_.push_back({true_ns_, local(), -leap});
}

void SimClock::integrate_with_kernel(int64_t to_ns) {
  while (true_ns_ < to_ns) {
    const int64_t second = next_kernel_second();
    if (second == INT64_MAX || reading_at(to_ns).local_ns < second * kNsPerS) {
      integrate(to_ns);
      return;
    }
    // The first nanosecond of true time at which CLOCK_REALTIME reads the second (the clock
    // runs at 0.9 to 1.1 s/s, so the reading grows with t: bisect).
    int64_t lo = true_ns_, hi = to_ns;  // reading(lo) < target ≤ reading(hi)
    if (local_ns_ >= second * kNsPerS) hi = lo;
    while (hi - lo > 1) {
      const int64_t mid = lo + (hi - lo) / 2;
      (reading_at(mid).local_ns < second * kNsPerS ? lo : hi) = mid;
    }
    integrate(hi);
    second_overflow(second);
  }
  // A flag set with the clock already on the instant: nothing to do until time moves.
}

void SimClock::advance_to(int64_t true_ns) {
  while (next_wander_ns_ <= true_ns) {
    integrate_with_kernel(next_wander_ns_);
    if (model_.wander != 0) wander_ppb_ += model_.wander * 1e9 * random_.normal();
    next_wander_ns_ += kNsPerS;
  }
  integrate_with_kernel(true_ns);
}

void SimClock::step(Duration offset) {
  local_ns_ += offset.ns();
  steps_ns_ += offset.ns();
}

void SimClock::set_tai_offset(int32_t seconds) {
  if (seconds != tai_offset_s_)
    tai_offset_changes_.push_back({true_ns_, tai_offset_s_, seconds, false});
  tai_offset_s_ = seconds;
}

}  // namespace taid::sim
