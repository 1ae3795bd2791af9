// The estimate servo: how it blends a residual frequency into its base, when an estimate refutes
// the base, what survives a loss of sync, and how long an offset correction lasts.
#include <gtest/gtest.h>

#include <cmath>
#include <optional>

#include "servo/estimate_servo.hpp"

namespace taid::servo {
namespace {

const UtcTime t0 = UtcTime::from_unix_ns(int64_t{1'700'000'000} * 1'000'000'000);

Update at(double t_s, double offset_s, std::optional<double> residual, double skew,
          std::optional<double> since_last_s, double offset_sd_s = 50e-6) {
  Update update;
  update.now = t0 + Duration::from_seconds(t_s);
  update.offset = Duration::from_seconds(offset_s);
  update.offset_sd = Duration::from_seconds(offset_sd_s);
  update.residual_frequency = residual;
  update.skew = skew;
  if (since_last_s) update.since_last = Duration::from_seconds(*since_last_s);
  return update;
}

// Sixteen updates 64 s apart, each saying the applied frequency is right to 1 ppb: the base is
// then known to well under 1 ppb.
double settle(EstimateServo& servo, double frequency_ppb) {
  for (int i = 0; i < 16; ++i) {
    const auto since = i == 0 ? std::nullopt : std::optional<double>(64);
    frequency_ppb = servo.update(at(64.0 * i, 0, 0.0, 1e-9, since), frequency_ppb).frequency_ppb;
  }
  return frequency_ppb;
}

TEST(EstimateServo, FirstEstimateIsTakenAlmostWhole) {
  EstimateServo servo{Settings{}};
  // Nothing known yet (skew 500 ppm): a 40 ppm residual with a 20 ppm skew moves the base by
  // 40 ppm × w_new / (w_old + w_new), w = 1/skew².
  const Decision d = servo.update(at(0, 0, 40e-6, 20e-6, std::nullopt), 1000);
  const double w_old = 1 / (500e-6 * 500e-6), w_new = 1 / (20e-6 * 20e-6);
  EXPECT_NEAR(d.frequency_ppb, 1000 + 40000 * w_new / (w_old + w_new), 1e-6);
  EXPECT_EQ(d.kind, Decision::Kind::slew);
}

TEST(EstimateServo, SyncLostKeepsTheFrequencyItKnows) {
  EstimateServo servo{Settings{}};
  const double base = settle(servo, -100000);
  EXPECT_NEAR(base, -100000, 1e-3);
  servo.sync_lost();
  // The burst after a foreign step: a slope of noise, 17 ppm with a 20 ppm skew, 10 s later.
  const Decision d = servo.update(at(64.0 * 16 + 10, 30e-6, 17e-6, 20e-6, 10), base);
  EXPECT_NEAR(d.frequency_ppb, base, 1.0);
  // A servo that had forgotten (a fresh one) would have taken nearly all of it.
  EstimateServo fresh{Settings{}};
  const Decision f = fresh.update(at(0, 30e-6, 17e-6, 20e-6, std::nullopt), base);
  EXPECT_GT(f.frequency_ppb - base, 16000);
}

TEST(EstimateServo, AnEstimateFiveSkewsAwayRefutesTheBase) {
  EstimateServo servo{Settings{}};
  const double base = settle(servo, 2000);
  // The oscillator jumped by 10 ppm; the estimate says so to 0.1 ppm: the base starts over from
  // it (skew 500 ppm against 0.1 ppm: all but 4e-8 of the way).
  const Decision jump = servo.update(at(64.0 * 16, 0, 10e-6, 0.1e-6, 64), base);
  EXPECT_NEAR(jump.frequency_ppb, base + 10000, 0.01);
  // The same 10 ppm with a 3 ppm skew is within five skews: blended, it moves the base by
  // almost nothing.
  EstimateServo other{Settings{}};
  const double base2 = settle(other, 2000);
  const Decision blended = other.update(at(64.0 * 16, 0, 10e-6, 3e-6, 64), base2);
  EXPECT_LT(blended.frequency_ppb - base2, 100);
}

TEST(EstimateServo, CorrectionLastsCorrTimeRatioNoiseIntervals) {
  EstimateServo servo{Settings{}};
  settle(servo, 0);
  // 100 µs off with a 50 µs standard error, 64 s after the last update:
  // 3 × 50 µs × 64 s / (2 × 100 µs) = 48 s.
  const Decision d = servo.update(at(64.0 * 16, 100e-6, 0.0, 1e-9, 64, 50e-6), 0);
  EXPECT_EQ(d.correction, Duration::from_us(100));
  EXPECT_NEAR(d.slew_duration.seconds(), 48, 1e-6);
  // 1 s off: removed at maxslewrate (83 333 ppm): 12 s, not the 0.0048 s the rule gives.
  Settings settings;
  settings.makestep_limit = 0;  // never step
  EstimateServo slewing{settings};
  settle(slewing, 0);
  const Decision big = slewing.update(at(64.0 * 16, 1.0, 0.0, 1e-9, 64, 50e-6), 0);
  EXPECT_EQ(big.kind, Decision::Kind::slew);
  EXPECT_NEAR(big.slew_duration.seconds(), 1.0 / 83333.333e-6, 1e-6);
}

}  // namespace
}  // namespace taid::servo
