// SimClockDriver: kernel-like rounding, clamping and sync-status bookkeeping over a SimClock.
#include "sim/sim_clock_driver.hpp"

#include <sys/timex.h>

#include <algorithm>
#include <cmath>

#include "clock/adjtimex_driver.hpp"

namespace taid::sim {
namespace {

// The kernel's maxerror growth per second (MAXFREQ, 500 ppm) and its ceiling (NTP_PHASE_LIMIT).
constexpr Duration kMaxErrorGrowthPerSecond = Duration::from_us(500);
constexpr Duration kMaxErrorLimit = Duration::from_s(16);

}  // namespace

double SimClockDriver::kernel_frequency_ppb(double ppb) {
  const double limit = clock::kSystemClockMaxFrequencyPpb;
  const double clamped = std::clamp(ppb, -limit, limit);
  // ppb → scaled ppm (ppm × 2^16), rounded to the integer the kernel keeps (half away from zero,
  // as the adjtimex driver rounds), and back.
  return static_cast<double>(std::llround(clamped * 65536.0 / 1000.0)) * 1000.0 / 65536.0;
}

Result<double> SimClockDriver::set_frequency_ppb(double ppb) {
  const double applied = kernel_frequency_ppb(ppb);
  clock_.set_driver_frequency_ppb(applied);
  applied_ppb_ = applied;
  ++frequency_sets_;
  return applied;
}

Result<void> SimClockDriver::step(Duration offset) {
  clock_.step(offset);
  ++steps_;
  return {};
}

Result<void> SimClockDriver::step_with_tai_offset(Duration offset, int32_t tai_offset_s) {
  // No simulated time passes between the two: atomic, as the one adjtimex call is.
  clock_.step(offset);
  clock_.set_tai_offset(tai_offset_s);
  ++steps_;
  return {};
}

Result<void> SimClockDriver::set_leap(clock::LeapState leap) {
  leap_ = leap;
  clock_.set_kernel_leap(leap);
  return {};
}

Result<void> SimClockDriver::set_sync_status(const clock::SyncStatus& status) {
  sync_ = status;
  sync_set_monotonic_ = clock_.monotonic();
  return {};
}

Result<void> SimClockDriver::set_tai_offset(int32_t seconds) {
  clock_.set_tai_offset(seconds);
  return {};
}

std::optional<int> SimClockDriver::noticed_kernel_leap() {
  const auto& leaps = clock_.kernel_leaps();
  if (leaps.size() == reported_kernel_leaps_) return std::nullopt;
  reported_kernel_leaps_ = leaps.size();
  return leaps.back().direction;
}

Result<clock::KernelTimeState> SimClockDriver::state() {
  clock::KernelTimeState s;
  const int64_t seconds_since_set = (clock_.monotonic() - sync_set_monotonic_).ns() / 1000000000;
  s.max_error = sync_.max_error + kMaxErrorGrowthPerSecond * seconds_since_set;
  bool unsync = !sync_.synchronized;
  if (s.max_error > kMaxErrorLimit) {
    s.max_error = kMaxErrorLimit;
    unsync = true;
  }
  s.est_error = sync_.est_error;
  s.status = STA_NANO;
  if (unsync) s.status |= STA_UNSYNC;
  if (clock_.kernel_leap() == clock::LeapState::insert) s.status |= STA_INS;
  if (clock_.kernel_leap() == clock::LeapState::delete_) s.status |= STA_DEL;
  s.clock_state = unsync ? TIME_ERROR : clock_.kernel_time_state();
  s.frequency_ppb = clock_.driver_frequency_ppb();
  // The tick carries whole 100 ppm steps (USER_HZ 100: 10 000 µs nominal), timex.freq the rest.
  s.tick_us = 10000 + std::lround(s.frequency_ppb / 100000.0);
  s.precision = Duration::from_ns(1);
  s.tolerance_ppb = 500000;
  s.tai_offset_s = clock_.tai_offset_s();
  s.time = clock_.local();
  return s;
}

std::optional<std::string> SimClockDriver::noticed_interference() {
  std::string report;
  if (clock_.driver_frequency_ppb() != applied_ppb_) {
    report = clock::frequency_interference_message(clock_.driver_frequency_ppb(), applied_ppb_);
    applied_ppb_ = clock_.driver_frequency_ppb();  // reported once, as the adjtimex driver does
  }
  if (auto step = clock::unexplained_step(foreign_steps_, Duration{})) {
    if (!report.empty()) report += "; ";
    report += clock::step_interference_message(*step);
  }
  foreign_steps_ = Duration{};
  if (report.empty()) return std::nullopt;
  return report;
}

void SimClockDriver::interfere_step(Duration offset) {
  clock_.step(offset);
  foreign_steps_ += offset;
}

void SimClockDriver::interfere_set_frequency_ppb(double ppb) {
  clock_.set_driver_frequency_ppb(kernel_frequency_ppb(ppb));
}

}  // namespace taid::sim
