// AdjtimexDriver: the system clock's discipline through adjtimex (PLL off, tick + frequency,
// ADJ_SETOFFSET steps, leap and sync status, TAI offset), and noticing who else wrote it.
#include "clock/adjtimex_driver.hpp"

#include <linux/capability.h>
#include <sys/syscall.h>
#include <sys/timex.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <utility>

#include "core/log.hpp"

namespace taid::clock {
namespace {

// The STA_* bits the kernel keeps for itself (STA_RONLY in <linux/timex.h>): ADJ_STATUS cannot
// set or clear them, so the words we write leave them out.
constexpr uint32_t kReadOnlyStatus = STA_PPSSIGNAL | STA_PPSJITTER | STA_PPSWANDER | STA_PPSERROR |
                                     STA_CLOCKERR | STA_NANO | STA_MODE | STA_CLK;

constexpr double kScaledPerPpm = 65536.0;

// Half away from zero, as chrony's our_round(): symmetric for positive and negative rates.
int64_t round_half_away(double x) { return static_cast<int64_t>(x < 0 ? x - 0.5 : x + 0.5); }

std::string hex_status(uint32_t status) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%04x", status);
  return buf;
}

// One adjtimex; the context names the mode bits for the error message.
Result<int> call_adjtimex(::timex& tx, const char* what) {
  const int state = ::adjtimex(&tx);
  if (state == -1) return Error::from_errno(strcat("adjtimex(", what, ")"));
  return state;
}

Result<::timex> read_timex() {
  ::timex tx{};
  tx.modes = 0;  // read only
  auto r = call_adjtimex(tx, "modes=0");
  if (!r) return r.error();
  return tx;
}

Duration timespec_diff(const timespec& a, const timespec& b) {
  return Duration::from_ns((int64_t{a.tv_sec} - b.tv_sec) * 1'000'000'000 +
                           (int64_t{a.tv_nsec} - b.tv_nsec));
}

}  // namespace

Result<void> check_clock_privilege() {
  // capget rather than libcap: one syscall, and version 3 covers all 64 capability bits.
  __user_cap_header_struct header{};
  header.version = _LINUX_CAPABILITY_VERSION_3;
  header.pid = 0;  // this thread
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3]{};
  if (::syscall(SYS_capget, &header, data) != 0) return Error::from_errno("capget");
  static_assert(CAP_SYS_TIME < 32, "CAP_SYS_TIME lives in the first capability word");
  if ((data[0].effective & (uint32_t{1} << CAP_SYS_TIME)) != 0) return {};
  return Error::plain(
      "disciplining the clock needs CAP_SYS_TIME: run taid as root or with that capability, or "
      "with -x to observe only");
}

TickRange tick_range(int64_t user_hz) {
  // The kernel's own expressions: TICK_USEC = (USEC_PER_SEC + USER_HZ/2) / USER_HZ, and
  // adjtimex refuses a tick below 900000 / USER_HZ or above 1100000 / USER_HZ.
  return {(1'000'000 + user_hz / 2) / user_hz, 900'000 / user_hz, 1'100'000 / user_hz};
}

double combined_frequency_ppb(const TickAndFrequency& tf, int64_t user_hz) {
  // ntp_update_frequency(): second_length = tick_usec * 1000 * USER_HZ ns + time_freq, and
  // time_freq is freq in ns/s (1 ppm = 1000 ns/s), so the two parts add.
  const double tick_ppb = static_cast<double>(tf.tick_us * user_hz - 1'000'000) * 1000.0;
  return tick_ppb + static_cast<double>(tf.freq_scaled) * 1000.0 / kScaledPerPpm;
}

TickAndFrequency split_frequency(double ppb, int64_t user_hz, int64_t current_tick_us) {
  const TickRange range = tick_range(user_hz);
  const double max_ppb = combined_frequency_ppb({range.max_us, kMaxFreqScaled}, user_hz);
  const double min_ppb = combined_frequency_ppb({range.min_us, -kMaxFreqScaled}, user_hz);
  const double ppm = std::clamp(ppb, min_ppb, max_ppb) / 1000.0;
  const double hz = static_cast<double>(user_hz);
  // The tick whose own rate, tick * USER_HZ − 1e6 ppm, is nearest the target, counted from the
  // nominal tick (whose rate is not 0 when USER_HZ does not divide 1e6) so halves round away
  // from it either way, as in chrony.
  const double nominal_ppm = static_cast<double>(range.nominal_us * user_hz - 1'000'000);
  int64_t tick = range.nominal_us + round_half_away((ppm - nominal_ppm) / hz);
  // chrony keeps the current tick when the wanted one is its neighbour: with USER_HZ <= 250
  // the ±500 ppm of freq covers the 1.5 ticks that leaves to it, and the tick stops flapping
  // when the frequency hovers near a tick boundary.
  if (user_hz <= 250 && (tick == current_tick_us + 1 || tick == current_tick_us - 1)) {
    tick = current_tick_us;
  }
  tick = std::clamp(tick, range.min_us, range.max_us);
  const double rest_ppm = ppm - static_cast<double>(tick * user_hz - 1'000'000);
  const int64_t freq = std::clamp(static_cast<int64_t>(std::llround(rest_ppm * kScaledPerPpm)),
                                  -kMaxFreqScaled, kMaxFreqScaled);
  return {tick, freq};
}

SetOffsetTime setoffset_time(Duration offset) {
  const int64_t ns = offset.ns();
  const int64_t seconds = floor_div(ns, 1'000'000'000);
  return {seconds, ns - seconds * 1'000'000'000};
}

uint32_t status_without_pll(uint32_t kernel_status) {
  return kernel_status & ~kReadOnlyStatus &
         ~uint32_t{STA_PLL | STA_FLL | STA_PPSFREQ | STA_PPSTIME};
}

uint32_t status_with_leap(uint32_t kernel_status, LeapState leap) {
  uint32_t s = kernel_status & ~kReadOnlyStatus & ~uint32_t{STA_INS | STA_DEL};
  if (leap == LeapState::insert) s |= STA_INS;
  if (leap == LeapState::delete_) s |= STA_DEL;
  return s;
}

uint32_t status_with_sync(uint32_t kernel_status, bool synchronized) {
  const uint32_t s = kernel_status & ~kReadOnlyStatus;
  return synchronized ? s & ~uint32_t{STA_UNSYNC} : s | STA_UNSYNC;
}

int64_t error_bound_us(Duration error) {
  if (error.ns() <= 0) return 0;
  const int64_t us = (error.ns() + 999) / 1000;
  return std::min(us, kMaxErrorUs);
}

std::optional<Duration> unexplained_step(Duration observed_change, Duration own_steps,
                                         Duration uncertainty) {
  const Duration rest = observed_change - own_steps;
  if (rest.abs() > kStepInterferenceThreshold + uncertainty) return rest;
  return std::nullopt;
}

std::string frequency_interference_message(double kernel_ppb, double taid_ppb) {
  char buf[160];
  std::snprintf(buf, sizeof buf,
                "frequency changed behind taid's back: now %.3f ppm, taid set %.3f ppm",
                kernel_ppb / 1000.0, taid_ppb / 1000.0);
  return buf;
}

std::string step_interference_message(Duration step) {
  // Milliseconds: the threshold is 1 ms, and the reading itself is good to microseconds.
  char buf[96];
  std::snprintf(buf, sizeof buf, "clock stepped by another process by %+.3f s", step.seconds());
  return buf;
}

std::string tai_interference_message(int32_t from_s, int32_t to_s) {
  return strcat("TAI offset changed from ", from_s, " s to ", to_s, " s by another process");
}

ClockCheckVerdict judge_clock_check(const ClockCheck& c) {
  ClockCheckVerdict verdict;
  const int32_t foreign_tai_s = c.tai_now_s - c.tai_before_s - c.own_tai_change_s;
  // What CLOCK_TAI − BOOTTIME should have done: our steps, and our TAI offset changes (ADJ_TAI
  // moves CLOCK_TAI, not REALTIME).
  Duration explained = c.own_steps + Duration::from_s(c.own_tai_change_s);
  if (foreign_tai_s != 0) {
    const Duration rest = c.tai_clock_change - explained;
    const bool tai_clock_still = rest.abs() <= kStepInterferenceThreshold + c.uncertainty;
    if (c.armed_leap != 0 && foreign_tai_s == c.armed_leap && tai_clock_still) {
      verdict.kernel_leap = foreign_tai_s;
    } else {
      verdict.tai_interference =
          tai_interference_message(c.tai_before_s + c.own_tai_change_s, c.tai_now_s);
      explained += Duration::from_s(foreign_tai_s);  // moved CLOCK_TAI by itself: not a step
    }
  }
  verdict.step = unexplained_step(c.tai_clock_change, explained, c.uncertainty);
  return verdict;
}

Result<std::unique_ptr<AdjtimexDriver>> AdjtimexDriver::open() {
  // Refused up front with the operator's explanation, rather than an EPERM halfway through.
  if (auto privileged = check_clock_privilege(); !privileged) return privileged.error();
  std::unique_ptr<AdjtimexDriver> d(new AdjtimexDriver());
  const long hz = ::sysconf(_SC_CLK_TCK);
  if (hz < 1) return Error::from_errno("sysconf(_SC_CLK_TCK)");
  d->user_hz_ = hz;

  auto before = read_timex();
  if (!before) return before.error();
  d->status_before_open_ = static_cast<uint32_t>(before->status);
  const uint32_t status = status_without_pll(d->status_before_open_);

  // As chrony's initialise_timex(): the PLL offset is only written while STA_PLL is on, so
  // zero it with the PLL on, then switch the PLL (and FLL, PPS) off. A leftover offset would
  // keep slewing the clock behind our frequency.
  ::timex tx{};
  tx.modes = ADJ_OFFSET | ADJ_STATUS;
  tx.status = static_cast<int>(status | STA_PLL);
  tx.offset = 0;
  if (auto r = call_adjtimex(tx, "ADJ_OFFSET|ADJ_STATUS"); !r) return r.error();
  tx = {};
  tx.modes = ADJ_STATUS;
  tx.status = static_cast<int>(status);
  if (auto r = call_adjtimex(tx, "ADJ_STATUS"); !r) return r.error();
  // And an adjtime() slew in progress, as chrony's sys_linux.c does.
  tx = {};
  tx.modes = ADJ_OFFSET_SINGLESHOT;
  tx.offset = 0;
  if (auto r = call_adjtimex(tx, "ADJ_OFFSET_SINGLESHOT"); !r) return r.error();

  auto after = read_timex();
  if (!after) return after.error();
  d->status_after_open_ = static_cast<uint32_t>(after->status);
  d->applied_ = {after->tick, after->freq};
  d->tai_minus_boottime_ = tai_minus_boottime();
  d->tai_offset_s_ = after->tai;
  // A leap armed before we started (a restarted taid's) is the kernel's all the same.
  const auto armed = static_cast<uint32_t>(after->status);
  d->armed_leap_ = (armed & STA_INS) != 0 ? 1 : (armed & STA_DEL) != 0 ? -1 : 0;
  d->armed_leap_since_check_ = d->armed_leap_;
  log_info(strcat("adjtimex: kernel PLL off, status ", hex_status(d->status_before_open_), " -> ",
                  hex_status(d->status_after_open_), "; frequency ",
                  combined_frequency_ppb(d->applied_, d->user_hz_) / 1000.0, " ppm (tick ",
                  after->tick, " us, USER_HZ ", d->user_hz_, ")"));
  return d;
}

ClockDifference AdjtimexDriver::tai_minus_boottime() {
  // BOOTTIME read on both sides of TAI, so a reading is good to half the time the reads
  // take: microseconds, unless the thread was preempted in between (milliseconds in a loaded
  // VM), hence the narrowest of a few.
  ClockDifference best{Duration{}, Duration::from_s(1000)};
  for (int i = 0; i < 5; ++i) {
    timespec boot1{}, tai{}, boot2{};
    clock_gettime(CLOCK_BOOTTIME, &boot1);
    clock_gettime(CLOCK_TAI, &tai);
    clock_gettime(CLOCK_BOOTTIME, &boot2);
    const Duration half_bracket = timespec_diff(boot2, boot1) / 2;
    if (half_bracket < best.uncertainty) {
      best = {timespec_diff(tai, boot1) - half_bracket, half_bracket};
    }
    if (best.uncertainty < Duration::from_us(20)) break;
  }
  return best;
}

UtcTime AdjtimexDriver::now() { return realtime_now(); }

Result<double> AdjtimexDriver::frequency_ppb() {
  auto tx = read_timex();
  if (!tx) return tx.error();
  return combined_frequency_ppb({tx->tick, tx->freq}, user_hz_);
}

Result<double> AdjtimexDriver::set_frequency_ppb(double ppb) {
  const TickAndFrequency want = split_frequency(ppb, user_hz_, applied_.tick_us);
  ::timex tx{};
  tx.modes = ADJ_FREQUENCY | ADJ_TICK;
  tx.tick = want.tick_us;
  tx.freq = want.freq_scaled;
  if (auto r = call_adjtimex(tx, "ADJ_FREQUENCY|ADJ_TICK"); !r) return r.error();
  // The kernel writes its values back into tx; its freq may differ from ours by its own
  // rounding (it keeps ns/s with a binary fraction), so that read-back is what was applied.
  applied_ = {tx.tick, tx.freq};
  return combined_frequency_ppb(applied_, user_hz_);
}

Result<void> AdjtimexDriver::step(Duration offset) {
  const SetOffsetTime t = setoffset_time(offset);
  ::timex tx{};
  tx.modes = ADJ_SETOFFSET | ADJ_NANO;
  tx.time.tv_sec = t.seconds;
  tx.time.tv_usec = t.nanoseconds;  // nanoseconds under ADJ_NANO
  if (auto r = call_adjtimex(tx, "ADJ_SETOFFSET|ADJ_NANO"); !r) return r.error();
  own_steps_ += offset;
  return {};
}

Result<void> AdjtimexDriver::step_with_tai_offset(Duration offset, int32_t tai_offset_s) {
  if (tai_offset_s < 0) {
    return Error::plain(strcat("TAI offset ", tai_offset_s, " s: the kernel accepts only >= 0"));
  }
  // One adjtimex call: the kernel injects the offset, then sets the TAI offset.
  const SetOffsetTime t = setoffset_time(offset);
  ::timex tx{};
  tx.modes = ADJ_SETOFFSET | ADJ_NANO | ADJ_TAI;
  tx.time.tv_sec = t.seconds;
  tx.time.tv_usec = t.nanoseconds;  // nanoseconds under ADJ_NANO
  tx.constant = tai_offset_s;
  auto before = kernel_tai_offset();
  if (!before) return before.error();
  if (auto r = call_adjtimex(tx, "ADJ_SETOFFSET|ADJ_NANO|ADJ_TAI"); !r) return r.error();
  own_steps_ += offset;
  own_tai_change_s_ += tai_offset_s - *before;
  return {};
}

Result<int32_t> AdjtimexDriver::kernel_tai_offset() {
  auto tx = read_timex();
  if (!tx) return tx.error();
  return static_cast<int32_t>(tx->tai);
}

Result<void> AdjtimexDriver::set_leap(LeapState leap) {
  auto now = read_timex();
  if (!now) return now.error();
  ::timex tx{};
  tx.modes = ADJ_STATUS;
  tx.status = static_cast<int>(status_with_leap(static_cast<uint32_t>(now->status), leap));
  if (auto r = call_adjtimex(tx, "ADJ_STATUS"); !r) return r.error();
  armed_leap_ = leap == LeapState::insert ? 1 : leap == LeapState::delete_ ? -1 : 0;
  if (armed_leap_ != 0) armed_leap_since_check_ = armed_leap_;
  return {};
}

Result<void> AdjtimexDriver::set_sync_status(const SyncStatus& status) {
  auto now = read_timex();
  if (!now) return now.error();
  ::timex tx{};
  tx.modes = ADJ_STATUS | ADJ_MAXERROR | ADJ_ESTERROR;
  tx.status =
      static_cast<int>(status_with_sync(static_cast<uint32_t>(now->status), status.synchronized));
  tx.maxerror = error_bound_us(status.max_error);
  tx.esterror = error_bound_us(status.est_error);
  if (auto r = call_adjtimex(tx, "ADJ_STATUS|ADJ_MAXERROR|ADJ_ESTERROR"); !r) return r.error();
  return {};
}

Result<void> AdjtimexDriver::set_tai_offset(int32_t seconds) {
  if (seconds < 0) {
    return Error::plain(strcat("TAI offset ", seconds, " s: the kernel accepts only >= 0"));
  }
  auto before = kernel_tai_offset();
  if (!before) return before.error();
  ::timex tx{};
  tx.modes = ADJ_TAI;
  tx.constant = seconds;
  if (auto r = call_adjtimex(tx, "ADJ_TAI"); !r) return r.error();
  own_tai_change_s_ += seconds - *before;
  return {};
}

Result<KernelTimeState> AdjtimexDriver::state() { return read_kernel_time_state(); }

void AdjtimexDriver::check() {
  auto tx = read_timex();
  if (!tx) return;  // nothing to judge by; the next check tries again
  const TickAndFrequency kernel{tx->tick, tx->freq};
  if (kernel != applied_) {
    add_report(frequency_interference_message(combined_frequency_ppb(kernel, user_hz_),
                                              combined_frequency_ppb(applied_, user_hz_)));
    applied_ = kernel;  // reported once; the next set_frequency_ppb() takes over again
  }
  const ClockDifference now = tai_minus_boottime();
  // The TAI offset read again after CLOCK_TAI: if it changed in between (a leap second or an
  // ADJ_TAI at that very moment), the pair does not belong together; judge at the next check.
  auto tai_after = kernel_tai_offset();
  // A reading too uncertain to judge by is skipped: the baseline and our steps since it stay,
  // so a step made meanwhile is still found at the next check.
  if (!tai_after || *tai_after != tx->tai || now.uncertainty > kMaxReadingUncertainty) return;
  const ClockCheck seen{now.value - tai_minus_boottime_.value,
                        now.uncertainty + tai_minus_boottime_.uncertainty,
                        own_steps_,
                        tai_offset_s_,
                        *tai_after,
                        own_tai_change_s_,
                        armed_leap_since_check_};
  const ClockCheckVerdict verdict = judge_clock_check(seen);
  if (verdict.kernel_leap) {
    kernel_leap_ = verdict.kernel_leap;
    // Debug: the daemon logs the leap itself when noticed_kernel_leap() hands it over.
    log_debug(strcat("adjtimex: the kernel ", *verdict.kernel_leap > 0 ? "inserted" : "deleted",
                     " a leap second; TAI offset now ", *tai_after, " s"));
  }
  if (verdict.tai_interference) add_report(*verdict.tai_interference);
  if (verdict.step) add_report(step_interference_message(*verdict.step));
  tai_minus_boottime_ = now;
  tai_offset_s_ = *tai_after;
  own_steps_ = Duration{};
  own_tai_change_s_ = 0;
  armed_leap_since_check_ = armed_leap_;
}

void AdjtimexDriver::add_report(const std::string& line) {
  if (!pending_report_.empty()) pending_report_ += "; ";
  pending_report_ += line;
}

std::optional<std::string> AdjtimexDriver::noticed_interference() {
  check();
  if (pending_report_.empty()) return std::nullopt;
  std::string report = std::move(pending_report_);
  pending_report_.clear();
  return report;
}

std::optional<int> AdjtimexDriver::noticed_kernel_leap() {
  check();
  return std::exchange(kernel_leap_, std::nullopt);
}

}  // namespace taid::clock
