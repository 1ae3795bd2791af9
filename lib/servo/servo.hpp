// Servo strategies: estimates of the clock's offset and frequency in, a frequency and an action
// out — pure, no clock and no I/O (linuxptp's servo_sample; chrony's reference.c). The caller
// (lib/timekeeping) carries the decision out through a ClockDriver.
//
// Units and sign: offsets are positive when the local clock is behind true time, so a positive
// correction moves the clock forward. Frequencies are ppb in the kernel's sense (timex.freq):
// positive makes the clock run faster. A residual frequency (s/s) is d(offset)/dt: positive
// means the clock runs slow and its frequency must go up by that much.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "core/time.hpp"

namespace taid::servo {

// chrony's directives of the same names and meanings.
struct Settings {
  // makestep THRESHOLD LIMIT: step (instead of slewing) when |offset| > threshold, during the
  // first `limit` clock updates; a negative limit steps at any update. Debian's chrony.conf
  // ships `makestep 1 3`; that is our default.
  Duration makestep_threshold = Duration::from_s(1);
  int makestep_limit = 3;
  // maxslewrate PPM: the fastest the clock is slewed (chrony's default; the driver's range
  // limits it further).
  double max_slew_rate_ppm = 83333.333;
  // maxchange OFFSET START IGNORE: after `start` updates, an offset larger than `offset` is
  // ignored `ignore` times, and then taid stops (chrony exits). Off by default (as in chrony).
  std::optional<Duration> maxchange_offset;
  int maxchange_start = 0;
  int maxchange_ignore = 0;
  // maxdrift PPM: the largest |frequency| the servo sets (chrony's default: no limit short of
  // what the driver can do).
  double max_drift_ppm = 500000;
  // corrtimeratio: how many update intervals an offset correction lasts, at the noise level of
  // the offset (chrony's default 3).
  double corr_time_ratio = 3;
};

enum class State { unlocked, jump, locked };  // linuxptp's servo states
std::string_view to_string(State state);

// One clock update: the selected sources' combined estimate.
struct Update {
  UtcTime now;       // local time of the update
  Duration offset;   // the clock's offset from true time at `now` (positive: behind)
  Duration offset_sd;  // its standard error (≥ 1 ns)
  // Residual frequency and its uncertainty, s/s, from the sources' estimates over corrected
  // sample histories; nullopt while no estimator has one.
  std::optional<double> residual_frequency;
  double skew = 0;
  // Time since the previous update (nullopt for the first).
  std::optional<Duration> since_last;
};

struct Decision {
  enum class Kind {
    slew,    // set frequency_ppb as the base; slew `correction` over `slew_duration`
    step,    // set frequency_ppb; step the clock by `correction`
    ignore,  // maxchange: the update is ignored (nothing changes)
    stop,    // maxchange: ignored too often; the daemon stops (chrony exits)
  };
  Kind kind = Kind::slew;
  double frequency_ppb = 0;  // the new base frequency, absolute
  Duration correction;
  Duration slew_duration;  // > 0 for a slew with a correction
  State state = State::unlocked;
  std::string reason;  // for ignore/stop and steps: one log line
};

// A servo strategy: given the update and the base frequency currently applied (ppb), decides.
// It owns its state (integrator, update count). sync_lost() is called when no source can be
// selected any more (every source died, or every estimator started over after a step of the
// clock): what a strategy knows of the offsets is gone then, what it knows of the oscillator is
// not (the oscillator did not change because the sources went quiet).
class Servo {
 public:
  virtual ~Servo() = default;
  virtual std::string_view name() const = 0;
  virtual Decision update(const Update& update, double frequency_ppb) = 0;
  virtual void sync_lost() = 0;
};

// The strategies compared in the simulator (docs/SERVO.md has the table):
//   estimate  frequency from the sources' residual-frequency estimates, offset slewed out over
//             corrtimeratio update intervals (chrony, with the kernel PLL off)
//   pi        linuxptp's PI controller on the offset alone
enum class Kind { estimate, pi };
std::string_view to_string(Kind kind);
std::optional<Kind> parse_kind(std::string_view word);
std::unique_ptr<Servo> make_servo(Kind kind, const Settings& settings);

}  // namespace taid::servo
