// The leap-second plan: the TAI offset taid vouches for, the leap armed for tonight and from whose
// word (see leap_schedule.hpp for the rules).
#include "timekeeping/leap_schedule.hpp"

#include <chrono>
#include <cstdio>

#include "core/strcat.hpp"

namespace taid::timekeeping {

namespace {

constexpr int64_t kNsPerS = 1000000000;
constexpr int64_t kSecondsPerDay = 86400;

std::chrono::year_month_day civil_day(int64_t utc_s) {
  return std::chrono::year_month_day{
      std::chrono::sys_days{std::chrono::days{floor_div(utc_s, kSecondsPerDay)}}};
}

std::string date_of(int64_t utc_s) {
  const auto ymd = civil_day(utc_s);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02u", static_cast<int>(ymd.year()),
                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()));
  return buf;
}

// The last second of the day the leap ends: 23:59:60 for an insertion, 23:59:58 for a deletion.
std::string leap_label(int64_t midnight_s, int direction) {
  return strcat(date_of(midnight_s - 1), direction > 0 ? "T23:59:60Z" : "T23:59:58Z");
}

const char* leap_name(int direction) { return direction > 0 ? "insertion" : "deletion"; }

// chrony's rule for leap seconds announced by sources: only at the end of June or December.
bool leap_day(int64_t utc_s) {
  const auto ymd = civil_day(utc_s);
  const unsigned month = static_cast<unsigned>(ymd.month());
  const unsigned day = static_cast<unsigned>(ymd.day());
  return (month == 6 && day == 30) || (month == 12 && day == 31);
}

}  // namespace

std::string_view to_string(LeapMode mode) {
  switch (mode) {
    case LeapMode::system:
      return "system";
    case LeapMode::step:
      return "step";
    case LeapMode::slew:
      return "slew";
    case LeapMode::ignore:
      return "ignore";
  }
  return "?";
}

std::optional<LeapMode> parse_leap_mode(std::string_view text) {
  for (LeapMode mode : {LeapMode::system, LeapMode::step, LeapMode::slew, LeapMode::ignore})
    if (text == to_string(mode)) return mode;
  return std::nullopt;
}

int LeapVote::majority() const {
  if (insert * 2 > selected) return 1;
  if (delete_ * 2 > selected) return -1;
  return 0;
}

void LeapSchedule::set_table(std::optional<timescale::LeapTable> table, std::string note) {
  table_ = std::move(table);
  table_note_ = std::move(note);
}

bool LeapSchedule::near_leap(UtcTime t) const {
  const auto close = [t](UtcTime midnight) { return (t - midnight).abs() <= kLeapClose; };
  return (due_ && close(*due_)) || (done_ && close(*done_));
}

void LeapSchedule::on_clock_stepped(UtcTime now) {
  if (armed_ == 0 || mode_ != LeapMode::system) return;
  pending_clear_ = true;
  rearm_at_ = now + kRearmDelay;
}

void LeapSchedule::on_leap_done(int direction) {
  rearm_at_.reset();
  kernel_tai_ += direction;
  done_ = due_;
  armed_ = 0;
  due_.reset();
  armed_from_.clear();
  pending_clear_ = mode_ == LeapMode::system;
}

LeapSchedule::Step LeapSchedule::update(UtcTime now, bool synchronized, const LeapVote& vote,
                                        bool observe_only) {
  Step step;
  const int64_t now_s = floor_div(now.unix_ns(), kNsPerS);
  const int64_t midnight_s = (floor_div(now_s, kSecondsPerDay) + 1) * kSecondsPerDay;
  const UtcTime midnight = UtcTime::from_unix_ns(midnight_s * kNsPerS);
  const auto add_log = [&step](bool warning, const std::string& line) {
    if (!step.log.empty()) step.log += "; ";
    step.log += line;
    step.log_is_warning = step.log_is_warning || warning;
  };

  if (pending_clear_) {
    pending_clear_ = false;
    if (!observe_only) step.arm = 0;
  } else if (rearm_at_ && now >= *rearm_at_) {
    rearm_at_.reset();
    if (!observe_only && armed_ != 0) {
      step.arm = armed_;
      add_log(false, strcat("leap second ", leap_name(armed_), " armed again after a step"));
    }
  }

  // The TAI offset: the table's for now, once the date is known, and never across the leap
  // being carried out (the kernel or the leap timer changes it there, once).
  known_offset_.reset();
  if (!table_) {
    vouched_ = false;
    tai_note_ = table_note_;
  } else if (!table_->covers(now_s)) {
    vouched_ = false;
    tai_note_ = strcat(table_->origin, " has expired (",
                       table_->expires_utc_s ? date_of(*table_->expires_utc_s) : "no expiry",
                       "): a leap second may have been announced since");
  } else if (const auto offset = table_->offset_at(now_s); !offset) {
    vouched_ = false;
    tai_note_ = "the clock's date is before the table's first entry (1972)";
  } else if (!synchronized && now_s <= table_->last_entry_utc_s()) {
    vouched_ = false;
    tai_note_ = "waiting for synchronisation: the clock's date is not after the table's last entry";
  } else if (!near_leap(now)) {
    known_offset_ = *offset;
    if (*offset != kernel_tai_ && !observe_only) {
      add_log(false, strcat("TAI offset set to ", *offset, " s (was ", kernel_tai_, " s) from ",
                            table_->origin));
      step.set_tai_offset_s = *offset;
      kernel_tai_ = *offset;
    }
    vouched_ = *offset == kernel_tai_;
    tai_note_ = vouched_ ? strcat(table_->origin,
                                  table_->expires_utc_s
                                      ? strcat(", expires ", date_of(*table_->expires_utc_s))
                                      : std::string())
                         : strcat("the kernel has ", kernel_tai_, " s, ", table_->origin,
                                  " says ", *offset, " s (observe only: not set)");
  }

  // The leap at the end of today. Around an armed leap nothing is decided again: a deletion
  // moves the clock into the next day before the leap is noticed.
  if (!synchronized || (armed_ != 0 && near_leap(now))) return step;
  const bool table_speaks = table_ && table_->covers(midnight_s - 1);
  const int table_says = table_speaks ? table_->leap_at_end_of_day(now_s) : 0;
  int sources_say = vote.majority();
  // The day after a leap the last samples may still carry the LI of the leap just done.
  if (done_ && now < *done_ + Duration::from_s(kSecondsPerDay)) sources_say = 0;
  if (sources_say != 0 && !leap_day(now_s)) {
    const std::string line = strcat("ignoring the sources' leap second ", leap_name(sources_say),
                                     " announced for ", date_of(now_s),
                                     ": not the last day of June or December");
    if (line != last_ignored_) add_log(true, line);
    last_ignored_ = line;
    sources_say = 0;
  }
  const bool done_tonight = done_ && *done_ == midnight;  // a repeated 23:59:59 is still that day
  int want = done_tonight ? 0 : table_speaks ? table_says : sources_say;
  const std::string from = table_speaks ? table_->origin : "a majority of the selected sources";
  if (table_speaks && !done_tonight && vote.selected > 0 && sources_say != table_says) {
    const std::string line =
        strcat(table_->origin, " says ", table_says == 0 ? "no leap second" : leap_name(table_says),
               " at the end of ", date_of(now_s), ", the majority of sources ",
               sources_say == 0 ? "announces none" : strcat("announces an ", leap_name(sources_say)),
               ": the table wins");
    if (line != last_disagreement_) add_log(true, line);
    last_disagreement_ = line;
  }
  if (want == armed_ && (want == 0 || due_ == midnight)) return step;
  if (want != 0) {
    armed_ = want;
    due_ = midnight;
    armed_from_ = from;
    add_log(false, strcat("leap second ", leap_name(want), " armed for ",
                          leap_label(midnight_s, want), " (from ", from, ", leapsecmode ",
                          to_string(mode_), ")"));
  } else {
    add_log(true, strcat("leap second ", leap_name(armed_), " for ",
                         leap_label(floor_div(due_->unix_ns(), kNsPerS), armed_),
                         " disarmed: ", from, " no longer announces it"));
    armed_ = 0;
    due_.reset();
    armed_from_.clear();
  }
  if (mode_ == LeapMode::system && !observe_only) step.arm = armed_;
  return step;
}

}  // namespace taid::timekeeping
