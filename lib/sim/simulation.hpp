// The scenario runner: the real timekeeping core (exchanges, filters, selection, servo) driven by
// a discrete-event simulation of the clock, the network and the servers — deterministic for a
// seed, 10 000 simulated seconds in well under a second.
//
// The runner decides nothing the daemon decides. It plays the clock (SimClock through
// SimClockDriver), the network (SimPath) and the servers (SimServer), and carries out what the
// core returns exactly as daemon/engine.cpp does:
//   poll:   exchange.on_timer(stamp) → its actions → core.on_source_event(id, now)
//   reply:  core.on_packet(id, bytes, stamp) → its actions → core.on_source_event(id, now)
//   clock:  apply_clock_actions(actions, driver, core) → SetTimer / LogLine / Stop
//   timer:  core.on_timer(now) when the core's last SetTimer expires.
// Stamps are kernel stamps (precision 2^-20 s) carrying CLOCK_MONOTONIC; the poll's stamp is the
// request's T1 (the packet leaves at that instant). Timers run on CLOCK_MONOTONIC, as the
// engine's steady timers do, so they are slewed with the clock and ignore its steps.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "core/time.hpp"
#include "ntp/exchange.hpp"
#include "selection/selection.hpp"
#include "servo/servo.hpp"
#include "sim/sim_clock.hpp"
#include "sim/sim_network.hpp"
#include "sim/sim_server.hpp"
#include "sim/truth.hpp"
#include "timekeeping/timekeeper.hpp"
#include "timescale/leap_table.hpp"

namespace taid::sim {

// One configured source: the server at the far end, the path to it, and the client's options.
struct SourceSetup {
  ServerModel server;
  PathModel path;
  ntp::SourceConfig config;  // name, minpoll, maxpoll, iburst, xleave
  selection::Options options;
};

// Something that happens to the client's clock behind the daemon's back.
struct ClockEvent {
  enum class Kind {
    step,                  // another process steps the clock by `offset`
    set_frequency,         // another process sets the kernel frequency to `ppb`
    oscillator_frequency,  // the oscillator's own frequency changes by `ppb`
  };
  Kind kind = Kind::step;
  Duration at;  // true time since the start
  Duration offset;
  double ppb = 0;
};

struct Scenario {
  std::string name = "scenario";
  uint64_t seed = 1;
  Duration duration = Duration::from_s(10000);
  UtcTime start = UtcTime::from_unix_ns(1798761600LL * 1000000000);  // 2027-01-01T00:00:00Z
  ClockModel clock;
  std::vector<SourceSetup> sources;
  timekeeping::Settings settings;  // the daemon's defaults unless a scenario overrides them
  std::vector<ClockEvent> events;
  Duration trace_interval = Duration::from_s(1);
  // Finer tracing in windows of true time (e.g. 100 ms around a leap second): inside [from, to)
  // a point every `interval` (the finer of this and trace_interval).
  struct TraceWindow {
    Duration from;
    Duration to;
    Duration interval;
  };
  std::vector<TraceWindow> fine_trace;
  // Signed timestamps: every sign_interval of true time (0: never) the runner asks the core for
  // a signing time as the daemon's signing socket does (interference check first), with this
  // maxsignbound, and records the verdict beside the true TAI.
  Duration sign_interval;
  Duration max_sign_bound = Duration::from_ms(100);

  // The truth's time scales: TAI − UTC in force at `start`, and the leap seconds after it. The
  // servers' clocks and LI bits follow them (see ServerModel); the clock's errors are against
  // them. The client's kernel starts with clock.initial_tai_offset_s (0: a fresh machine).
  int32_t true_tai_offset_s = 37;
  std::vector<TrueLeap> true_leaps;

  // One truthful stratum-1 server, 100 µs + 100 µs × Exp(1) each way; the client 0.1 s ahead at
  // +100 ppm with a wander of 1e-9 per √s; minpoll 6, maxpoll 10, iburst; 10 000 s.
  static Scenario reference();
  // The reference clock and path with `n` servers, named s1..sn, all on true time.
  static Scenario with_servers(std::string name, int n);

  Truth truth() const { return Truth(start, true_tai_offset_s, true_leaps); }
  // The truth of a leap table: true_tai_offset_s its offset at `start` (unchanged when the table
  // starts later), true_leaps its entries after `start` (each entry's change of offset at its
  // midnight). Set `start` first.
  void use_leap_table(const timescale::LeapTable& table);
};

// The state every trace_interval of true time.
struct TracePoint {
  Duration t;                      // true time since the start
  double offset_ns = 0;            // local − true (positive: the clock is ahead)
  double frequency_error_ppm = 0;  // oscillator + driver: how fast the clock runs against truth
  double driver_frequency_ppb = 0;
  servo::State servo_state = servo::State::unlocked;
  bool synchronized = false;
  std::string marks;                        // each source's selection mark, in order
  std::vector<uint64_t> envelope_restarts;  // each source's, so far
  // The core's error bound (tracking().error_bound: |offset| + root delay / 2 + root dispersion
  // at the last update) and the local time since that update (0 before the first); the kernel's
  // maxerror grows from the bound by 500 ppm of that time.
  double error_bound_ns = 0;
  double since_update_s = 0;
  // Leap seconds: CLOCK_REALTIME and CLOCK_TAI, the true TAI, CLOCK_TAI − true TAI (ns, with the
  // fraction), the kernel's TAI offset and its time_state (TIME_OK/INS/DEL/OOP/WAIT; the raw
  // state — adjtimex would say TIME_ERROR instead while unsynchronized).
  UtcTime local;
  TaiTime clock_tai;
  TaiTime true_tai;
  double tai_error_ns = 0;
  int32_t tai_offset_s = 0;
  int kernel_time_state = 0;
};

// One signing request of Scenario::sign_interval: the core's verdict and the truth.
struct SignSample {
  Duration t;                    // true time since the start
  TaiTime true_tai;              // the truth at that instant
  std::optional<int64_t> tai_ns; // signed: the token's time ...
  Duration bound;                // ... and bound
  std::string refusal;           // refused: why
};

struct LogEntry {
  Duration t;  // true time since the start
  bool warning = false;
  std::string text;
};

// What a run is judged by.
struct Criteria {
  Duration max_offset = Duration::from_ms(1);  // |offset| below this ...
  double max_frequency_error_ppm = 500;        // ... and |frequency error| below this ...
  Duration settled = Duration::from_s(210);    // ... and the figures below from here on
};

struct Statistics {
  // The first time from which |offset| < max_offset and |frequency error| < max for the rest of
  // the run; nullopt when the last trace point fails.
  std::optional<Duration> sync_time;
  std::optional<Duration> first_synchronized;  // when the core first said synchronized
  // From Criteria::settled on.
  double max_abs_offset_ns = 0;
  double rms_offset_ns = 0;
  double rms_frequency_error_ppm = 0;
  uint64_t envelope_restarts = 0;  // all sources, whole run
  uint64_t steps = 0;              // steps the daemon made
  uint64_t clock_updates = 0;      // the core's
  uint64_t log_lines = 0;
  uint64_t warnings = 0;

  // One line: "sync 150 s, max |offset| 210 us, RMS offset 50 us, RMS freq 0.3 ppm, ...".
  std::string summary() const;
};

struct RunResult {
  std::vector<std::string> source_names;
  std::vector<TracePoint> trace;
  std::vector<LogEntry> log;
  std::optional<std::string> stopped;  // the core's Stop reason, when it ended the run
  Duration ended;                      // true time the run ended
  uint64_t steps = 0;                  // by the daemon, through the driver
  uint64_t clock_updates = 0;
  uint64_t events = 0;  // events the loop handled (for the speed figure)
  // Exactly, not sampled: every leap the simulated kernel carried out and every change of its
  // TAI offset (by the kernel's leap, set_tai_offset or step_with_tai_offset).
  std::vector<KernelLeap> kernel_leaps;
  std::vector<TaiOffsetChange> tai_offset_changes;
  std::vector<SignSample> signs;

  Statistics statistics(const Criteria& criteria = {}) const;
  // The largest |jump| of CLOCK_TAI between consecutive trace points in [from, to]: the change
  // of CLOCK_TAI minus the true time elapsed (a clock stepping by 1 s shows 1e9; a clock running
  // 100 ppm fast over 1 s shows 1e5 — choose the trace interval to tell them apart). 0 with
  // fewer than two points.
  Duration max_tai_jump(Duration from = Duration(),
                        Duration to = Duration::from_s(INT64_MAX / 1000000000)) const;
  // The TAI offset changes whose true time lies in [from, to].
  std::vector<TaiOffsetChange> tai_offset_changes_between(Duration from, Duration to) const;
  // The trace as CSV with a header line: t_s, offset_ns, frequency_error_ppm, driver_ppb,
  // servo, synchronized, then per source mark_<name> and restarts_<name>.
  void write_csv(std::ostream& out) const;
  // The leap second view of the trace as CSV: t_s, local_utc, offset_ns, clock_tai_s,
  // tai_error_ns, tai_offset_s, kernel_state (TIME_OK, ...), synchronized.
  void write_leap_csv(std::ostream& out) const;
};

RunResult run(const Scenario& scenario);

}  // namespace taid::sim
