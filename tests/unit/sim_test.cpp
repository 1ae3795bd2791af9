// Unit tests of the simulator's pieces: exact clock integration, wander statistics, monotonic vs
// realtime, the driver's kernel rounding and bookkeeping, path delays and losses, server replies
// through the real codec and exchange, and determinism by seed.
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
