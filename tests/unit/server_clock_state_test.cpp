// server_clock_state(): the header fields a server advertises, synchronized, local, or neither.
#include <gtest/gtest.h>

#include "server/server_clock_state.hpp"

namespace taid::server {
namespace {

const UtcTime kNow = UtcTime::from_unix_ns(1795000000LL * 1000000000);

timekeeping::Tracking synced() {
  timekeeping::Tracking t;
  t.synchronized = true;
  t.stratum = 3;
  t.reference_id = 0xC0000202;
  t.leap = ntp::Leap::none;
  t.root_delay = Duration::from_ms(10);
  t.root_dispersion = Duration::from_ms(2);
  t.last_update = kNow - Duration::from_s(30);
  t.error_bound = Duration::from_ms(25);  // |offset| 18 ms + 5 + 2
  return t;
}

TEST(ServerClockState, SynchronizedAdvertisesTheCoresBound) {
  ServerClockInputs in{kNow, std::nullopt, -23, std::nullopt, Duration::from_s(1), false};
  const ServerClockState s = server_clock_state(synced(), in);
  EXPECT_EQ(s.leap, ntp::Leap::none);
  EXPECT_EQ(s.stratum, 3);
  EXPECT_EQ(s.precision_log2, -23);
  EXPECT_EQ(s.reference_id, 0xC0000202u);
  EXPECT_EQ(s.root_delay, NtpShort::from_duration(Duration::from_ms(10)));
  // 25 ms - 5 ms = 20 ms = 1310.72 units of 2^-16 s: rounded up to 1311, so the wire value
  // covers the bound.
  EXPECT_EQ(s.root_dispersion.raw(), 1311u);
  EXPECT_EQ(s.reference_time, NtpTimestamp::from_utc(kNow - Duration::from_s(30)));
  // The bound now (Timekeeper::error_bound_at) when given.
  in.error_bound = Duration::from_ms(105);
  EXPECT_EQ(server_clock_state(synced(), in).root_dispersion.raw(), 6554u);  // 100 ms = 6553.6
  const auto wire = server_clock_state(synced(), in);
  EXPECT_GE(wire.root_delay.to_duration() / 2 + wire.root_dispersion.to_duration(),
            Duration::from_ms(105) - Duration::from_ns(8));  // delay/2 truncates a 2^-17 s
}

TEST(ServerClockState, LeapFromTheArmedLeap) {
  ServerClockInputs in{kNow, std::nullopt, -20, std::nullopt, Duration::from_s(1), false};
  auto t = synced();
  t.leap_armed = 1;
  EXPECT_EQ(server_clock_state(t, in).leap, ntp::Leap::add_second);
  t.leap_armed = -1;
  EXPECT_EQ(server_clock_state(t, in).leap, ntp::Leap::delete_second);
  t.leap_armed = 0;
  t.leap = ntp::Leap::add_second;  // the sources' bits alone do not arm it
  EXPECT_EQ(server_clock_state(t, in).leap, ntp::Leap::none);
}

TEST(ServerClockState, ObserveOnlyBoundCoversTheLeapTheKernelDoesNotDo) {
  auto t = synced();
  t.leap_armed = 1;
  t.leap_at = kNow - Duration::from_s(2);  // it was due 2 s ago
  ServerClockInputs in{kNow, Duration::from_ms(25), -20, std::nullopt, Duration::from_s(1), true};
  const auto after = server_clock_state(t, in);
  EXPECT_EQ(after.root_dispersion, NtpShort::from_duration(Duration::from_ms(1020)));
  in.observe_only = false;  // steering: the kernel carried it out
  EXPECT_EQ(server_clock_state(t, in).root_dispersion.raw(), 1311u);
  in.observe_only = true;
  t.leap_at = kNow + Duration::from_s(2);  // not yet
  EXPECT_EQ(server_clock_state(t, in).root_dispersion.raw(), 1311u);
}

TEST(ServerClockState, LocalStratumWhenUnsynchronized) {
  auto t = synced();
  t.synchronized = false;
  ServerClockInputs in{kNow, std::nullopt, -20, uint8_t{10}, Duration::from_s(1), false};
  const ServerClockState s = server_clock_state(t, in);
  EXPECT_EQ(s.leap, ntp::Leap::none);
  EXPECT_EQ(s.stratum, 10);
  EXPECT_EQ(s.reference_id, 0x7F7F0101u);
  EXPECT_EQ(s.root_delay.raw(), 0u);
  EXPECT_EQ(s.root_dispersion.raw(), 0u);
  EXPECT_EQ(s.reference_time, NtpTimestamp::from_utc(kNow - Duration::from_s(1)));
  EXPECT_EQ(s.precision_log2, -20);
}

TEST(ServerClockState, LocalStratumWhenTheRootDistanceIsTooLarge) {
  // chrony's `local distance`: synchronized, but delay/2 + dispersion = 1.5 s > 1 s.
  auto t = synced();
  ServerClockInputs in{kNow, Duration::from_ms(1500), -20, uint8_t{8}, Duration::from_s(1), false};
  EXPECT_EQ(server_clock_state(t, in).stratum, 8);
  EXPECT_EQ(server_clock_state(t, in).reference_id, kLocalReferenceId);
  in.local_distance = Duration::from_s(2);
  EXPECT_EQ(server_clock_state(t, in).stratum, 3);
  // Without `local`, a large bound is simply advertised.
  in.local_stratum.reset();
  EXPECT_EQ(server_clock_state(t, in).stratum, 3);
}

TEST(ServerClockState, NeitherSynchronizedNorLocal) {
  auto t = synced();
  t.synchronized = false;
  ServerClockInputs in{kNow, std::nullopt, -18, std::nullopt, Duration::from_s(1), false};
  const ServerClockState s = server_clock_state(t, in);
  ServerClockState expected;
  expected.precision_log2 = -18;
  EXPECT_EQ(s, expected);
  EXPECT_EQ(s.leap, ntp::Leap::unsynchronized);
  EXPECT_EQ(s.stratum, 16);
  EXPECT_EQ(s.reference_id, 0u);
  EXPECT_TRUE(s.reference_time.is_zero());
}

}  // namespace
}  // namespace taid::server
