// Unit tests for the RFC 5905 clock filter: min-delay pick, older-sample rule, dispersion, jitter,
// the popcorn-spike suppressor and the pick's error bound.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>

#include "filter/clock_filter.hpp"

namespace taid::filter {
namespace {

const UtcTime t0 = UtcTime::from_unix_ns(1700000000LL * 1000000000);
Duration ms(int64_t v) { return Duration::from_ms(v); }
UtcTime at(int64_t s) { return t0 + Duration::from_s(s); }

TEST(ClockFilter, PicksMinimumDelayAndNeverAnOlderSample) {
  ClockFilter f;
  auto e = f.add(ms(10), ms(5), Duration{}, at(0));
  ASSERT_TRUE(e);
  EXPECT_EQ(e->offset, ms(10));
  e = f.add(ms(20), ms(3), Duration{}, at(16));  // lower delay and newer: released
  ASSERT_TRUE(e);
  EXPECT_EQ(e->offset, ms(20));
  EXPECT_EQ(e->delay, ms(3));
  // Higher delay: the best stage is still the one already used, so nothing is released.
  EXPECT_FALSE(f.add(ms(30), ms(8), Duration{}, at(32)));
  EXPECT_EQ(f.estimate()->offset, ms(20));
  e = f.add(ms(40), ms(1), Duration{}, at(48));
  ASSERT_TRUE(e);
  EXPECT_EQ(e->offset, ms(40));
  EXPECT_EQ(e->time, at(48));
}

TEST(ClockFilter, OlderMinimumIsNotReusedEvenWhenItStaysBest) {
  ClockFilter f;
  ASSERT_TRUE(f.add(ms(1), ms(1), Duration{}, at(0)));
  for (int i = 1; i < 7; ++i) EXPECT_FALSE(f.add(ms(5), ms(9), Duration{}, at(16 * i))) << i;
  // The eighth sample still leaves the old low-delay stage in the register: nothing released.
  auto e = f.add(ms(7), ms(9), Duration{}, at(16 * 7));
  EXPECT_FALSE(e);
  // The ninth shifts it out; the best of the rest is the newest: released.
  e = f.add(ms(6), ms(8), Duration{}, at(16 * 8));
  ASSERT_TRUE(e);
  EXPECT_EQ(e->offset, ms(6));
}

TEST(ClockFilter, StageDispersionGrowsAtPhi) {
  ClockFilter f;
  ASSERT_TRUE(f.add(ms(0), ms(1), Duration{}, at(0)));
  (void)f.add(ms(0), ms(2), Duration{}, at(1000));
  // 1000 s at 15 ppm = 15 ms.
  EXPECT_EQ(f.stages()[1].dispersion, ms(15));
  EXPECT_EQ(f.stages()[0].dispersion, Duration{});
  EXPECT_EQ(dispersion_growth(Duration::from_s(1000)), ms(15));
  EXPECT_EQ(f.dispersion_at(at(2000)), f.estimate()->dispersion + ms(15));
}

TEST(ClockFilter, PeerDispersionIsWeightedSumOfSortedStages) {
  ClockFilter f;
  const auto e = f.add(ms(0), ms(1), ms(2), at(0));
  ASSERT_TRUE(e);
  // ε = 2ms/2 + Σ_{i=1..7} 16s/2^(i+1) = 1 ms + 16 s × (1/2 − 1/256)
  const double expected = 0.001 + 16.0 * (0.5 - 1.0 / 256.0);
  EXPECT_NEAR(e->dispersion.seconds(), expected, 1e-9);
}

TEST(ClockFilter, JitterIsRmsAboutTheChosenOffset) {
  ClockFilter f;
  (void)f.add(ms(3), ms(30), Duration{}, at(0));
  (void)f.add(ms(2), ms(20), Duration{}, at(1));
  const auto e = f.add(ms(1), ms(10), Duration{}, at(2));
  ASSERT_TRUE(e);
  EXPECT_EQ(e->offset, ms(1));
  // sqrt((1² + 2²) / 2) ms
  EXPECT_NEAR(e->jitter.seconds(), std::sqrt(2.5) * 1e-3, 1e-9);
  EXPECT_EQ(f.valid_stages(), 3U);
}

TEST(ClockFilter, DummiesAgeOutSamplesAndRaiseDispersion) {
  ClockFilter f;
  ASSERT_TRUE(f.add(ms(4), ms(1), Duration{}, at(0)));
  const Duration before = f.estimate()->dispersion;
  for (int i = 1; i <= 7; ++i) f.add_dummy(at(16 * i));
  EXPECT_EQ(f.valid_stages(), 1U);
  EXPECT_GT(f.estimate()->dispersion, before);
  f.add_dummy(at(16 * 8));
  EXPECT_EQ(f.valid_stages(), 0U);
  // Every stage at MAXDISP: ε = 16 s × Σ_{i=0..7} 2^-(i+1) = 16 s × (1 − 1/256).
  EXPECT_NEAR(f.estimate()->dispersion.seconds(), 16.0 * (1.0 - 1.0 / 256.0), 1e-9);
  // The last estimate's offset is kept, and a fresh sample is released again.
  EXPECT_EQ(f.estimate()->offset, ms(4));
  EXPECT_TRUE(f.add(ms(5), ms(2), Duration{}, at(16 * 9)));
}

TEST(ClockFilter, ASecondMeasurementOfTheSameInstantReplacesTheStage) {
  ClockFilter f;
  ASSERT_TRUE(f.add(ms(3), ms(2), Duration{}, at(0)));
  (void)f.add(ms(1), ms(2), Duration{}, at(16));
  (void)f.add(ms(2), ms(1), Duration{}, at(16));  // interleaved re-measurement of exchange 2
  EXPECT_EQ(f.valid_stages(), 2U);
  EXPECT_EQ(f.stages()[0].offset, ms(2));
  EXPECT_EQ(f.stages()[1].offset, ms(3));
}

TEST(ClockFilter, RegisterClockNeverRunsBackwards) {
  ClockFilter f;
  ASSERT_TRUE(f.add(ms(0), ms(1), Duration{}, at(0)));
  f.add_dummy(at(100));
  // An interleaved sample stamped before the dummy: no negative ageing, no double ageing later.
  (void)f.add(ms(0), ms(1), Duration{}, at(90));
  (void)f.add(ms(0), ms(1), Duration{}, at(200));
  // The first stage aged 100 s up to the dummy, then 100 s more: 200 s at 15 ppm = 3 ms.
  EXPECT_EQ(f.stages()[3].dispersion, ms(3));
}

TEST(ClockFilter, JitterNeverBelowThePrecisionOfTheStamps) {
  ClockFilter f;
  const auto e = f.add(ms(1), ms(1), Duration{}, at(0), Duration::from_us(2));
  ASSERT_TRUE(e);
  EXPECT_EQ(e->jitter, Duration::from_us(2));  // one sample: computed jitter is 0
  f.add_dummy(at(16));
  EXPECT_EQ(f.estimate()->jitter, Duration::from_us(2));  // and it stays floored on updates
}

TEST(ClockFilter, DispersionIsCappedAtMaxdisp) {
  ClockFilter f;
  ASSERT_TRUE(f.add(ms(0), ms(1), Duration::from_s(100), at(0)));
  EXPECT_EQ(f.stages()[0].dispersion, kMaxDispersion);
}

// RFC 5905 A.5.2 (ntpd's clock_filter): a new best sample whose offset jumps from the last
// released one by more than SGATE × jitter, within two polls of that release, is a popcorn spike:
// not released, but kept in the register. A burst at a 64 s poll: the 5 ms sample released at
// 0 s leaves the register at 16 s, and the new best (0 ms, the others agree within 10 µs) jumps.
TEST(ClockFilter, PopcornSpikeIsHeldBackWithinTwoPolls) {
  const Duration poll = Duration::from_s(64), us10 = Duration::from_us(10);
  ClockFilter f;
  ASSERT_TRUE(f.add(ms(5), ms(1), Duration{}, at(0), Duration{}, poll));
  for (int i = 1; i <= 7; ++i)
    EXPECT_FALSE(f.add(i % 2 ? us10 : -us10, ms(2), Duration{}, at(2 * i), Duration{}, poll)) << i;
  EXPECT_FALSE(f.add(ms(0), Duration::from_us(1500), Duration{}, at(16), Duration{}, poll));
  EXPECT_EQ(f.spikes(), 1u);
  EXPECT_EQ(f.estimate()->offset, ms(5));  // still the last released
  EXPECT_EQ(f.stages()[0].offset, ms(0));  // the register keeps the spike
  EXPECT_LT(f.estimate()->jitter, Duration::from_us(20));
  // Two polls after the last release the same jump is news, not a spike.
  const auto e = f.add(ms(0), Duration::from_us(1400), Duration{}, at(128), Duration{}, poll);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->offset, ms(0));
  EXPECT_EQ(f.spikes(), 1u);
}

// Without a poll (callers that do not pace samples) the suppressor is off; a jump within the
// jitter gate is no spike at any poll.
TEST(ClockFilter, NoSpikeWithoutPollOrWithinTheGate) {
  ClockFilter off;
  ASSERT_TRUE(off.add(ms(5), ms(1), Duration{}, at(0)));
  for (int i = 1; i <= 7; ++i) (void)off.add(Duration{}, ms(2), Duration{}, at(2 * i));
  EXPECT_TRUE(off.add(ms(0), Duration::from_us(1500), Duration{}, at(16)));
  EXPECT_EQ(off.spikes(), 0u);

  ClockFilter gated;
  const Duration poll = Duration::from_s(64);
  ASSERT_TRUE(gated.add(ms(0), ms(3), Duration{}, at(0), Duration{}, poll));
  (void)gated.add(ms(2), ms(4), Duration{}, at(2), Duration{}, poll);
  // Best now, 1 ms from the last release; jitter about it (1 ms, 1 ms) is 1 ms: within 3 ×.
  EXPECT_TRUE(gated.add(ms(1), ms(2), Duration{}, at(4), Duration{}, poll));
  EXPECT_EQ(gated.spikes(), 0u);
}

// What the exchange weighs the pick by: half its round trip (asymmetry could put the truth
// anywhere in it) plus its stage's dispersion, growing at PHI from then on.
TEST(ClockFilter, ErrorBoundIsHalfTheDelayPlusDispersionGrowingAtPhi) {
  ClockFilter f;
  EXPECT_FALSE(f.error_bound_at(at(0)));
  const auto e = f.add(ms(0), ms(4), ms(1), at(0));
  ASSERT_TRUE(e);
  EXPECT_EQ(e->error_bound, ms(3));
  EXPECT_EQ(f.error_bound_at(at(1000)), ms(18));  // + 15 ppm × 1000 s
  // A later, worse sample is not released; the pick ages with the register.
  EXPECT_FALSE(f.add(ms(0), ms(9), Duration{}, at(400)));
  EXPECT_EQ(f.estimate()->error_bound, ms(3) + ms(6));
  EXPECT_EQ(f.error_bound_at(at(1000)), ms(18));
}

// --- Changes taid makes to the local clock ----------------------------------------------------

Duration us(int64_t v) { return Duration::from_us(v); }

// Eight samples of a source 5 ms ahead (±10 µs) at a 64 s poll, the pick at 24 s (2.2 ms); then
// taid steps the clock 10 ms forward and makes it run 20 ppm faster, at 60 s. Told, the register
// holds what the new clock would have measured: the same as a filter fed those remeasured
// samples (T4' = T4 + shift(T4), θ' = θ − (shift(T1) + shift(T4))/2, δ' = δ − shift(T1) +
// shift(T4), T1 = T4 − δ), stage by stage, and it releases the next sample as that filter does.
// Untold, the register mixes both clocks: its jitter about that pick is the step's size.
TEST(ClockFilter, CorrectedRegisterPicksAsIfMeasuredWithTheNewClock) {
  const Duration poll = Duration::from_s(64), precision = us(1), dispersion = us(20);
  const UtcTime when = at(60);
  const double dfrequency = 20e-6;
  const Duration doffset = ms(10);
  const auto shift = [&](UtcTime t) {
    return Duration::from_seconds((t - when).seconds() * dfrequency) + doffset;
  };
  const int64_t delays_us[] = {3000, 2500, 2800, 2200, 2900, 2600, 2400, 2700};
  ClockFilter corrected, fresh, untold;
  for (int i = 0; i < 8; ++i) {
    const Duration offset = ms(5) + us(i % 2 ? 10 : -10), delay = us(delays_us[i]);
    const UtcTime t4 = at(8 * i);
    (void)corrected.add(offset, delay, dispersion, t4, precision, poll);
    (void)untold.add(offset, delay, dispersion, t4, precision, poll);
    const Duration s1 = shift(t4 - delay), s4 = shift(t4);
    (void)fresh.add(offset - (s1 + s4) / 2, delay - s1 + s4, dispersion, t4 + s4, precision, poll);
  }
  ASSERT_EQ(corrected.estimate()->time, at(24));
  corrected.correct_for_local_clock(when, dfrequency, doffset);

  for (std::size_t k = 0; k < ClockFilter::kStages; ++k) {
    const Stage &a = corrected.stages()[k], &b = fresh.stages()[k];
    EXPECT_EQ(a.offset, b.offset) << k;
    EXPECT_EQ(a.delay, b.delay) << k;
    EXPECT_EQ(a.time, b.time) << k;
    // Dispersion is no reading of the local clock and keeps what it accrued; the fresh filter
    // aged its stages by the remapped times, 8 s × (1 + 20 ppm) apart: 2.4 ns more per shift
    // (rounded to 2).
    EXPECT_EQ((b.dispersion - a.dispersion).ns(), static_cast<int64_t>(2 * k)) << k;
  }
  // Stage 4 (the pick, 36 s before the change): 10 ms − 36 s × 20 ppm = 9.28 ms later, its
  // offset that much lower, its delay 2.2 ms × 20 ppm = 44 ns longer.
  EXPECT_EQ(corrected.stages()[4].time, at(24) + us(9280));
  EXPECT_EQ(corrected.stages()[4].offset, ms(5) + us(10) - us(9280) + Duration::from_ns(22));
  EXPECT_EQ(corrected.stages()[4].delay, us(2200) + Duration::from_ns(44));
  const Estimate &a = *corrected.estimate(), &b = *fresh.estimate();
  EXPECT_EQ(a.offset, b.offset);
  EXPECT_EQ(a.delay, b.delay);
  EXPECT_EQ(a.time, b.time);
  EXPECT_EQ(a.updated, b.updated);
  EXPECT_EQ(a.jitter, b.jitter);
  EXPECT_LE(std::llabs((a.dispersion - b.dispersion).ns()), 14);
  EXPECT_LE(std::llabs((a.error_bound - b.error_bound).ns()), 14);
  EXPECT_LE(std::llabs((corrected.dispersion_at(at(100)) - fresh.dispersion_at(at(100))).ns()), 14);

  // At 64 s the new clock reads shift(64 s) = 10.08 ms ahead of the old one: the source, still
  // 5 ms ahead of the old clock, is 5.08 ms behind it. The lowest delay yet.
  const Duration s64 = shift(at(64));
  ASSERT_EQ(s64, us(10080));
  const auto next = [&](ClockFilter& f) {
    return f.add(ms(5) - s64, us(2000), dispersion, at(64) + s64, precision, poll);
  };
  const auto from_corrected = next(corrected), from_fresh = next(fresh), from_untold = next(untold);
  ASSERT_TRUE(from_corrected);
  ASSERT_TRUE(from_fresh);
  EXPECT_EQ(from_corrected->offset, ms(5) - s64);
  EXPECT_EQ(from_corrected->offset, from_fresh->offset);
  EXPECT_EQ(from_corrected->jitter, from_fresh->jitter);
  EXPECT_LE(std::llabs((from_corrected->dispersion - from_fresh->dispersion).ns()), 14);
  // The jitter is the drift that 20 ppm more gives the older stages (up to 1.2 ms over 60 s),
  // as a filter fed by the new clock all along sees it.
  EXPECT_EQ(from_corrected->jitter, Duration::from_ns(716911));
  // Untold, the register mixes both clocks: the jitter about the same pick is the step.
  ASSERT_TRUE(from_untold);
  EXPECT_EQ(from_untold->offset, ms(5) - s64);
  EXPECT_EQ(from_untold->jitter, Duration::from_ns(10081433));
  EXPECT_EQ(corrected.spikes() + untold.spikes(), 0u);
}

// A step back of 50 s, told: the register moves with the clock and the next sample is released
// at once. Untold, the never-older rule holds it back (its T4 is before the last release's).
TEST(ClockFilter, CorrectedStepBackKeepsTheNeverOlderRuleOnOneScale) {
  ClockFilter corrected, untold;
  for (int i = 0; i < 4; ++i) {
    (void)corrected.add(ms(1), ms(2) - us(100 * i), Duration{}, at(16 * i));
    (void)untold.add(ms(1), ms(2) - us(100 * i), Duration{}, at(16 * i));
  }
  ASSERT_EQ(corrected.estimate()->time, at(48));
  corrected.correct_for_local_clock(at(60), 0, -Duration::from_s(50));
  EXPECT_EQ(corrected.estimate()->time, at(48) - Duration::from_s(50));
  EXPECT_EQ(corrected.estimate()->offset, ms(1) + Duration::from_s(50));
  EXPECT_EQ(corrected.stages()[0].time, at(48) - Duration::from_s(50));
  EXPECT_EQ(corrected.stages()[0].delay, ms(2) - us(300));  // a step leaves delays alone
  const Duration offset = ms(1) + Duration::from_s(50);
  const auto e = corrected.add(offset, us(1500), Duration{}, at(14));
  ASSERT_TRUE(e);
  EXPECT_EQ(e->offset, offset);
  EXPECT_FALSE(untold.add(offset, us(1500), Duration{}, at(14)));
  EXPECT_EQ(untold.estimate()->offset, ms(1));
}

}  // namespace
}  // namespace taid::filter
