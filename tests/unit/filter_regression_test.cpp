// Unit tests for the regression estimate (chrony's sourcestats method): exact on a noise-free
// line, delay weights that discount queued samples, the runs test's numbers, and the window
// trimmed at a frequency change but kept whole on a straight noisy line.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "filter/regression_estimate.hpp"

namespace taid::filter {
namespace {

const UtcTime t0 = UtcTime::from_unix_ns(1700000000LL * 1000000000);
UtcTime at_s(double s) { return t0 + Duration::from_seconds(s); }

// A sample at local T4 = t_s over a symmetric path of round trip delay_s, plus `skew_s` on θ.
std::optional<RegressionEstimate> add(RegressionEstimator& r, double offset_s, double delay_s,
                                      double t_s) {
  return r.add(Duration::from_seconds(offset_s), Duration::from_seconds(delay_s),
               at_s(t_s - delay_s), at_s(t_s));
}

TEST(RegressionTest, RunsAreCounted) {
  using regression_detail::count_runs;
  const std::vector<double> none;
  const std::vector<double> one{1, 2, 3};
  const std::vector<double> alternate{1, -1, 1, -1};
  const std::vector<double> zero_is_positive{0, 1, -1, -2, 0};
  EXPECT_EQ(count_runs(none), 0u);
  EXPECT_EQ(count_runs(one), 1u);
  EXPECT_EQ(count_runs(alternate), 4u);
  EXPECT_EQ(count_runs(zero_is_positive), 3u);
}

TEST(RegressionTest, CriticalRunsFromTheNormalApproximation) {
  using regression_detail::critical_runs;
  EXPECT_EQ(critical_runs(7), 0u);
  // n = 8: mean 5, sd 1.309 → ⌊4.5 − 2.153⌋ = 2.
  EXPECT_EQ(critical_runs(8), 2u);
  // n = 20: mean 11, sd 2.176 → ⌊10.5 − 3.580⌋ = 6.
  EXPECT_EQ(critical_runs(20), 6u);
  // n = 64: mean 33, sd 3.968 → ⌊32.5 − 6.527⌋ = 25.
  EXPECT_EQ(critical_runs(64), 25u);
}

TEST(RegressionTest, ExactOnANoiseFreeLine) {
  // Without the runs test: the residuals are the nanosecond rounding of θ, whose signs follow a
  // pattern, not chance.
  RegressionEstimator r({.runs_test = false});
  const double f = 37e-6, x0 = 0.0123, delay = 0.0004;
  std::optional<RegressionEstimate> e;
  for (int i = 0; i < 100; ++i) {
    const double t = 16.0 * i;
    // θ measures x at the exchange's midpoint t − δ/2.
    e = add(r, x0 + f * (t - delay / 2), delay, t);
    if (i < 2) {
      EXPECT_FALSE(e) << i;
    }
  }
  ASSERT_TRUE(e);
  EXPECT_EQ(e->samples, 64u);  // chrony's window
  EXPECT_NEAR(e->frequency, f, 1e-12);
  EXPECT_NEAR(e->offset.seconds(), x0 + f * 16.0 * 99, 2e-9);
  EXPECT_EQ(e->time, at_s(16.0 * 99));
  EXPECT_EQ(e->span, Duration::from_s(16 * 63));
}

TEST(RegressionTest, QueuedSamplesWeighLess) {
  // Nine samples at the path's minimum and one that queued 10 ms on its way out (θ 5 ms off).
  // Unweighted, the mean would move 500 µs; weighted by chrony's rule ((1 + 0.7·5 ms/100 µs)² =
  // 1296 times the variance), about 0.5 µs.
  RegressionEstimator r;
  std::optional<RegressionEstimate> e;
  for (int i = 0; i < 10; ++i) {
    const bool queued = i == 4;
    e = add(r, queued ? 0.005 : 0.0, queued ? 0.0102 : 0.0002, 1.0 * i);
  }
  ASSERT_TRUE(e);
  EXPECT_LT(std::abs(e->offset.seconds()), 2e-6);
  EXPECT_LT(std::abs(e->frequency), 1e-6);
}

// A line with noise; `kink_at`: from that sample on the frequency changes by `df`.
std::optional<RegressionEstimate> noisy(RegressionEstimator& r, int n, int kink_at, double df) {
  std::mt19937_64 rng(20261201);
  std::optional<RegressionEstimate> e;
  double x = 0;
  for (int i = 0; i < n; ++i) {
    x += 1e-6 + (i >= kink_at ? df : 0);  // per 1 s poll
    const double u = static_cast<double>(rng() >> 11) * 0x1.0p-53;
    const double v = static_cast<double>(rng() >> 11) * 0x1.0p-53;
    const double q_out = -50e-6 * std::log1p(-u), q_back = -50e-6 * std::log1p(-v);
    e = add(r, x + (q_out - q_back) / 2, 0.0002 + q_out + q_back, 1.0 * i);
  }
  return e;
}

TEST(RegressionTest, KeepsTheWholeWindowOnAStraightLine) {
  RegressionEstimator r;
  const auto e = noisy(r, 300, 1000, 0);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->samples, 64u);
  EXPECT_NEAR(e->frequency, 1e-6, 1e-6);
}

TEST(RegressionTest, TrimsAtAFrequencyChange) {
  // +20 ppm from sample 280: 20 samples later the 64-sample line bends by far more than the
  // noise, the runs test sees it and the fit keeps only samples of the new frequency.
  RegressionEstimator trimmed, whole({.runs_test = false});
  const auto e = noisy(trimmed, 300, 280, 20e-6);
  const auto w = noisy(whole, 300, 280, 20e-6);
  ASSERT_TRUE(e && w);
  EXPECT_EQ(w->samples, 64u);
  EXPECT_LE(e->samples, 21u);
  EXPECT_NEAR(e->frequency, 21e-6, 2e-6);
  EXPECT_GT(std::abs(w->frequency - 21e-6), 5e-6);
}

TEST(RegressionTest, ResetForgets) {
  RegressionEstimator r;
  for (int i = 0; i < 10; ++i) add(r, 0, 0.0002, i);
  r.reset();
  EXPECT_EQ(r.size(), 0u);
  EXPECT_FALSE(r.estimate());
  EXPECT_FALSE(add(r, 0, 0.0002, 20));
}

}  // namespace
}  // namespace taid::filter
