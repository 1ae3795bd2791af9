// Unit tests of the simulator's pieces: exact clock integration, wander statistics, monotonic vs
// realtime, the driver's kernel rounding and bookkeeping, the kernel's leap second state machine
// and the truth's leap seconds, path delays and losses, server replies through the real codec and
// exchange (LI bits and the repeated second across a leap), and determinism by seed.
#include <gtest/gtest.h>

#include <sys/timex.h>

#include <cmath>
#include <cstdint>
#include <numbers>
#include <vector>

#include "ntp/exchange.hpp"
#include "ntp/packet.hpp"
#include "sim/random.hpp"
#include "sim/sim_clock.hpp"
#include "sim/sim_clock_driver.hpp"
#include "sim/sim_network.hpp"
#include "sim/sim_server.hpp"
#include "sim/simulation.hpp"
#include "sim/truth.hpp"
#include "tests/unit/ntp_actions.hpp"

namespace taid::sim {
namespace {

const UtcTime kStart = UtcTime::from_unix_ns(1780000000LL * 1000000000);
constexpr int64_t kS = 1000000000;

TEST(SimClock, HundredPpmIsExactlyOneMillisecondAheadAfterTenSeconds) {
  ClockModel model;
  model.frequency_ppm = 100;
  SimClock clock(model, kStart, 1);
  for (int s = 1; s <= 10; ++s) clock.advance_to(s * kS);
  EXPECT_EQ(clock.local(), kStart + Duration::from_s(10) + Duration::from_ms(1));
  EXPECT_EQ(clock.error_ns(), 1e6);
  // The same in one jump.
  SimClock jump(model, kStart, 1);
  jump.advance_to(10 * kS);
  EXPECT_EQ(jump.local(), clock.local());
  EXPECT_EQ(jump.error_ns(), 1e6);
}

TEST(SimClock, UnevenStepsKeepTheFractionOfANanosecond) {
  ClockModel model;
  model.initial_offset = Duration::from_ms(100);
  model.frequency_ppm = 100;
  model.initial_driver_frequency_ppb = -33'333;
  SimClock clock(model, kStart, 1);
  // The kernel scales the oscillator's count: (1 + 100 ppm)(1 − 33.333 ppm) − 1.
  const double net_ppb = 100'000.0 - 33'333.0 - 100'000.0 * 33'333.0 * 1e-9;
  EXPECT_DOUBLE_EQ(clock.total_frequency_ppb(), net_ppb);
  // 1 000 000 steps of 10 000 007 ns (about 10 000 s): each adds a fraction of a ns.
  int64_t t = 0;
  for (int i = 0; i < 1000000; ++i) clock.advance_to(t += 10000007);
  const double expected = 1e8 + net_ppb * static_cast<double>(t) / 1e9;
  EXPECT_NEAR(clock.error_ns(), expected, 1e-3);
  EXPECT_EQ(clock.local().unix_ns(),
            kStart.unix_ns() + t + static_cast<int64_t>(std::floor(expected)));
}

TEST(SimClock, TemperatureCycleIntegratesAnalytically) {
  ClockModel model;
  model.temperature_amplitude_ppm = 2;
  model.temperature_period = Duration::from_s(1000);
  SimClock clock(model, kStart, 1);
  // Over half a period ∫ A sin = A·P/π; over a whole one it is 0.
  for (int s = 1; s <= 500; ++s) clock.advance_to(s * kS);
  EXPECT_NEAR(clock.error_ns(), 2000.0 * 1000 / std::numbers::pi, 1e-3);
  EXPECT_NEAR(clock.oscillator_frequency_ppb(), 0, 1e-9);
  clock.advance_to(750 * kS);
  EXPECT_NEAR(clock.oscillator_frequency_ppb(), -2000, 1e-9);
  clock.advance_to(1000 * kS);
  EXPECT_NEAR(clock.error_ns(), 0, 1e-3);
}

TEST(SimClock, WanderIsARandomWalkOfTheGivenStepPerSecond) {
  ClockModel model;
  model.wander = 1e-9;  // 1 ppb per second
  SimClock clock(model, kStart, 42);
  constexpr int n = 20000;
  double sum = 0, sum2 = 0;
  double previous = clock.oscillator_frequency_ppb();
  for (int s = 1; s <= n; ++s) {
    clock.advance_to(s * kS);
    const double step = clock.oscillator_frequency_ppb() - previous;
    previous = clock.oscillator_frequency_ppb();
    sum += step;
    sum2 += step * step;
  }
  const double mean = sum / n;
  const double variance = sum2 / n - mean * mean;
  // Standard errors: 1/√n = 0.007 for the mean, √(2/n) = 0.01 for the variance.
  EXPECT_NEAR(mean, 0, 0.03);
  EXPECT_NEAR(variance, 1.0, 0.05);
  // Piecewise constant: no step inside a second.
  const double f = clock.oscillator_frequency_ppb();
  clock.advance_to(n * kS + kS / 2);
  EXPECT_EQ(clock.oscillator_frequency_ppb(), f);
}

TEST(SimClock, MonotonicIsSlewedButNotStepped) {
  ClockModel model;
  model.initial_monotonic = Duration::from_s(500);
  SimClock clock(model, kStart, 1);
  clock.set_driver_frequency_ppb(1'000'000);  // +1000 ppm
  clock.advance_to(10 * kS);
  EXPECT_EQ(clock.monotonic(),
            Duration::from_s(500) + Duration::from_s(10) + Duration::from_ms(10));
  clock.step(Duration::from_s(10));
  EXPECT_EQ(clock.monotonic(),
            Duration::from_s(500) + Duration::from_s(10) + Duration::from_ms(10));
  EXPECT_EQ(clock.local(), kStart + Duration::from_s(20) + Duration::from_ms(10));
  EXPECT_EQ(clock.stepped(), Duration::from_s(10));
  EXPECT_EQ(clock.true_utc(), kStart + Duration::from_s(10));
}

TEST(SimClock, SameSeedSameWalkOtherSeedAnother) {
  ClockModel model;
  model.wander = 1e-8;
  SimClock a(model, kStart, 7), b(model, kStart, 7), c(model, kStart, 8);
  bool differs = false;
  for (int s = 1; s <= 1000; ++s) {
    a.advance_to(s * kS + 123);
    b.advance_to(s * kS + 123);
    c.advance_to(s * kS + 123);
    ASSERT_EQ(a.local(), b.local());
    ASSERT_EQ(a.error_ns(), b.error_ns());
    differs |= a.local() != c.local();
  }
  EXPECT_TRUE(differs);
}

TEST(SimClockDriver, RoundsLikeTheKernelClampsAndReturnsWhatItApplied) {
  SimClock clock({}, kStart, 1);
  SimClockDriver driver(clock);
  EXPECT_EQ(driver.name(), "sim");
  EXPECT_EQ(driver.max_frequency_ppb(), clock::kSystemClockMaxFrequencyPpb);
  // 123.456 ppb = 8090.8 × 2^-16 ppm → 8091 × 2^-16 ppm.
  auto applied = driver.set_frequency_ppb(123.456);
  ASSERT_TRUE(applied.ok());
  EXPECT_EQ(*applied, 8091 * 1000.0 / 65536);
  EXPECT_EQ(clock.driver_frequency_ppb(), *applied);
  EXPECT_EQ(*driver.frequency_ppb(), *applied);
  EXPECT_EQ(*driver.set_frequency_ppb(2e8), 100'500'000);
  EXPECT_EQ(*driver.set_frequency_ppb(-2e8), -100'500'000);
  EXPECT_EQ(clock.driver_frequency_ppb(), -100'500'000);
  EXPECT_EQ(driver.frequency_sets(), 3U);
}

TEST(SimClockDriver, StepsAndReportsKernelState) {
  SimClock clock({}, kStart, 1);
  SimClockDriver driver(clock);
  auto s = driver.state();
  ASSERT_TRUE(s.ok());
  EXPECT_NE(s->status & STA_UNSYNC, 0U);
  EXPECT_EQ(s->clock_state, TIME_ERROR);
  EXPECT_FALSE(s->synchronized());

  ASSERT_TRUE(driver.step(Duration::from_ms(-250)).ok());
  EXPECT_EQ(driver.now(), kStart - Duration::from_ms(250));
  EXPECT_EQ(driver.steps(), 1U);
  EXPECT_EQ(driver.noticed_interference(), std::nullopt);  // the driver's own step

  ASSERT_TRUE(driver.set_sync_status({true, Duration::from_ms(1), Duration::from_us(20)}).ok());
  ASSERT_TRUE(driver.set_leap(clock::LeapState::insert).ok());
  ASSERT_TRUE(driver.set_tai_offset(37).ok());
  ASSERT_TRUE(driver.set_frequency_ppb(5000).ok());
  clock.advance_to(10 * kS);
  s = driver.state();
  EXPECT_EQ(s->status & STA_UNSYNC, 0U);
  EXPECT_NE(s->status & STA_INS, 0U);
  EXPECT_EQ(s->clock_state, TIME_INS);
  // maxerror grows by 500 µs per second, as the kernel's second_overflow() adds it.
  EXPECT_EQ(s->max_error, Duration::from_ms(1) + Duration::from_ms(5));
  EXPECT_EQ(s->est_error, Duration::from_us(20));
  EXPECT_EQ(s->tai_offset_s, 37);
  EXPECT_EQ(s->frequency_ppb, 5000);
  // Past 16 s (after 32 000 s unset here) the kernel gives up on the clock.
  clock.advance_to(31998 * kS);
  EXPECT_EQ(driver.state()->status & STA_UNSYNC, 0U);
  clock.advance_to(32010 * kS);
  s = driver.state();
  EXPECT_EQ(s->max_error, Duration::from_s(16));
  EXPECT_NE(s->status & STA_UNSYNC, 0U);
  EXPECT_EQ(s->clock_state, TIME_ERROR);
}

TEST(SimClockDriver, ReportsInterferenceOnce) {
  SimClock clock({}, kStart, 1);
  SimClockDriver driver(clock);
  driver.interfere_step(Duration::from_s(10));
  EXPECT_EQ(clock.local(), kStart + Duration::from_s(10));
  EXPECT_EQ(driver.steps(), 0U);
  EXPECT_EQ(driver.noticed_interference(), "clock stepped by another process by +10.000 s");
  EXPECT_EQ(driver.noticed_interference(), std::nullopt);
  driver.interfere_set_frequency_ppb(25000);
  EXPECT_EQ(*driver.frequency_ppb(), 25000);
  driver.interfere_step(Duration::from_us(900));  // 1 ms or less: unnoticed, as in adjtimex
  EXPECT_EQ(driver.noticed_interference(),
            "frequency changed behind taid's back: now 25.000 ppm, taid set 0.000 ppm");
  EXPECT_EQ(driver.noticed_interference(), std::nullopt);
  // The driver's own write takes over again.
  ASSERT_TRUE(driver.set_frequency_ppb(-1000).ok());
  EXPECT_EQ(driver.noticed_interference(), std::nullopt);
}

TEST(SimPath, DelayIsBasePlusExponentialQueueing) {
  PathModel model;  // 100 µs + 100 µs × Exp(1)
  model.jitter_to_client = Duration::from_us(300);
  SimPath path(model, 3);
  constexpr int n = 100000;
  double sum_out = 0, sum_back = 0;
  int64_t min_out = INT64_MAX;
  for (int i = 0; i < n; ++i) {
    const auto out = path.transit(Direction::to_server, 5 * kS);
    const auto back = path.transit(Direction::to_client, 5 * kS);
    ASSERT_TRUE(out && back);
    sum_out += static_cast<double>(*out - 5 * kS);
    sum_back += static_cast<double>(*back - 5 * kS);
    min_out = std::min(min_out, *out - 5 * kS);
  }
  // Standard errors 0.32 µs and 0.95 µs.
  EXPECT_NEAR(sum_out / n, 200e3, 1.5e3);
  EXPECT_NEAR(sum_back / n, 400e3, 4.5e3);
  EXPECT_GE(min_out, 100000);
  EXPECT_LT(min_out, 100100);
}

TEST(SimPath, LosesTheGivenShare) {
  PathModel model;
  model.loss = 0.1;
  SimPath path(model, 4);
  constexpr int n = 100000;
  int lost = 0;
  for (int i = 0; i < n; ++i) lost += path.transit(Direction::to_server, 0) ? 0 : 1;
  EXPECT_NEAR(static_cast<double>(lost) / n, 0.1, 0.005);  // standard error 0.00095
}

TEST(SimPath, AsymmetryAndRouteChange) {
  PathModel model;
  model.jitter_to_server = model.jitter_to_client = Duration();
  model.asymmetry = Duration::from_us(40);
  model.route_change =
      PathModel::RouteChange{Duration::from_s(100), Duration::from_ms(5), Duration::from_us(-60)};
  SimPath path(model, 5);
  EXPECT_EQ(*path.transit(Direction::to_server, 0), 140000);
  EXPECT_EQ(*path.transit(Direction::to_client, 0), 100000);
  EXPECT_EQ(*path.transit(Direction::to_server, 100 * kS), 100 * kS + 5000000);
  EXPECT_EQ(*path.transit(Direction::to_client, 100 * kS), 100 * kS + 5060000);
}

// A real exchange's request, the server's reply, and the sample the exchange makes of it.
class SimServerTest : public ::testing::Test {
 protected:
  std::vector<uint8_t> request(UtcTime local) {
    const auto actions = exchange_.on_timer({local, ntp::TimestampSource::kernel, -20});
    return ntp::only<ntp::SendRequest>(actions).bytes;
  }
  uint64_t cookie_ = 99;
  ntp::Exchange exchange_{{"sim", 6, 10, false}, [this] { return cookie_++; }};
};

TEST_F(SimServerTest, ReplyDecodesWithOriginT2AndT3) {
  SimServer server({}, kStart);
  const auto bytes = request(kStart + Duration::from_s(5));
  const auto req = *ntp::decode(bytes);
  const int64_t arrival = 5 * kS + 150000;
  const auto reply = server.on_request(bytes, arrival);
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->sent_ns, arrival + 10000);
  const auto decoded = ntp::decode(reply->bytes);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded->mode, ntp::Mode::server);
  EXPECT_EQ(decoded->stratum, 1);
  EXPECT_EQ(decoded->precision, -20);
  EXPECT_EQ(ntp::reference_id_to_string(decoded->reference_id, 1), "GPS");
  EXPECT_EQ(decoded->origin_time, req.transmit_time);
  EXPECT_EQ(decoded->receive_time, NtpTimestamp::from_utc(kStart + Duration::from_ns(arrival)));
  EXPECT_EQ(decoded->transmit_time,
            NtpTimestamp::from_utc(kStart + Duration::from_ns(arrival + 10000)));
}

TEST_F(SimServerTest, TheExchangeMeasuresTheClockAgainstIt) {
  // Local clock 100 ms ahead; 150 µs out, 250 µs back: θ = −100 ms + (150 − 250)/2 µs.
  SimServer server({}, kStart);
  const Duration ahead = Duration::from_ms(100);
  const auto reply =
      server.on_request(request(kStart + Duration::from_s(5) + ahead), 5 * kS + 150000);
  ASSERT_TRUE(reply);
  const UtcTime t4 = kStart + Duration::from_ns(reply->sent_ns + 250000) + ahead;
  const auto actions = exchange_.on_packet(reply->bytes, {t4, ntp::TimestampSource::kernel, -20});
  const auto accepted = ntp::only<ntp::SampleAccepted>(actions);
  EXPECT_NEAR(static_cast<double>(accepted.sample.offset.ns()), -100e6 - 50e3, 1);
  EXPECT_NEAR(static_cast<double>(accepted.sample.delay.ns()), 400e3, 1);
}

TEST_F(SimServerTest, LyingDyingAndStepping) {
  ServerModel lying;
  lying.kind = ServerModel::Kind::lying;
  lying.offset = Duration::from_ms(-30);
  EXPECT_EQ(SimServer(lying, kStart).clock_at(kS),
            kStart + Duration::from_s(1) - Duration::from_ms(30));

  ServerModel dying;
  dying.kind = ServerModel::Kind::dying;
  dying.at = Duration::from_s(100);
  SimServer dead(dying, kStart);
  EXPECT_TRUE(dead.on_request(request(kStart), 99 * kS));
  EXPECT_FALSE(dead.on_request(request(kStart), 100 * kS));
  EXPECT_EQ(dead.requests(), 2U);
  EXPECT_EQ(dead.replies(), 1U);

  ServerModel stepping;
  stepping.kind = ServerModel::Kind::stepping;
  stepping.at = Duration::from_s(100);
  stepping.offset = Duration::from_s(2);
  SimServer stepper(stepping, kStart);
  EXPECT_EQ(stepper.clock_at(100 * kS - 1), kStart + Duration::from_ns(100 * kS - 1));
  EXPECT_EQ(stepper.clock_at(100 * kS), kStart + Duration::from_s(102));
}

TEST(SimServer, IgnoresWhatIsNotAClientRequest) {
  SimServer server({}, kStart);
  EXPECT_FALSE(server.on_request(std::vector<uint8_t>(12, 0), 0));
  ntp::Packet p;
  p.mode = ntp::Mode::server;
  EXPECT_FALSE(server.on_request(ntp::encode(p), 0));
}

// 2017-01-01T00:00:00Z: the midnight after the inserted 2016-12-31T23:59:60Z (TAI − UTC 36 → 37).
const UtcTime kMidnight = UtcTime::from_unix_ns(1483228800LL * kS);
constexpr Duration kSecond = Duration::from_s(1);

TEST(Truth, InsertedSecondRepeatsPosixUtcWhileTaiRunsOn) {
  const Truth truth(kMidnight - Duration::from_s(10), 36, {{kMidnight, +1}});
  ASSERT_EQ(truth.leaps().size(), 1U);
  EXPECT_EQ(truth.leaps()[0].t_ns, 10 * kS);
  EXPECT_EQ(truth.leaps()[0].done_t_ns, 11 * kS);
  // 23:59:59 → TAI M + 35; 23:59:60 → TAI M + 36; 00:00:00 → TAI M + 37.
  EXPECT_EQ(truth.tai_at(9 * kS), TaiTime::from_utc(kMidnight, Duration::from_s(35)));
  EXPECT_EQ(truth.tai_at(10 * kS), TaiTime::from_utc(kMidnight, Duration::from_s(36)));
  EXPECT_EQ(truth.tai_at(11 * kS), TaiTime::from_utc(kMidnight, Duration::from_s(37)));
  EXPECT_EQ(truth.utc_at(9 * kS + kS / 2), kMidnight - Duration::from_ms(500));
  EXPECT_EQ(truth.utc_at(10 * kS + kS / 2), kMidnight - Duration::from_ms(500));  // 23:59:60.5
  EXPECT_EQ(truth.utc_at(11 * kS + kS / 2), kMidnight + Duration::from_ms(500));
  EXPECT_EQ(truth.tai_offset_at(10 * kS - 1), 36);
  EXPECT_EQ(truth.tai_offset_at(10 * kS), 37);
  EXPECT_EQ(truth.t_of_utc(kMidnight - Duration::from_ms(500)), 9 * kS + kS / 2);  // first pass
  EXPECT_EQ(truth.t_of_utc(kMidnight), 11 * kS);
  // A leap over before the start is already in the offset.
  const Truth later(kMidnight + Duration::from_s(10), 37, {{kMidnight, +1}});
  EXPECT_TRUE(later.leaps().empty());
  EXPECT_EQ(later.utc_at(kS), kMidnight + Duration::from_s(11));
}

TEST(Truth, DeletedSecondIsSkipped) {
  const Truth truth(kMidnight - Duration::from_s(10), 37, {{kMidnight, -1}});
  EXPECT_EQ(truth.utc_at(8 * kS + kS / 2), kMidnight - Duration::from_ms(1500));  // 23:59:58.5
  EXPECT_EQ(truth.utc_at(9 * kS), kMidnight);                                     // not 23:59:59
  EXPECT_EQ(truth.tai_offset_at(9 * kS), 36);
  EXPECT_EQ(truth.tai_at(9 * kS), TaiTime::from_utc(kMidnight, Duration::from_s(36)));
  EXPECT_EQ(truth.t_of_utc(kMidnight - Duration::from_ms(500)), 9 * kS);  // the skipped second
  EXPECT_EQ(truth.leaps()[0].done_t_ns, 9 * kS);
}

// A perfect clock on the truth's UTC with the kernel TAI offset 36, 10 s before the insertion.
struct KernelLeapTest : ::testing::Test {
  static ClockModel model(int32_t tai) {
    ClockModel m;
    m.initial_tai_offset_s = tai;
    return m;
  }
  Truth truth{kMidnight - Duration::from_s(10), 36, {{kMidnight, +1}}};
  SimClock clock{model(36), truth, 1};
  SimClockDriver driver{clock};
  void synchronize() {
    ASSERT_TRUE(driver.set_sync_status({true, Duration::from_ms(1), Duration::from_us(1)}).ok());
  }
  int state() { return driver.state()->clock_state; }
};

TEST_F(KernelLeapTest, InsertionAtExactMidnightRepeats235959AndKeepsTaiContinuous) {
  synchronize();
  const Duration monotonic0 = clock.monotonic();
  ASSERT_TRUE(driver.set_leap(clock::LeapState::insert).ok());
  EXPECT_NE(driver.state()->status & STA_INS, 0U);
  clock.advance_to(kS / 2);
  EXPECT_EQ(state(), TIME_OK);  // armed at the next whole second, as second_overflow() does
  clock.advance_to(kS);
  EXPECT_EQ(state(), TIME_INS);
  clock.advance_to(10 * kS - 1);
  EXPECT_EQ(clock.local(), kMidnight - Duration::from_ns(1));
  EXPECT_EQ(state(), TIME_INS);
  EXPECT_EQ(driver.tai_offset_s(), 36);
  clock.advance_to(10 * kS);  // REALTIME reaches M: back to 23:59:59, TAI offset 37
  EXPECT_EQ(clock.local(), kMidnight - kSecond);
  EXPECT_EQ(state(), TIME_OOP);
  EXPECT_EQ(driver.state()->tai_offset_s, 37);
  EXPECT_EQ(clock.clock_tai(), TaiTime::from_utc(kMidnight, Duration::from_s(36)));
  EXPECT_EQ(clock.error_ns(), 0);  // the truth repeats the second too
  EXPECT_EQ(clock.tai_error_ns(), 0);
  EXPECT_EQ(clock.monotonic(), monotonic0 + Duration::from_s(10));  // never steps
  EXPECT_EQ(clock.stepped(), Duration());                           // not a step of anyone's
  clock.advance_to(10 * kS + kS / 2);
  EXPECT_EQ(clock.local(), kMidnight - Duration::from_ms(500));
  EXPECT_EQ(state(), TIME_OOP);
  clock.advance_to(11 * kS);
  EXPECT_EQ(clock.local(), kMidnight);
  EXPECT_EQ(state(), TIME_WAIT);
  clock.advance_to(100 * kS);
  EXPECT_EQ(state(), TIME_WAIT);  // until the flag is cleared
  EXPECT_EQ(clock.kernel_leaps().size(), 1U);
  ASSERT_TRUE(driver.set_leap(clock::LeapState::none).ok());
  clock.advance_to(100 * kS + kS / 2);
  EXPECT_EQ(state(), TIME_WAIT);
  clock.advance_to(101 * kS);
  EXPECT_EQ(state(), TIME_OK);
  EXPECT_EQ(clock.tai_error_ns(), 0);
  EXPECT_EQ(clock.error_ns(), 0);
  ASSERT_EQ(clock.tai_offset_changes().size(), 1U);
  EXPECT_EQ(clock.tai_offset_changes()[0].true_ns, 10 * kS);
  EXPECT_EQ(clock.tai_offset_changes()[0].from_s, 36);
  EXPECT_EQ(clock.tai_offset_changes()[0].to_s, 37);
  EXPECT_TRUE(clock.tai_offset_changes()[0].by_kernel_leap);
}

TEST_F(KernelLeapTest, TheLeapHappensAtItsInstantBetweenAdvances) {
  ASSERT_TRUE(driver.set_leap(clock::LeapState::insert).ok());
  clock.advance_to(25 * kS);  // one call across M
  ASSERT_EQ(clock.kernel_leaps().size(), 1U);
  EXPECT_EQ(clock.kernel_leaps()[0].true_ns, 10 * kS);
  EXPECT_EQ(clock.kernel_leaps()[0].local, kMidnight - kSecond);
  EXPECT_EQ(clock.local(), kMidnight + Duration::from_s(14));
  EXPECT_EQ(clock.kernel_time_state(), TIME_WAIT);  // unsynchronized: adjtimex says TIME_ERROR
  EXPECT_EQ(state(), TIME_ERROR);
  EXPECT_EQ(clock.clock_tai(), clock.true_tai());
}

TEST_F(KernelLeapTest, NoticedOnceAndNotInterference) {
  synchronize();
  ASSERT_TRUE(driver.set_leap(clock::LeapState::insert).ok());
  clock.advance_to(5 * kS);
  EXPECT_EQ(driver.noticed_kernel_leap(), std::nullopt);
  clock.advance_to(12 * kS);
  EXPECT_EQ(driver.noticed_interference(), std::nullopt);
  EXPECT_EQ(driver.noticed_kernel_leap(), 1);
  EXPECT_EQ(driver.noticed_kernel_leap(), std::nullopt);
  EXPECT_EQ(driver.steps(), 0U);
}

TEST_F(KernelLeapTest, ClearedBeforeMidnightNoLeap) {
  synchronize();
  ASSERT_TRUE(driver.set_leap(clock::LeapState::insert).ok());
  clock.advance_to(5 * kS);
  EXPECT_EQ(state(), TIME_INS);
  ASSERT_TRUE(driver.set_leap(clock::LeapState::none).ok());
  clock.advance_to(5 * kS + kS / 2);
  EXPECT_EQ(state(), TIME_INS);
  clock.advance_to(6 * kS);
  EXPECT_EQ(state(), TIME_OK);
  clock.advance_to(20 * kS);
  EXPECT_TRUE(clock.kernel_leaps().empty());
  EXPECT_EQ(clock.local(), kMidnight + Duration::from_s(10));
  EXPECT_EQ(clock.error_ns(), 1e9);  // the truth inserted, the clock did not
  EXPECT_EQ(clock.tai_error_ns(), 0);
}

TEST_F(KernelLeapTest, StepWithTaiOffsetKeepsClockTaiContinuous) {
  clock.advance_to(11 * kS);  // the truth inserted; the kernel was not armed: REALTIME 1 s ahead
  EXPECT_EQ(clock.error_ns(), 1e9);
  EXPECT_EQ(clock.tai_error_ns(), 0);
  const TaiTime before = clock.clock_tai();
  ASSERT_TRUE(driver.step_with_tai_offset(-kSecond, 37).ok());
  EXPECT_EQ(clock.clock_tai(), before);
  EXPECT_EQ(clock.local(), kMidnight);
  EXPECT_EQ(clock.error_ns(), 0);
  EXPECT_EQ(driver.state()->tai_offset_s, 37);
  EXPECT_EQ(driver.steps(), 1U);
  EXPECT_EQ(driver.noticed_interference(), std::nullopt);
  EXPECT_EQ(driver.noticed_kernel_leap(), std::nullopt);
  ASSERT_EQ(clock.tai_offset_changes().size(), 1U);
  EXPECT_FALSE(clock.tai_offset_changes()[0].by_kernel_leap);
  // set_tai_offset alone moves CLOCK_TAI and not REALTIME.
  ASSERT_TRUE(driver.set_tai_offset(38).ok());
  EXPECT_EQ(clock.clock_tai() - before, kSecond);
  EXPECT_EQ(clock.local(), kMidnight);
}

TEST(SimClockKernelLeap, DeletionJumpsFrom235958ToMidnight) {
  ClockModel model;
  model.initial_tai_offset_s = 37;
  SimClock clock(model, Truth(kMidnight - Duration::from_s(10), 37, {{kMidnight, -1}}), 1);
  SimClockDriver driver(clock);
  ASSERT_TRUE(driver.set_sync_status({true, Duration::from_ms(1), Duration::from_us(1)}).ok());
  ASSERT_TRUE(driver.set_leap(clock::LeapState::delete_).ok());
  clock.advance_to(kS);
  EXPECT_EQ(driver.state()->clock_state, TIME_DEL);
  EXPECT_NE(driver.state()->status & STA_DEL, 0U);
  clock.advance_to(9 * kS - 1);
  EXPECT_EQ(clock.local(), kMidnight - kSecond - Duration::from_ns(1));
  EXPECT_EQ(driver.state()->clock_state, TIME_DEL);
  clock.advance_to(9 * kS);  // 23:59:59 would begin: 00:00:00 instead
  EXPECT_EQ(clock.local(), kMidnight);
  EXPECT_EQ(driver.state()->clock_state, TIME_WAIT);
  EXPECT_EQ(driver.state()->tai_offset_s, 36);
  EXPECT_EQ(clock.error_ns(), 0);
  EXPECT_EQ(clock.tai_error_ns(), 0);
  EXPECT_EQ(clock.monotonic(), model.initial_monotonic + Duration::from_s(9));
  EXPECT_EQ(driver.noticed_kernel_leap(), -1);
  EXPECT_EQ(driver.noticed_interference(), std::nullopt);
  ASSERT_TRUE(driver.set_leap(clock::LeapState::none).ok());
  clock.advance_to(10 * kS);
  EXPECT_EQ(driver.state()->clock_state, TIME_OK);
}

TEST(SimClockKernelLeap, AFastClockLeapsAtItsOwnMidnight) {
  // +100 ppm from 1000 s before midnight: REALTIME reads M at true 1000 s / 1.0001, 0.1 s early.
  ClockModel model;
  model.frequency_ppm = 100;
  model.initial_tai_offset_s = 36;
  const Truth truth(kMidnight - Duration::from_s(1000), 36, {{kMidnight, +1}});
  SimClock clock(model, truth, 1);
  clock.set_kernel_leap(clock::LeapState::insert);
  for (int64_t t = 7; t < 1100 * kS; t += 7777777) clock.advance_to(t);  // uneven steps
  clock.advance_to(1100 * kS);
  ASSERT_EQ(clock.kernel_leaps().size(), 1U);
  const int64_t leap_ns = clock.kernel_leaps()[0].true_ns;
  // The first nanosecond at which t + 1e-4·t ≥ 1000 s: 999 900 010 000 ns.
  EXPECT_EQ(leap_ns, 999'900'010'000);
  EXPECT_GE(clock.kernel_leaps()[0].local, kMidnight - kSecond);
  EXPECT_LT(clock.kernel_leaps()[0].local, kMidnight - kSecond + Duration::from_ns(2));
  // Just before, on a clock run there in one call: still TIME_INS, REALTIME short of M.
  SimClock before(model, truth, 1);
  before.set_kernel_leap(clock::LeapState::insert);
  before.advance_to(leap_ns - 1);
  EXPECT_LT(before.local(), kMidnight);
  EXPECT_EQ(before.kernel_time_state(), TIME_INS);
  EXPECT_EQ(before.tai_offset_s(), 36);
  // CLOCK_TAI never jumped: its error is the clock's 100 ppm drift, 110 ms after 1100 s.
  EXPECT_NEAR(clock.tai_error_ns(), 110e6, 1);
}

TEST(SimClockKernelLeap, AClockSteppedPastMidnightDoesNotLeap) {
  ClockModel model;
  SimClock clock(model, Truth(kMidnight - Duration::from_s(10), 36), 1);
  clock.set_kernel_leap(clock::LeapState::insert);
  clock.advance_to(5 * kS);
  clock.step(Duration::from_s(10));  // 23:59:55 → 00:00:05 without reaching 00:00:00
  clock.advance_to(20 * kS);
  EXPECT_TRUE(clock.kernel_leaps().empty());
  EXPECT_EQ(clock.kernel_time_state(), TIME_INS);  // as the kernel: secs == next_leap never
}

class SimServerLeapTest : public SimServerTest {
 protected:
  // The day of the 2016 leap starts at t = 100 s; the inserted second is t ∈ [86 500, 86 501) s.
  const Truth truth_{kMidnight - Duration::from_s(86400 + 100), 36, {{kMidnight, +1}}};
  struct Reply {
    ntp::Leap leap;
    UtcTime receive;
  };
  Reply ask(const SimServer& server_model_copy, int64_t t_ns) {
    SimServer server = server_model_copy;
    const auto reply = server.on_request(request(kStart), t_ns);
    const auto decoded = ntp::decode(reply->bytes);
    return {decoded->leap, decoded->receive_time.to_utc(kMidnight)};
  }
};

TEST_F(SimServerLeapTest, FollowsAndAnnouncesTheTrueLeap) {
  const SimServer server({}, truth_);
  const int64_t leap_ns = 86500 * kS;
  EXPECT_EQ(ask(server, 99 * kS).leap, ntp::Leap::none);
  EXPECT_EQ(ask(server, 100 * kS).leap, ntp::Leap::add_second);
  const Reply first = ask(server, leap_ns - kS / 2);
  const Reply again = ask(server, leap_ns + kS / 2);
  EXPECT_EQ(first.leap, ntp::Leap::add_second);
  EXPECT_EQ(again.leap, ntp::Leap::add_second);
  // 23:59:59.5 and 23:59:60.5 carry the same NTP seconds.
  EXPECT_EQ(first.receive, kMidnight - Duration::from_ms(500));
  EXPECT_EQ(again.receive, kMidnight - Duration::from_ms(500));
  // Received 5 µs before 23:59:60, sent 5 µs into it (10 µs processing): T3 precedes T2.
  SimServer straddling = server;
  const auto reply = straddling.on_request(request(kStart), leap_ns - 5000);
  const auto decoded = ntp::decode(reply->bytes);
  EXPECT_EQ(decoded->receive_time.to_utc(kMidnight), kMidnight - Duration::from_us(5));
  EXPECT_EQ(decoded->transmit_time.to_utc(kMidnight), kMidnight - kSecond + Duration::from_us(5));
  const Reply after = ask(server, leap_ns + kS + kS / 2);
  EXPECT_EQ(after.leap, ntp::Leap::none);
  EXPECT_EQ(after.receive, kMidnight + Duration::from_ms(500));
}

TEST_F(SimServerLeapTest, IgnoresOrMakesUpLeaps) {
  const int64_t leap_ns = 86500 * kS;
  ServerModel ignoring;
  ignoring.leap_clock = ServerModel::LeapClock::ignores;
  ignoring.announce = ServerModel::LeapAnnounce::none;
  const SimServer ignorer(ignoring, truth_);
  EXPECT_EQ(ask(ignorer, leap_ns - kS).leap, ntp::Leap::none);
  EXPECT_EQ(ask(ignorer, leap_ns + kS / 2).receive, kMidnight + Duration::from_ms(500));
  EXPECT_EQ(ask(ignorer, leap_ns + kS + kS / 2).receive, kMidnight + Duration::from_ms(1500));

  // A deletion announced for the end of 2017-01-01, which the truth does not have.
  ServerModel liar;
  liar.announce = ServerModel::LeapAnnounce::made_up;
  liar.made_up_leap = {kMidnight + Duration::from_s(86400), -1};
  const SimServer made_up(liar, truth_);
  EXPECT_EQ(ask(made_up, leap_ns - kS).leap, ntp::Leap::none);  // not the true leap
  EXPECT_EQ(ask(made_up, leap_ns + kS + kS / 2).leap, ntp::Leap::delete_second);
  const int64_t its_midnight_ns = leap_ns + kS + 86400 * kS;
  EXPECT_EQ(ask(made_up, its_midnight_ns - 1).leap, ntp::Leap::delete_second);
  EXPECT_EQ(ask(made_up, its_midnight_ns).leap, ntp::Leap::none);
  EXPECT_EQ(ask(made_up, its_midnight_ns).receive,
            kMidnight + Duration::from_s(86400));  // its clock did not delete anything
}

TEST(SimRun, TraceShowsTheTruthsLeapInAFineWindow) {
  // The servers announce nothing, so the client's kernel is not armed: the truth inserts a
  // second the clock does not, and the trace shows the clock 1 s ahead of true UTC just after
  // it while CLOCK_TAI − true TAI does not move.
  Scenario scenario = Scenario::reference();
  scenario.sources[0].server.announce = ServerModel::LeapAnnounce::none;
  scenario.start = kMidnight - Duration::from_s(1000);
  scenario.duration = Duration::from_s(1010);
  scenario.true_tai_offset_s = 36;
  scenario.true_leaps = {{kMidnight, +1}};
  scenario.clock.initial_tai_offset_s = 36;
  scenario.fine_trace = {{Duration::from_s(999), Duration::from_s(1002), Duration::from_ms(100)}};
  const RunResult result = run(scenario);
  std::size_t fine = 0;
  for (std::size_t i = 1; i < result.trace.size(); ++i) {
    if (result.trace[i].t <= Duration::from_s(999) || result.trace[i].t > Duration::from_s(1002))
      continue;
    EXPECT_EQ(result.trace[i].t - result.trace[i - 1].t, Duration::from_ms(100));
    ++fine;
  }
  EXPECT_EQ(fine, 30U);
  EXPECT_EQ(result.trace.back().t, Duration::from_s(1010));  // back to 1 s after the window
  const auto at = [&](Duration t) {
    for (const TracePoint& p : result.trace)
      if (p.t == t) return p;
    ADD_FAILURE() << "no trace point at " << t.to_string();
    return TracePoint{};
  };
  const TracePoint before = at(Duration::from_ms(999500));
  const TracePoint inserted = at(Duration::from_ms(1000500));  // true 23:59:60.5
  EXPECT_NEAR(before.offset_ns, 0, 1e6);
  EXPECT_NEAR(inserted.offset_ns, 1e9, 1e6);
  // Both at true 23:59:59.5 (first pass, then the repeat): REALTIME 1 s apart.
  EXPECT_NEAR(static_cast<double>((inserted.local - before.local).ns()), 1e9, 1e3);
  EXPECT_EQ(inserted.true_tai - before.true_tai, kSecond);
  EXPECT_NEAR(inserted.tai_error_ns, before.tai_error_ns, 1e3);
  EXPECT_EQ(inserted.tai_offset_s, 36);
  EXPECT_EQ(inserted.kernel_time_state, TIME_OK);
  EXPECT_TRUE(result.kernel_leaps.empty());
  EXPECT_TRUE(result.tai_offset_changes.empty());
  EXPECT_LT(result.max_tai_jump(Duration::from_s(500), Duration::from_ms(1000500)).abs(),
            Duration::from_ms(1));
}

TEST(SimRun, TruthFromALeapTable) {
  timescale::LeapTable table;
  table.entries = {{1435708800, 36}, {1483228800, 37}, {1483315200, 36}};  // + a made-up deletion
  Scenario scenario;
  scenario.start = kMidnight - Duration::from_s(10);
  scenario.use_leap_table(table);
  EXPECT_EQ(scenario.true_tai_offset_s, 36);
  ASSERT_EQ(scenario.true_leaps.size(), 2U);
  EXPECT_EQ(scenario.true_leaps[0].midnight, kMidnight);
  EXPECT_EQ(scenario.true_leaps[0].direction, 1);
  EXPECT_EQ(scenario.true_leaps[1].midnight, kMidnight + Duration::from_s(86400));
  EXPECT_EQ(scenario.true_leaps[1].direction, -1);
  const Truth truth = scenario.truth();
  EXPECT_EQ(truth.utc_at(10 * kS + kS / 2), kMidnight - Duration::from_ms(500));
  EXPECT_EQ(truth.utc_at((86400 + 10) * kS), kMidnight + Duration::from_s(86400));  // 23:59:59 gone
}

TEST(RunResult, LargestTaiJumpAndTaiOffsetChanges) {
  RunResult result;
  const auto point = [](int64_t t_ms, int64_t tai_ms) {
    TracePoint p;
    p.t = Duration::from_ms(t_ms);
    p.clock_tai = TaiTime::from_tai_ns(tai_ms * 1000000);
    return p;
  };
  // 1 s steps of true time; CLOCK_TAI runs 1 ms fast, then is stepped back 1 s, then by 0.2 s.
  result.trace = {point(0, 5000), point(1000, 6001), point(2000, 6002), point(3000, 7002),
                  point(4000, 8202)};
  EXPECT_EQ(result.max_tai_jump(), Duration::from_ms(-999));
  EXPECT_EQ(result.max_tai_jump(Duration::from_ms(2000)), Duration::from_ms(200));
  EXPECT_EQ(result.max_tai_jump(Duration::from_ms(3000), Duration::from_ms(3000)), Duration());
  result.tai_offset_changes = {{5 * kS, 0, 36, false}, {50 * kS, 36, 37, true}};
  const auto changes =
      result.tai_offset_changes_between(Duration::from_s(10), Duration::from_s(60));
  ASSERT_EQ(changes.size(), 1U);
  EXPECT_EQ(changes[0].to_s, 37);
  EXPECT_TRUE(changes[0].by_kernel_leap);
}

TEST(Random, DrawsDependOnlyOnTheSeed) {
  Random a(derive_seed(1, 2)), b(derive_seed(1, 2)), c(derive_seed(1, 3));
  EXPECT_NE(derive_seed(1, 2), derive_seed(2, 2));
  for (int i = 0; i < 100; ++i) {
    const double x = a.normal();
    EXPECT_EQ(x, b.normal());
    EXPECT_NE(x, c.normal());
    EXPECT_GT(a.exponential(), 0);
    b.exponential();
    c.exponential();
  }
}

}  // namespace
}  // namespace taid::sim
