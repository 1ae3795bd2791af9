// Unit tests for the step policy (chrony's makestep, maxchange, maxdrift) and the "pi" servo
// (linuxptp's PI controller): exact decisions, and a closed loop on a small clock model (fresh
// and stale offsets).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "servo/pi_servo.hpp"
#include "servo/step_policy.hpp"

namespace taid::servo {
namespace {

const UtcTime t0 = UtcTime::from_unix_ns(1700000000LL * 1000000000);

Update at(double t_s, double offset_s, std::optional<double> since_last_s = std::nullopt) {
  Update update;
  update.now = t0 + Duration::from_seconds(t_s);
  update.offset = Duration::from_seconds(offset_s);
  update.offset_sd = Duration::from_ns(1);
  if (since_last_s) update.since_last = Duration::from_seconds(*since_last_s);
  return update;
}

// ---- makestep ----

TEST(StepPolicy, MakestepStepsAboveTheThresholdDuringTheFirstLimitUpdates) {
  StepPolicy policy(Settings{});  // makestep 1 3
  auto step = policy.check(at(0, 1.5), 1234.5);
  ASSERT_TRUE(step);
  EXPECT_EQ(step->kind, Decision::Kind::step);
  EXPECT_EQ(step->correction, Duration::from_ms(1500));
  EXPECT_EQ(step->frequency_ppb, 1234.5);
  EXPECT_EQ(step->state, State::jump);
  EXPECT_EQ(step->reason, "stepping the clock by +1.500000 s (makestep 1 3)");
  // Exactly the threshold is not above it; the update still counts.
  EXPECT_FALSE(policy.check(at(16, 1.0), 0));
  step = policy.check(at(32, -2.25), -7);
  ASSERT_TRUE(step);
  EXPECT_EQ(step->correction, Duration::from_ms(-2250));
  EXPECT_EQ(step->frequency_ppb, -7);
  EXPECT_EQ(step->reason, "stepping the clock by -2.250000 s (makestep 1 3)");
  // The fourth update is past the limit: slewed, however large.
  EXPECT_FALSE(policy.check(at(48, 5), 0));
  EXPECT_EQ(policy.updates(), 4);
}

TEST(StepPolicy, MakestepWithANegativeLimitStepsAtAnyUpdate) {
  Settings settings;
  settings.makestep_threshold = Duration::from_ms(100);
  settings.makestep_limit = -1;
  StepPolicy policy(settings);
  for (int i = 0; i < 100; ++i) EXPECT_FALSE(policy.check(at(i, 0.1), 0)) << i;
  const auto step = policy.check(at(100, -0.100001), 0);
  ASSERT_TRUE(step);
  EXPECT_EQ(step->correction, Duration::from_ns(-100001000));
  EXPECT_EQ(step->reason, "stepping the clock by -0.100001 s (makestep 0.1 -1)");
}

TEST(StepPolicy, MakestepWithLimitZeroNeverSteps) {
  Settings settings;
  settings.makestep_limit = 0;
  StepPolicy policy(settings);
  EXPECT_FALSE(policy.check(at(0, 1000), 0));
  EXPECT_EQ(policy.updates(), 1);
}

// ---- maxchange ----

TEST(StepPolicy, MaxchangeChecksAfterStartIgnoresItsBudgetThenStops) {
  Settings settings;  // maxchange 1 1 2, no makestep
  settings.makestep_limit = 0;
  settings.maxchange_offset = Duration::from_s(1);
  settings.maxchange_start = 1;
  settings.maxchange_ignore = 2;
  StepPolicy policy(settings);
  EXPECT_FALSE(policy.check(at(0, 5), 0));  // the first `start` updates are not checked
  auto ignored = policy.check(at(16, 5), 42);
  ASSERT_TRUE(ignored);
  EXPECT_EQ(ignored->kind, Decision::Kind::ignore);
  EXPECT_EQ(ignored->frequency_ppb, 42);
  EXPECT_EQ(ignored->correction, Duration());
  EXPECT_EQ(ignored->reason, "ignoring an offset of +5.000000 s (1 ignored; maxchange 1 1 2)");
  // A good update does not restore the budget: chrony's counter only goes down.
  EXPECT_FALSE(policy.check(at(32, 0.1), 0));
  ignored = policy.check(at(48, -3), 0);
  ASSERT_TRUE(ignored);
  EXPECT_EQ(ignored->kind, Decision::Kind::ignore);
  EXPECT_EQ(ignored->reason, "ignoring an offset of -3.000000 s (2 ignored; maxchange 1 1 2)");
  const auto stop = policy.check(at(64, 2), 42);
  ASSERT_TRUE(stop);
  EXPECT_EQ(stop->kind, Decision::Kind::stop);
  EXPECT_EQ(stop->frequency_ppb, 42);
  EXPECT_EQ(stop->reason,
            "an offset of +2.000000 s exceeds the allowed maximum after 2 ignored, stopping "
            "(maxchange 1 1 2)");
  EXPECT_EQ(policy.updates(), 2);  // ignored and stopping updates are not counted
  // reset() (sync lost) gives the budget back.
  policy.reset();
  EXPECT_EQ(policy.check(at(80, 2), 0)->kind, Decision::Kind::ignore);
}

TEST(StepPolicy, MaxchangeWithZeroIgnoreStopsAtOnce) {
  Settings settings;
  settings.maxchange_offset = Duration::from_ms(500);
  settings.maxchange_start = 0;
  settings.maxchange_ignore = 0;
  StepPolicy policy(settings);
  EXPECT_FALSE(policy.check(at(0, 0.5), 0));  // not above
  EXPECT_EQ(policy.check(at(16, -0.6), 0)->kind, Decision::Kind::stop);
}

TEST(StepPolicy, IgnoredUpdatesDoNotUseUpMakestepsLimit) {
  Settings settings;  // makestep 0.5 2, maxchange 1 0 -1 (ignore for ever)
  settings.makestep_threshold = Duration::from_ms(500);
  settings.makestep_limit = 2;
  settings.maxchange_offset = Duration::from_s(1);
  settings.maxchange_start = 0;
  settings.maxchange_ignore = -1;
  StepPolicy policy(settings);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(policy.check(at(i, 2), 0)->kind, Decision::Kind::ignore);
  EXPECT_EQ(policy.check(at(10, 0.8), 0)->kind, Decision::Kind::step);
  EXPECT_EQ(policy.check(at(11, 0.8), 0)->kind, Decision::Kind::step);
  EXPECT_FALSE(policy.check(at(12, 0.8), 0));
}

TEST(StepPolicy, ClampFrequencyToMaxdrift) {
  Settings settings;  // maxdrift 500000 ppm (chrony's default)
  EXPECT_EQ(clamp_frequency(600e6, settings), 500e6);
  EXPECT_EQ(clamp_frequency(-1e12, settings), -500e6);
  EXPECT_EQ(clamp_frequency(123.5, settings), 123.5);
  settings.max_drift_ppm = 500;
  EXPECT_EQ(clamp_frequency(600000, settings), 500000);
  EXPECT_EQ(clamp_frequency(-1e6, settings), -500000);
  settings.max_drift_ppm = 0.5;
  EXPECT_EQ(clamp_frequency(-700, settings), -500);
}

// ---- PI gains and state machine ----

TEST(PiServo, GainsFollowLinuxptp) {
  PiConfig software;
  auto gains = pi_gains(Duration::from_s(16), software);
  EXPECT_NEAR(gains.kp_per_s, 0.1 * std::pow(16, -0.3), 1e-15);  // 0.0435, under 0.7 / 16
  EXPECT_NEAR(gains.kp_per_s, 0.0435275282, 1e-10);
  EXPECT_NEAR(gains.ki_per_s, 0.0030314331, 1e-10);
  gains = pi_gains(Duration::from_s(64), software);  // both capped by norm_max
  EXPECT_DOUBLE_EQ(gains.kp_per_s, 0.7 / 64);
  EXPECT_DOUBLE_EQ(gains.ki_per_s, 0.3 / 64);
  PiConfig hardware;
  hardware.software_timestamps = false;
  gains = pi_gains(Duration::from_s(16), hardware);
  EXPECT_DOUBLE_EQ(gains.kp_per_s, 0.7 / 16);
  EXPECT_DOUBLE_EQ(gains.ki_per_s, 0.3 / 16);
  PiConfig fixed;
  fixed.proportional_const = 0.5;
  fixed.integral_const = 0.2;
  gains = pi_gains(Duration::from_s(4), fixed);
  EXPECT_DOUBLE_EQ(gains.kp_per_s, 0.25);  // capped at 1.0 / T
  EXPECT_DOUBLE_EQ(gains.ki_per_s, 0.2);   // under 2.0 / T
}

TEST(PiServo, EstimatesTheFrequencyFromTwoSamplesThenIntegrates) {
  PiServo servo(Settings{});
  EXPECT_EQ(servo.name(), "pi");
  Decision d = servo.update(at(0, 0.010), 0);
  EXPECT_EQ(d.kind, Decision::Kind::slew);
  EXPECT_EQ(d.state, State::unlocked);
  EXPECT_EQ(d.frequency_ppb, 0);
  EXPECT_EQ(d.correction, Duration());
  // 2 s later is too soon: 0.016 / ki(2 s) = 12.1 s.
  d = servo.update(at(2, 0.0098, 2), 0);
  EXPECT_EQ(d.state, State::unlocked);
  EXPECT_EQ(d.frequency_ppb, 0);
  // 16 s after the first sample, the clock has run 100 ppm fast.
  d = servo.update(at(16, 0.0084, 14), 0);
  EXPECT_EQ(d.kind, Decision::Kind::slew);
  EXPECT_EQ(d.state, State::jump);
  EXPECT_NEAR(d.frequency_ppb, -100000, 1e-6);
  // ptp4l's jump at the second sample (8.4 ms > first_step_threshold 20 µs), as a slew of the
  // whole offset at maxslewrate (83 333 ppm): 0.1008 s.
  EXPECT_EQ(d.correction, Duration::from_us(8400));
  EXPECT_EQ(d.slew_duration, Duration::from_us(100800));
  EXPECT_EQ(servo.state(), State::jump);
  // Locked: the base moves by ki·x, the correction is kp·T·x.
  d = servo.update(at(32, 0.001, 16), -100000);
  EXPECT_EQ(d.state, State::locked);
  EXPECT_NEAR(d.frequency_ppb, -96968.566867, 1e-5);
  EXPECT_NEAR(d.correction.seconds(), 0.00069644045, 1e-9);
  EXPECT_EQ(d.slew_duration, Duration::from_s(16));
}

TEST(PiServo, WithinFirstStepThresholdTheSecondSampleSetsOnlyTheFrequency) {
  PiServo servo(Settings{});
  servo.update(at(0, 0.000010), 0);
  // 16 s later 20 µs exactly (not above the threshold): +0.625 ppm, no correction (pi.c).
  Decision d = servo.update(at(16, 0.000020, 16), 0);
  EXPECT_EQ(d.state, State::locked);
  EXPECT_NEAR(d.frequency_ppb, 625, 1e-6);
  EXPECT_EQ(d.correction, Duration());
  // A threshold of 0 never jumps, however large the offset.
  PiConfig config;
  config.first_step_threshold = Duration();
  PiServo never(Settings{}, config);
  never.update(at(0, 0.5), 0);
  d = never.update(at(16, 0.5, 16), 0);
  EXPECT_EQ(d.state, State::locked);
  EXPECT_EQ(d.correction, Duration());
}

TEST(PiServo, ItsOwnSlewInProgressIsNotIntegratedAgain) {
  // The core hands over the whole error: measured + what the slew in progress has still to do.
  PiServo servo(Settings{});
  double f = 0;
  f = servo.update(at(0, 0), f).frequency_ppb;
  f = servo.update(at(64, 0.000064, 64), f).frequency_ppb;  // +1 ppm and the 64 µs jump
  ASSERT_NEAR(f, 1000, 1e-6);
  Decision d = servo.update(at(128, 0.001, 64), f);  // the jump's slew is long done
  EXPECT_NEAR(d.frequency_ppb, 1000 + 0.3 / 64 * 1e6, 1e-6);
  EXPECT_EQ(d.correction, Duration::from_us(700));  // kp·T = 0.7
  EXPECT_EQ(d.slew_duration, Duration::from_s(64));
  f = d.frequency_ppb;
  // 16 s later a second source's sample: 0.525 ms of that slew are still to do, 0.1 ms is new.
  d = servo.update(at(144, 0.000625, 16), f);
  EXPECT_NEAR(d.frequency_ppb, f + 0.0030314331 * 0.0001 * 1e9, 1e-3);  // ki(16 s)·0.1 ms
  EXPECT_NEAR(d.correction.seconds(), 0.000525 + 0.0435275282 * 16 * 0.0001, 1e-9);
  EXPECT_EQ(d.slew_duration, Duration::from_s(16));
  // A third at the same instant (no interval): nothing new; the slew goes on, the lock stays.
  const Decision same = servo.update(at(144, 0.000625, 0), d.frequency_ppb);
  EXPECT_EQ(same.state, State::locked);
  EXPECT_EQ(same.frequency_ppb, d.frequency_ppb);
  EXPECT_EQ(same.correction, d.correction);
  EXPECT_EQ(same.slew_duration, Duration::from_s(16));
}

TEST(PiServo, TheBaseIsClampedAndTheSlewRateCapped) {
  Settings settings;
  settings.max_slew_rate_ppm = 500;
  settings.max_drift_ppm = 50;
  PiServo servo(settings);
  servo.update(at(0, 0), 0);
  Decision d = servo.update(at(16, -0.0016), 0);  // no since_last: treated as a first update
  EXPECT_EQ(d.state, State::unlocked);
  d = servo.update(at(32, -0.0032, 16), 0);  // -100 ppm, clamped to maxdrift
  EXPECT_EQ(d.frequency_ppb, -50000);
  d = servo.update(at(48, 0.5, 16), -50000);
  EXPECT_EQ(d.correction, Duration::from_ms(8));  // 500 ppm over 16 s, not 0.7 × 0.5 s
  EXPECT_EQ(d.slew_duration, Duration::from_s(16));
  EXPECT_EQ(d.frequency_ppb, 50000);  // -50 ppm + ki·0.5 s, clamped
}

TEST(PiServo, AStepOnTheFirstUpdateKeepsTheFrequencyEstimate) {
  PiServo servo(Settings{});  // makestep 1 3
  Decision d = servo.update(at(0, 2.0), 250);
  EXPECT_EQ(d.kind, Decision::Kind::step);
  EXPECT_EQ(d.correction, Duration::from_s(2));
  EXPECT_EQ(d.frequency_ppb, 250);
  EXPECT_EQ(d.state, State::jump);
  // After the step the clock was on time; 16 s later it is 1.6 ms ahead: the frequency, and
  // the jump of the second sample (as a slew).
  d = servo.update(at(16, -0.0016, 16), 250);
  EXPECT_EQ(d.state, State::jump);
  EXPECT_NEAR(d.frequency_ppb, 250 - 0.0001 * (1e9 + 250), 1e-6);
  EXPECT_EQ(d.correction, Duration::from_us(-1600));
}

TEST(PiServo, AStepOnTheSecondUpdateSetsTheEstimatedFrequency) {
  Settings settings;
  settings.makestep_threshold = Duration::from_ms(100);
  PiServo servo(settings);
  servo.update(at(0, 0.099), 0);
  Decision d = servo.update(at(16, 0.101, 16), 0);
  EXPECT_EQ(d.kind, Decision::Kind::step);
  EXPECT_EQ(d.correction, Duration::from_ms(101));
  EXPECT_NEAR(d.frequency_ppb, 125000, 1e-6);  // 2 ms in 16 s
  EXPECT_EQ(d.state, State::jump);
  d = servo.update(at(32, 0, 16), 125000);
  EXPECT_EQ(d.kind, Decision::Kind::slew);
  EXPECT_EQ(d.state, State::locked);
  EXPECT_EQ(d.frequency_ppb, 125000);
  EXPECT_EQ(d.correction, Duration());
}

TEST(PiServo, MaxchangeIgnoresWithoutChangingTheStateThenStops) {
  Settings settings;
  settings.maxchange_offset = Duration::from_ms(10);
  settings.maxchange_start = 2;
  settings.maxchange_ignore = 1;
  PiServo servo(settings);
  servo.update(at(0, 0.05), 0);
  servo.update(at(16, 0.0484, 16), 0);
  ASSERT_EQ(servo.state(), State::jump);
  Decision d = servo.update(at(32, 0.02, 16), -100000);
  EXPECT_EQ(d.kind, Decision::Kind::ignore);
  EXPECT_EQ(d.state, State::jump);
  EXPECT_EQ(d.frequency_ppb, -100000);
  EXPECT_EQ(d.correction, Duration());
  d = servo.update(at(48, 0.02, 16), -100000);
  EXPECT_EQ(d.kind, Decision::Kind::stop);
}

// ---- closed loop ----

// A clock 100 ppm fast whose offset (positive: behind) integrates its frequency error and the
// slew in progress between updates; it carries out each decision as the timekeeper would.
struct ClockModel {
  double natural = 100e-6;  // s/s, fast
  double offset_s = 0.050;
  double base_ppb = 0;
  double slew_rate = 0, slew_left_s = 0;

  double frequency_error() const { return (1 + natural) * (1 + base_ppb * 1e-9) - 1; }
  void advance(double dt_s) {
    const double slewing_s = std::min(dt_s, slew_left_s);
    offset_s -= frequency_error() * dt_s + slew_rate * slewing_s;
    slew_left_s -= slewing_s;
  }
  void apply(const Decision& d) {
    if (d.kind == Decision::Kind::ignore || d.kind == Decision::Kind::stop) return;
    base_ppb = d.frequency_ppb;
    slew_rate = slew_left_s = 0;  // a new decision replaces the slew in progress
    if (d.kind == Decision::Kind::step) {
      offset_s -= d.correction.seconds();
    } else if (d.slew_duration > Duration()) {
      slew_rate = d.correction.seconds() / d.slew_duration.seconds();
      slew_left_s = d.slew_duration.seconds();
    }
  }
};

struct LoopSetup {
  int interval_s = 16;
  int updates = 400;
  // The oscillator gains this much (fast) just before update `jump_at` (-1: never).
  int jump_at = -1;
  double jump_ppm = 0;
  // The measured offset refers to a sample this many intervals old, as the core hands over a
  // clock filter's pick: its corrected history remaps every past sample to the frequency
  // applied now, so the old sample reads the offset now less the residual frequency (−error)
  // times its age.
  int stale_intervals = 0;
};

struct LoopRun {
  int converged_at = -1;   // first update from which |offset| < 10 µs and |f| < 0.1 ppm hold
  double overshoot_s = 0;  // the largest offset past zero (the start is +50 ms)
  double max_abs_offset_s = 0;  // from update 2 on (after the jump at the second sample)
  double final_offset_s = 0, final_error_ppm = 0;
};

LoopRun run_loop(Servo& servo, const LoopSetup& setup) {
  ClockModel clock;
  LoopRun run;
  for (int k = 0; k < setup.updates; ++k) {
    if (k > 0) clock.advance(setup.interval_s);
    if (k == setup.jump_at) clock.natural += setup.jump_ppm * 1e-6;
    const double t_s = static_cast<double>(k) * setup.interval_s;
    const double measured_s =
        clock.offset_s + clock.frequency_error() * setup.stale_intervals * setup.interval_s;
    const Update update = k == 0 ? at(t_s, measured_s) : at(t_s, measured_s, setup.interval_s);
    clock.apply(servo.update(update, clock.base_ppb));
    run.overshoot_s = std::max(run.overshoot_s, -clock.offset_s);
    if (k >= 2) run.max_abs_offset_s = std::max(run.max_abs_offset_s, std::fabs(clock.offset_s));
    const bool within =
        std::fabs(clock.offset_s) < 10e-6 && std::fabs(clock.frequency_error()) < 0.1e-6;
    if (!within) {
      run.converged_at = -1;
    } else if (run.converged_at < 0) {
      run.converged_at = k;
    }
  }
  run.final_offset_s = clock.offset_s;
  run.final_error_ppm = clock.frequency_error() * 1e6;
  return run;
}

LoopRun run_loop(Servo& servo, int interval_s, int updates) {
  LoopSetup setup;
  setup.interval_s = interval_s;
  setup.updates = updates;
  return run_loop(servo, setup);
}

TEST(PiServo, ClosedLoopLocksAtTheSecondSample) {
  // Fresh, noise-free offsets: the second sample gives the frequency exactly and its jump (a
  // slew at maxslewrate, 0.6 s) removes the 50 ms, so the integrator never sees them.
  PiServo servo(Settings{});
  const LoopRun run = run_loop(servo, 16, 50);
  EXPECT_EQ(run.converged_at, 2);
  EXPECT_LT(run.overshoot_s, 1e-8);
  // What is left is the offsets' 1 ns resolution, integrated.
  EXPECT_LT(std::fabs(run.final_offset_s), 1e-8);
  EXPECT_LT(std::fabs(run.final_error_ppm), 1e-3);
}

TEST(PiServo, ClosedLoopEvery16sFollowsAFrequencyJump) {
  // +1 ppm at update 20: the PI's own dynamics. At 16 s kp·T = 0.696, ki·T = 0.0485 (software
  // scales): poles 0.928 and 0.328 per update, a slow integral tail.
  PiServo servo(Settings{});
  LoopSetup setup;
  setup.jump_at = 20;
  setup.jump_ppm = 1;
  const LoopRun run = run_loop(servo, setup);
  EXPECT_EQ(run.converged_at, 52);
  EXPECT_NEAR(run.max_abs_offset_s, 20.3e-6, 0.1e-6);  // 16 µs of drift, then the tail
  EXPECT_LT(std::fabs(run.final_offset_s), 1e-9);
  EXPECT_LT(std::fabs(run.final_error_ppm), 1e-5);
}

TEST(PiServo, ClosedLoopEvery64sFollowsAFrequencyJump) {
  // At 64 s both gains sit at linuxptp's norm_max caps (kp·T = 0.7, ki·T = 0.3): poles of
  // modulus √0.3 = 0.548, quick.
  PiServo servo(Settings{});
  LoopSetup setup;
  setup.interval_s = 64;
  setup.updates = 200;
  setup.jump_at = 20;
  setup.jump_ppm = 1;
  const LoopRun run = run_loop(servo, setup);
  EXPECT_EQ(run.converged_at, 26);
  EXPECT_NEAR(run.max_abs_offset_s, 64e-6, 0.1e-6);
  EXPECT_LT(std::fabs(run.final_offset_s), 1e-9);
  EXPECT_LT(std::fabs(run.final_error_ppm), 1e-5);
}

TEST(PiServo, AnOffsetThreeIntervalsStaleDestabilisesTheCappedLoop) {
  // Why the reference scenario diverged (pi_servo.hpp): with a = kp·T, b = ki·T and a sample k
  // intervals old the loop's determinant is 1 − a + b·k. At the caps (0.7, 0.3): k = 1 gives
  // 0.6 (converges), k = 3 gives 1.2 (grows until the frequency hits maxdrift).
  for (const int stale : {1, 3}) {
    PiServo servo(Settings{});
    LoopSetup setup;
    setup.interval_s = 64;
    setup.updates = 120;
    setup.jump_at = 20;
    setup.jump_ppm = 1;
    setup.stale_intervals = stale;
    const LoopRun run = run_loop(servo, setup);
    if (stale == 1) {
      EXPECT_LT(std::fabs(run.final_offset_s), 1e-9);
      EXPECT_LT(std::fabs(run.final_error_ppm), 1e-4);
    } else {
      EXPECT_GT(std::fabs(run.final_offset_s), 100);
      EXPECT_GT(std::fabs(run.final_error_ppm), 499000);  // maxdrift 500 000 ppm
    }
  }
}

TEST(PiServo, SyncLostForgetsTheSamples) {
  PiServo servo(Settings{});
  run_loop(servo, 16, 50);
  ASSERT_EQ(servo.state(), State::locked);
  PiServo kept = servo;
  servo.sync_lost();
  EXPECT_EQ(servo.state(), State::unlocked);
  // Without the reset the next update integrates; after it, the servo starts over exactly like
  // a new one (offsets under makestep's threshold, so its spent update count does not matter).
  const Decision without = kept.update(at(1000, 0.004, 16), 300);
  EXPECT_EQ(without.state, State::locked);
  EXPECT_NE(without.frequency_ppb, 300);
  PiServo fresh(Settings{});
  const std::vector<Update> updates = {at(1000, 0.004, 16), at(1016, 0.0024, 16),
                                       at(1032, 0.001, 16), at(1048, -0.0003, 16)};
  double frequency_ppb = 300;
  for (const Update& update : updates) {
    const Decision a = servo.update(update, frequency_ppb);
    const Decision b = fresh.update(update, frequency_ppb);
    EXPECT_EQ(a.kind, b.kind);
    EXPECT_EQ(a.state, b.state);
    EXPECT_EQ(a.frequency_ppb, b.frequency_ppb);
    EXPECT_EQ(a.correction, b.correction);
    EXPECT_EQ(a.slew_duration, b.slew_duration);
    frequency_ppb = a.frequency_ppb;
  }
  EXPECT_EQ(servo.state(), State::locked);
}

}  // namespace
}  // namespace taid::servo
