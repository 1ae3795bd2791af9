// The timekeeping core (chrony's sources.c + reference.c): the sources' exchanges, selection
// among them, the servo, and the clock's sync state — sans-IO. The daemon's engine and the
// simulator drive the same Timekeeper; both only carry out what it returns.
//
//   exchange(id).on_timer / on_packet        the daemon feeds each source as before, then
//   on_source_event(id, now)                 tells the core: selection runs, and a new sample
//                                            of a selected source updates the clock
//   on_timer(now)                            when the last SetTimer expires (a slew ends)
//   cook(stamp)                              every local stamp, before an exchange sees it
//   apply_clock_actions(...)                 carries clock actions out on a ClockDriver and
//                                            reports back what was applied
//                                            (on_frequency_applied / on_stepped), which
//                                            corrects every source's sample history
//
// Units and sign: offsets positive when the local clock is behind true time; frequencies in
// ppb, kernel sense (positive: faster).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "clock/clock_driver.hpp"
#include "core/time.hpp"
#include "ntp/exchange.hpp"
#include "selection/selection.hpp"
#include "servo/servo.hpp"
#include "timekeeping/leap_schedule.hpp"
#include "timescale/leap_table.hpp"

namespace taid::timekeeping {

using SourceId = uint32_t;
struct SourceEstimate;  // timekeeper.cpp

struct Settings {
  selection::Settings selection;
  servo::Settings servo;
  servo::Kind servo_kind = servo::Kind::estimate;
  // maxclockerror PPM (chrony's name and default 1 ppm): how fast the error bound grows with
  // the time since the last update, on top of the frequency's uncertainty.
  double max_clock_error_ppm = 1;
  // Starting frequency (drift file), ppb; the driver's current frequency when nullopt.
  std::optional<double> initial_frequency_ppb;
  // The driver's range (ClockDriver::max_frequency_ppb): base + slew stays within it.
  double max_frequency_ppb = clock::kSystemClockMaxFrequencyPpb;
  // Observe only (-x): selection and the combined estimate run and are reported, but no clock
  // action comes out and the servo never runs (the offset is measured, not corrected).
  bool observe_only = false;
  // Leap seconds (leap_schedule.hpp): leapsecmode, the table (leapseclist / leapsectz; nullopt
  // with the reason in leap_table_note), and the kernel's TAI offset when the core starts.
  LeapMode leap_mode = LeapMode::system;
  std::optional<timescale::LeapTable> leap_table;
  std::string leap_table_note = "no leap table";
  int32_t kernel_tai_offset_s = 0;
};

// Clock actions, carried out in order.
struct SetFrequency {
  double ppb = 0;  // absolute
};
struct StepClock {
  Duration offset;  // positive: forward
  // A leap second stepped by the core: the TAI offset set in the same call (CLOCK_TAI unmoved).
  std::optional<int32_t> tai_offset_s;
};
struct SetTaiOffset {
  int32_t seconds = 0;  // TAI − UTC (ADJ_TAI)
};
struct SetSyncStatus {
  clock::SyncStatus status;  // synchronized, maxerror, esterror
};
struct SetLeap {
  clock::LeapState leap = clock::LeapState::none;
};
struct SetTimer {
  Duration after;  // call on_timer() again after this long (replaces any pending timer)
};
struct LogLine {
  bool warning = false;
  std::string text;
};
struct Stop {
  std::string reason;  // maxchange exhausted: the daemon exits, as chronyd does
};
struct PollNow {
  SourceId id = 0;  // run this source's poll process now (its exchange has a burst to send)
};
using Action = std::variant<SetFrequency, StepClock, SetSyncStatus, SetLeap, SetTaiOffset, SetTimer,
                            LogLine, Stop, PollNow>;
using Actions = std::vector<Action>;

// What `taictl tracking` shows (chronyc tracking's fields).
struct Tracking {
  bool synchronized = false;
  std::optional<SourceId> reference;
  uint8_t stratum = 16;  // the system peer's + 1
  uint32_t reference_id = 0;
  ntp::Leap leap = ntp::Leap::unsynchronized;
  Duration system_offset;  // what is still being slewed out (positive: the clock is behind)
  Duration last_offset;    // the offset at the last update
  Duration rms_offset;     // over recent updates
  double frequency_ppb = 0;           // base frequency applied (without the slew)
  double residual_frequency_ppb = 0;  // of the last update's estimate
  double skew_ppb = 0;
  Duration root_delay;
  Duration root_dispersion;
  Duration update_interval;
  std::optional<UtcTime> last_update;
  Duration error_bound;  // maxerror at the last update
  servo::State servo_state = servo::State::unlocked;
  std::string no_selection_reason;
  uint64_t updates = 0;
  uint64_t steps = 0;
  // TAI: the kernel's offset as the core set or saw it, whether taid vouches for it (the table
  // speaks for today and the kernel has its value), and where it came from or why not.
  int32_t tai_offset_s = 0;
  bool tai_vouched = false;
  std::optional<int32_t> table_tai_offset_s;  // LeapSchedule::known_offset()
  std::string tai_note;
  std::string leap_table;          // the table's origin, or why there is none
  LeapMode leap_mode = LeapMode::system;
  int leap_armed = 0;              // +1 insertion / −1 deletion armed for leap_at
  std::optional<UtcTime> leap_at;  // the midnight it is due
  std::string leap_from;           // the table's origin or the sources' majority
  uint64_t leap_seconds = 0;       // carried out since start
  // Someone else changed the clock since the last update: the bound does not hold until the
  // next one (the shared-memory record says "disrupted").
  bool disrupted = false;
  uint64_t replies_dropped_near_leap = 0;
};

// What a signed timestamp is made of, or why none can be (Timekeeper::signing_time).
struct SigningTime {
  int64_t tai_ns = 0;  // CLOCK_REALTIME + the table's TAI − UTC
  Duration bound;      // > 0
  int leap = 0;        // +1 / −1 armed for tonight
  bool measured = false;  // -x: the clock is measured, not steered
};
struct SigningRefusal {
  enum class Why { unsynchronized, tai_unvouched, bound_too_large };
  Why why = Why::unsynchronized;
  std::string text;
};
using SigningVerdict = std::variant<SigningTime, SigningRefusal>;

struct SourceView {
  SourceId id = 0;
  const ntp::Exchange* exchange = nullptr;
  selection::Options options;
  selection::Mark mark = selection::Mark::unusable;
};

class Timekeeper {
 public:
  // `frequency_ppb`: the driver's frequency when the core starts (used unless the settings
  // carry a drift-file frequency, which the first actions then set).
  Timekeeper(Settings settings, double frequency_ppb);
  ~Timekeeper();

  // How often the core looks for changes made behind its back (a SetTimer at least this often
  // while disciplining: the carrier checks the driver each time it carries actions out).
  static constexpr Duration kInterferenceCheck = Duration::from_s(16);

  // The first actions: the drift file's frequency, sync status unsynchronized.
  Actions start(UtcTime now);

  // Sources. The core owns their exchanges; the daemon drives them through exchange(id).
  SourceId add_source(ntp::SourceConfig config, selection::Options options,
                      std::function<uint64_t()> random_u64);
  // The source starts over with a fresh exchange (its address changed); references to its
  // exchange stay valid.
  void restart_source(SourceId id, ntp::SourceConfig config);
  ntp::Exchange& exchange(SourceId id);
  const ntp::Exchange& exchange(SourceId id) const;
  // A reply for source `id`, stamped `rx` (cooked): handed to its exchange; within
  // LeapSchedule::kLeapClose of a leap second it answers the request but is not measured (as
  // chrony drops them: its round trip may span two clocks' leaps). The daemon calls this rather
  // than exchange(id).on_packet.
  ntp::Actions on_packet(SourceId id, std::span<const uint8_t> bytes, ntp::LocalTimestamp rx);
  std::vector<SourceView> sources() const;

  // After the daemon fed the source's exchange (timer or packet): selection runs again, and a
  // new estimate from a selected source updates the clock.
  Actions on_source_event(SourceId id, UtcTime now);
  Actions on_timer(UtcTime now);

  // Feedback from the carrier: the driver applied this frequency at `when` (also for a change
  // made behind our back), or stepped the clock by `offset`. Corrects every source's history.
  void on_frequency_applied(UtcTime when, double applied_ppb);
  void on_stepped(UtcTime when, Duration offset);
  // The driver says the kernel carried out the armed leap second (+1 inserted, −1 deleted). If
  // cook() already saw it in a stamp, nothing more; else the histories move by the kernel's step.
  Actions on_kernel_leap(UtcTime now, int direction);
  // A new leap table (the daemon reloads the file when it changes), or none and why.
  void set_leap_table(std::optional<timescale::LeapTable> table, std::string note);
  // Someone else changed the clock: an armed kernel leap may be forgotten (LeapSchedule).
  void on_interference(UtcTime now);

  // The cooked time scale (chrony's): the local clock plus what is still to be slewed out. The
  // daemon passes every local stamp through it before an exchange sees it (its time and its
  // monotonic reading alike), so the sources' histories run at the base frequency and an offset
  // the core decides to slew reads at once as the step it will have been: no source sees a
  // slew of 8 % as a frequency change, and no history must be corrected while one runs.
  //
  // Cooking also notices the kernel's leap second (leapsecmode system) at the first stamp taken
  // after it: (realtime − monotonic) dropped by the leap near the armed midnight. Every earlier
  // stamp in every history then moves by it, so no history ever mixes the two sides.
  ntp::LocalTimestamp cook(ntp::LocalTimestamp raw) const;

  const Tracking& tracking() const { return tracking_; }

  // The error bound at raw local time `now`: the last update's (|offset| + root delay / 2 + root
  // dispersion) grown by drift_ppb() since; kUnknownBound-like before any update.
  Duration error_bound_at(UtcTime now) const;
  // How fast the bound grows, ppb: maxclockerror, the frequency's uncertainty (skew) and the
  // residual frequency error the last update measured.
  double drift_ppb() const;
  // What the slew in progress has still to do at raw local time `now` (the raw clock's error
  // beyond the cooked scale's; positive: the clock is behind).
  Duration still_to_slew(UtcTime now) const;
  // The time to sign at raw local time `now` (CLOCK_REALTIME) and its bound, or why not: only
  // while synchronized and not disrupted (someone else changed the clock since the last update:
  // the carrier noticed it), with a table that vouches for today's TAI − UTC (not within 2 s of a
  // leap), and a bound within `max_bound`. The daemon's signing socket and the simulator both ask
  // this; the caller runs its interference check first (apply_clock_actions with no action).
  SigningVerdict signing_time(UtcTime now, Duration max_bound) const;
  // The leap table in use (the last good one set), if any.
  const std::optional<timescale::LeapTable>& leap_table() const;
  const Settings& settings() const { return settings_; }

 private:
  struct Impl;
  Actions source_event(SourceId id, UtcTime now);
  Actions leap_actions(UtcTime now, const LeapVote& vote);
  Actions carry_out_leap(UtcTime now);
  void kernel_leap_seen(int direction) const;
  Duration next_wake(UtcTime now) const;
  void update_leap_tracking();
  void record_update(const servo::Update& update, const selection::Result& result, SourceId peer,
                     const SourceEstimate& pe, servo::State state, bool stepped);
  std::unique_ptr<Impl> impl_;
  Settings settings_;
  Tracking tracking_;
};

// Carries clock actions out on `driver` in order and reports what was applied back to `core`.
// Returns what is left for the caller: SetTimer, LogLine (driver errors become warnings), Stop
// and PollNow. It also asks the driver whether someone else changed the clock; if so it logs
// it, takes the frequency the clock has now, and has every source start a burst (PollNow), so
// a foreign step is measured and corrected in seconds. The engine and the simulator both use
// it, so neither decides anything.
Actions apply_clock_actions(const Actions& actions, clock::ClockDriver& driver, Timekeeper& core);

}  // namespace taid::timekeeping
