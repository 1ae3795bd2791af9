// The leap-second plan (chrony's reference.c leap handling): which leap second is due at the end
// of today and from whose word, whether taid can vouch for the kernel's TAI offset, and when the
// clock must be corrected. Pure: the Timekeeper feeds it the cooked time, the sync state and the
// sources' vote, and carries out what it says.
//
// Rules (issue 9):
//   - The TAI offset is set (ADJ_TAI) only from a table that speaks for now (not expired), once
//     the clock is synchronized, or before that as soon as the clock's date is after the table's
//     last entry (every later date until the expiry has that entry's offset).
//   - A leap second is armed for the end of the current UTC day, while synchronized, from the
//     table when it covers that midnight, else from a majority of the selected sources' LI bits
//     (only on 30 June and 31 December, as chrony). A table that disagrees with the majority is
//     logged; the table wins. An arming from sources is dropped if the majority changes its mind.
//   - At the leap, per leapsecmode: `system` lets the kernel insert/delete it (STA_INS/STA_DEL)
//     and changes nothing itself (the kernel changes its TAI offset); `step` steps the clock by
//     ∓1 s together with the TAI offset in one call; `slew` sets the TAI offset and slews the
//     second out at maxslewrate; `ignore` sets the TAI offset only and leaves the clock 1 s off
//     for the servo to find. In every mode the TAI offset changes once.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/time.hpp"
#include "ntp/packet.hpp"
#include "timescale/leap_table.hpp"

namespace taid::timekeeping {

enum class LeapMode { system, step, slew, ignore };
std::string_view to_string(LeapMode mode);
std::optional<LeapMode> parse_leap_mode(std::string_view text);

// How the sources vote on a leap at the end of today: how many selected sources carry each LI.
struct LeapVote {
  int selected = 0;
  int insert = 0;
  int delete_ = 0;
  // +1 / −1 when more than half of the selected sources announce it, else 0.
  int majority() const;
};

class LeapSchedule {
 public:
  LeapSchedule(LeapMode mode, int32_t kernel_tai_offset_s)
      : mode_(mode), kernel_tai_(kernel_tai_offset_s) {}

  // A new table (loaded or reloaded), or none with the reason (what was wrong with the file).
  void set_table(std::optional<timescale::LeapTable> table, std::string note);

  // What changes now. `now` is cooked UTC. The out-parameters say what the caller must do:
  struct Step {
    std::optional<int32_t> set_tai_offset_s;  // ADJ_TAI now
    std::optional<int> arm;                   // kernel flag: +1 insert, −1 delete, 0 clear (system)
    std::string log;                          // one line to log (empty: nothing)
    bool log_is_warning = false;
  };
  // Under observe only nothing is set or armed; taid vouches for the kernel's TAI offset when it
  // is the table's.
  Step update(UtcTime now, bool synchronized, const LeapVote& vote, bool observe_only);

  // The leap armed for the midnight `due_at()` (+1 / −1), 0 when none.
  int armed() const { return armed_; }
  std::optional<UtcTime> due_at() const { return due_; }
  std::string_view armed_from() const { return armed_from_; }
  LeapMode mode() const { return mode_; }

  // The leap happened (the kernel did it, or the core at the timer): the TAI offset changed by
  // `direction`; nothing is armed for that midnight again.
  void on_leap_done(int direction);
  // The clock was stepped (by us or anyone): the kernel forgets an armed leap at a step (its
  // next-leap second is cleared while TIME_INS stays), so under `system` the flag is cleared now
  // and set again kRearmDelay later, once the kernel has returned to TIME_OK.
  void on_clock_stepped(UtcTime now);
  std::optional<UtcTime> rearm_at() const { return rearm_at_; }
  static constexpr Duration kRearmDelay = Duration::from_ms(1500);
  // Within ±kLeapClose of a leap armed or just done: a reply then is not used (chrony drops them
  // too: a round trip across two clocks' leaps is a second off).
  bool near_leap(UtcTime t) const;
  static constexpr Duration kLeapClose = Duration::from_s(2);

  // What `taictl tracking` shows.
  int32_t kernel_tai_offset_s() const { return kernel_tai_; }
  bool vouched() const { return vouched_; }
  // TAI − UTC now by the table, when it speaks for today and the date is known (synchronized,
  // or after its last entry), whatever the kernel has; nullopt otherwise and within kLeapClose
  // of a leap (a POSIX reading there is ambiguous). What a signed TAI time is made with.
  std::optional<int32_t> known_offset() const { return known_offset_; }
  const std::string& tai_note() const { return tai_note_; }  // where it came from / why not
  const std::optional<timescale::LeapTable>& table() const { return table_; }
  const std::string& table_note() const { return table_note_; }

 private:
  LeapMode mode_;
  int32_t kernel_tai_;
  std::optional<timescale::LeapTable> table_;
  std::string table_note_ = "no leap table";
  bool vouched_ = false;
  std::optional<int32_t> known_offset_;
  std::string tai_note_ = "no leap table";
  int armed_ = 0;
  std::optional<UtcTime> due_;
  std::string armed_from_;
  std::optional<UtcTime> done_;  // the midnight of the last leap carried out
  bool pending_clear_ = false;    // the kernel's STA_INS/STA_DEL is still set after its leap
  std::optional<UtcTime> rearm_at_;  // set the kernel flag again from then (after a step)
  std::string last_disagreement_;
  std::string last_ignored_;
};

}  // namespace taid::timekeeping
