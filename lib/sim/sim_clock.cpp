// SimClock: exact piecewise integration of the simulated oscillator (see sim_clock.hpp).
#include "sim/sim_clock.hpp"

#include <cmath>
#include <numbers>

namespace taid::sim {
namespace {
constexpr int64_t kNsPerS = 1000000000;
}

SimClock::SimClock(const ClockModel& model, UtcTime start, uint64_t seed)
    : model_(model), start_(start), random_(seed) {
  local_ns_ = start.unix_ns() + model.initial_offset.ns();
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

void SimClock::integrate(int64_t to_ns) {
  const int64_t dt_ns = to_ns - true_ns_;
  if (dt_ns <= 0) return;
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
  local_ns_ += dt_ns + static_cast<int64_t>(whole);
  local_fraction_ = sum - whole;
  true_ns_ = to_ns;
}

void SimClock::advance_to(int64_t true_ns) {
  while (next_wander_ns_ <= true_ns) {
    integrate(next_wander_ns_);
    if (model_.wander != 0) wander_ppb_ += model_.wander * 1e9 * random_.normal();
    next_wander_ns_ += kNsPerS;
  }
  integrate(true_ns);
}

void SimClock::step(Duration offset) {
  local_ns_ += offset.ns();
  steps_ns_ += offset.ns();
}

}  // namespace taid::sim
