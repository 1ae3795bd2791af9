// Unit tests for the strong time types: eras, fractions, durations, TAI/UTC.
#include <gtest/gtest.h>

#include "core/time.hpp"

namespace taid {
namespace {

// 1899-12-31 00:00:00 UTC is one day before the NTP prime epoch.
constexpr int64_t kUnix18991231 = -kNtpUnixEpochDelta - 86400;

TEST(NtpDate, DayBeforePrimeEpochIsEraMinusOne) {
  const UtcTime t = UtcTime::from_unix_ns(kUnix18991231 * 1000000000 + 123000000);
  const NtpDate d = ntp_date_from_utc(t);
  EXPECT_EQ(d.era, -1);
  EXPECT_EQ(d.seconds, 4294880896U);
  // 0.123 * 2^32 = 528280977.408 -> nearest 528280977
  EXPECT_EQ(d.fraction, 528280977U);
  EXPECT_EQ(utc_from_ntp_date(d), t);
}

TEST(NtpDate, UnixEpochIsEraZero) {
  const NtpDate d = ntp_date_from_utc(UtcTime::from_unix_ns(0));
  EXPECT_EQ(d.era, 0);
  EXPECT_EQ(d.seconds, 2208988800U);
  EXPECT_EQ(d.fraction, 0U);
}

TEST(NtpDate, Era1StartsOn20360207) {
  // 2036-02-07 06:28:16 UTC = 2^32 - 2208988800 s after the Unix epoch.
  const int64_t s = (int64_t{1} << 32) - kNtpUnixEpochDelta;
  EXPECT_EQ(UtcTime::from_unix_ns(s * 1000000000).to_string(), "2036-02-07T06:28:16.000000000Z");
  const NtpDate start = ntp_date_from_utc(UtcTime::from_unix_ns(s * 1000000000));
  EXPECT_EQ(start.era, 1);
  EXPECT_EQ(start.seconds, 0U);
  const NtpDate before = ntp_date_from_utc(UtcTime::from_unix_ns(s * 1000000000 - 1));
  EXPECT_EQ(before.era, 0);
  EXPECT_EQ(before.seconds, 0xffffffffU);
}

TEST(NtpTimestamp, Era1RoundTripsThroughWireFormat) {
  // 2040-01-01 12:00:00.987654321 UTC, in era 1.
  const UtcTime t = UtcTime::from_unix_ns(2208988800LL * 1000000000 + 987654321);
  ASSERT_EQ(ntp_date_from_utc(t).era, 1);
  const NtpTimestamp wire = NtpTimestamp::from_utc(t);
  // A pivot a year away on either side of the era boundary recovers the era.
  EXPECT_EQ(wire.to_utc(t - Duration::from_s(365 * 86400)), t);
  EXPECT_EQ(wire.to_utc(UtcTime::from_unix_ns(2000000000LL * 1000000000)), t);  // 2033, era 0
  EXPECT_EQ(utc_from_ntp_date(ntp_date_from_utc(t)), t);
}

TEST(NtpTimestamp, EveryNanosecondRoundTrips) {
  for (int64_t ns = 0; ns < 1000000000; ns += 999983) {
    const UtcTime t = UtcTime::from_unix_ns(1700000000LL * 1000000000 + ns);
    EXPECT_EQ(NtpTimestamp::from_utc(t).to_utc(t), t) << ns;
  }
}

TEST(NtpTimestamp, DifferenceIsSignedAndWrapsAcrossEras) {
  const auto a = NtpTimestamp::from_parts(0xffffffffU, 0x80000000U);  // era 0, last second + 0.5
  const auto b = NtpTimestamp::from_parts(0, 0x40000000U);            // era 1, 0.25 s
  EXPECT_EQ((b - a).ns(), 750000000);
  EXPECT_EQ((a - b).ns(), -750000000);
  EXPECT_EQ((NtpTimestamp::from_parts(10, 0) - NtpTimestamp::from_parts(10, 1)).ns(), 0);
  EXPECT_EQ((NtpTimestamp::from_parts(10, 5) - NtpTimestamp::from_parts(10, 0)).ns(), 1);
}

// --- The 2036 rollover: era 0 ends at 2036-02-07 06:28:16 UTC and the wire seconds wrap. ---

// The first instant of era 1.
const UtcTime kEra1 = UtcTime::from_unix_ns(((int64_t{1} << 32) - kNtpUnixEpochDelta) * 1000000000);

TEST(NtpEraRollover, WireFormatAroundTheBoundary) {
  // The boundary itself is all zero bits on the wire: the one instant per era that a receiver
  // cannot tell from "not set" (RFC 5905 reserves 0), which the exchange rejects as such.
  EXPECT_EQ(NtpTimestamp::from_utc(kEra1).raw(), 0U);
  // 1 ns = 4.295 fraction units: nearest 4 after the boundary, 2^32 − 4 before it.
  EXPECT_EQ(NtpTimestamp::from_utc(kEra1 + Duration::from_ns(1)).raw(), 4U);
  EXPECT_EQ(NtpTimestamp::from_utc(kEra1 - Duration::from_ns(1)).raw(), 0xfffffffffffffffcULL);
  const NtpDate after = ntp_date_from_utc(kEra1 + Duration::from_ns(1));
  EXPECT_EQ(after, (NtpDate{1, 0, 4}));
  const NtpDate before = ntp_date_from_utc(kEra1 - Duration::from_ns(1));
  EXPECT_EQ(before, (NtpDate{0, 0xffffffffU, 0xfffffffcU}));
  EXPECT_EQ(utc_from_ntp_date(after), kEra1 + Duration::from_ns(1));
  EXPECT_EQ(utc_from_ntp_date(before), kEra1 - Duration::from_ns(1));
}

// Client before the rollover, server after it, and the other way round: the server's stamp is
// placed in the era nearest the local clock, to the nanosecond.
TEST(NtpEraRollover, StampPlacedInTheEraNearestThePivot) {
  struct Case {
    Duration pivot;  // the local clock, relative to the boundary
    Duration stamp;  // the instant the wire stamp names
  };
  const Case cases[] = {
      {-Duration::from_ms(400), Duration::from_ms(11) + Duration::from_ns(7)},  // client era 0
      {Duration::from_ms(390), -Duration::from_ms(8) + Duration::from_ns(1)},   // client era 1
      {Duration::from_s(20), -Duration::from_s(10) + Duration::from_ns(999999999)},
      {-Duration::from_s(20), Duration::from_s(10) + Duration::from_ns(1)},
      {Duration::from_s(86400), -Duration::from_s(86400) + Duration::from_ns(123456789)},
      // Sixty years either way is still closer than the other era (2^32 s ≈ 136 years).
      {Duration::from_s(60LL * 365 * 86400), -Duration::from_s(5) + Duration::from_ns(3)},
      {-Duration::from_s(60LL * 365 * 86400), Duration::from_s(5) + Duration::from_ns(3)},
  };
  for (const Case& c : cases) {
    const UtcTime stamp = kEra1 + c.stamp;
    const UtcTime pivot = kEra1 + c.pivot;
    SCOPED_TRACE(stamp.to_string() + " seen from " + pivot.to_string());
    EXPECT_EQ(NtpTimestamp::from_utc(stamp).to_utc(pivot), stamp);
    EXPECT_EQ(ntp_date_from_utc(stamp).era, c.stamp < Duration{} ? 0 : 1);
  }
}

TEST(NtpEraRollover, DifferenceAcrossTheBoundaryBothWays) {
  const auto before = NtpTimestamp::from_utc(kEra1 - Duration::from_ms(750) + Duration::from_ns(3));
  const auto after = NtpTimestamp::from_utc(kEra1 + Duration::from_ms(250));
  EXPECT_GT(before.seconds(), after.seconds());  // wrapped: a plain compare gets it backwards
  EXPECT_EQ((after - before).ns(), 999999997);
  EXPECT_EQ((before - after).ns(), -999999997);
  // Thirty seconds each side.
  const auto a = NtpTimestamp::from_utc(kEra1 - Duration::from_s(30));
  const auto b = NtpTimestamp::from_utc(kEra1 + Duration::from_s(30) + Duration::from_ns(1));
  EXPECT_EQ((b - a).ns(), 60000000001);
  EXPECT_EQ((a - b).ns(), -60000000001);
}

TEST(NtpEraRollover, EveryNanosecondNearTheBoundaryRoundTrips) {
  for (int64_t ns = -2000000; ns <= 2000000; ns += 997) {
    const UtcTime t = kEra1 + Duration::from_ns(ns);
    const NtpTimestamp wire = NtpTimestamp::from_utc(t);
    // Seen from a second before and a second after the boundary.
    EXPECT_EQ(wire.to_utc(kEra1 - Duration::from_s(1)), t) << ns;
    EXPECT_EQ(wire.to_utc(kEra1 + Duration::from_s(1)), t) << ns;
    EXPECT_EQ(utc_from_ntp_date(ntp_date_from_utc(t)), t) << ns;
  }
}

TEST(NtpShort, ConvertsAndSaturates) {
  EXPECT_EQ(NtpShort::from_duration(Duration::from_ms(500)).raw(), 0x8000U);
  EXPECT_EQ(NtpShort::from_raw(0x00018000U).to_duration(), Duration::from_ms(1500));
  EXPECT_EQ(NtpShort::from_duration(-Duration::from_s(1)).raw(), 0U);
  EXPECT_EQ(NtpShort::from_duration(Duration::from_s(70000)).raw(), 0xffffffffU);
}

TEST(Duration, Log2AndFormatting) {
  EXPECT_EQ(Duration::from_log2_s(4), Duration::from_s(16));
  EXPECT_EQ(Duration::from_log2_s(-1), Duration::from_ms(500));
  EXPECT_EQ(Duration::from_log2_s(-20).ns(), 954);
  EXPECT_EQ(Duration::from_us(-1500).to_string(), "-1.500ms");
  EXPECT_EQ(Duration::from_ns(42).to_string(), "+42ns");
  EXPECT_EQ(Duration::from_seconds(-2.5e-9).ns(), -3);  // llround: half away from zero
}

TEST(TaiTime, ConversionNamesTheOffset) {
  const UtcTime utc = UtcTime::from_unix_ns(1700000000LL * 1000000000);
  const TaiTime tai = TaiTime::from_utc(utc, Duration::from_s(37));
  EXPECT_EQ(tai.tai_ns() - utc.unix_ns(), 37000000000LL);
  EXPECT_EQ(tai.to_utc(Duration::from_s(37)), utc);
}

TEST(UtcTime, NegativeTimespecIsNormalised) {
  const timespec ts = UtcTime::from_unix_ns(-1).to_timespec();
  EXPECT_EQ(ts.tv_sec, -1);
  EXPECT_EQ(ts.tv_nsec, 999999999);
}

}  // namespace
}  // namespace taid
