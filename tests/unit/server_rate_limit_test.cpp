// RateLimiter: chrony's ratelimit options, the token bucket, leak and KoD draws, and a table
// whose memory stays fixed under a flood of spoofed addresses.
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <vector>

#include "server/rate_limit.hpp"

namespace taid::server {
namespace {

constexpr int64_t kSecond = 1000000000;

std::array<uint8_t, 16> v4(uint32_t a) {
  std::array<uint8_t, 16> out{};
  out[10] = out[11] = 0xff;
  out[12] = static_cast<uint8_t>(a >> 24);
  out[13] = static_cast<uint8_t>(a >> 16);
  out[14] = static_cast<uint8_t>(a >> 8);
  out[15] = static_cast<uint8_t>(a);
  return out;
}

// Distinct IPv6 addresses for the flood, none of them v4-mapped.
std::array<uint8_t, 16> spoofed(uint64_t i) {
  std::array<uint8_t, 16> out{};
  out[0] = 0x20;
  out[1] = 0x01;
  for (int b = 0; b < 8; ++b) out[8 + b] = static_cast<uint8_t>(i >> (56 - 8 * b));
  return out;
}

TEST(ServerRateLimit, ParsesChronyOptions) {
  const auto defaults = parse_rate_limit("");
  ASSERT_TRUE(defaults.ok());
  EXPECT_EQ(*defaults, (RateLimitSettings{3, 8, 2, 0}));
  const auto some = parse_rate_limit("interval 1 burst 16");
  ASSERT_TRUE(some.ok());
  EXPECT_EQ(*some, (RateLimitSettings{1, 16, 2, 0}));
  const auto all = parse_rate_limit("kod 2  leak 4 interval -19 burst 255");
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(*all, (RateLimitSettings{-19, 255, 4, 2}));

  const auto message = [](const char* text) {
    auto r = parse_rate_limit(text);
    EXPECT_FALSE(r.ok()) << text;
    return r.ok() ? std::string() : r.error().message();
  };
  EXPECT_EQ(message("burst 300"), "ratelimit: burst 300 is not 1..255");
  EXPECT_EQ(message("burst 0"), "ratelimit: burst 0 is not 1..255");
  EXPECT_EQ(message("interval -20"), "ratelimit: interval -20 is not -19..12");
  EXPECT_EQ(message("interval 13"), "ratelimit: interval 13 is not -19..12");
  EXPECT_EQ(message("leak 0"), "ratelimit: leak 0 is not 1..4");
  EXPECT_EQ(message("kod 5"), "ratelimit: kod 5 is not 0..4");
  EXPECT_EQ(message("leak x"), "ratelimit: leak 'x' is not an integer");
  EXPECT_EQ(message("kod"), "ratelimit: kod needs a value");
  EXPECT_EQ(message("rate 3"), "ratelimit: unknown option 'rate'");
}

TEST(ServerRateLimit, BurstThenOneResponsePerInterval) {
  RateLimiter limiter(RateLimitSettings{3, 8, 4, 0}, 64, 7);
  const auto client = v4(0xC0000201);
  // A fresh address starts with a full bucket: the whole burst at once.
  for (int i = 0; i < 8; ++i) EXPECT_EQ(limiter.decide(client, 0), RateDecision::allow) << i;
  // Every 8 s exactly one response's worth comes back: at 8, 16, 24 s the first request is
  // answered whatever the leak draws did in between (a leak empties the bucket, which is then
  // empty anyway).
  int answered_between = 0;
  for (int k = 1; k <= 3; ++k) {
    const int64_t t = k * 8 * kSecond;
    EXPECT_EQ(limiter.decide(client, t), RateDecision::allow) << k;
    for (int i = 0; i < 15; ++i)
      answered_between += limiter.decide(client, t) == RateDecision::allow;
  }
  EXPECT_LT(answered_between, 15);  // mostly dropped; leak 4 answers one in 16 on average
  // After a long quiet spell the bucket is full again, not fuller: 8, then over the limit.
  int answered = 0;
  for (int i = 0; i < 8; ++i)
    answered += limiter.decide(client, 1000 * kSecond) == RateDecision::allow;
  EXPECT_EQ(answered, 8);
}

TEST(ServerRateLimit, ShortIntervalsAreExact) {
  // interval -19: 2^-19 s = 1907.35 ns per response, burst 1. 1908 ns after a response there is
  // one again; 1907 ns after, only a leak (one in 16) answers. chrony would count this coarsely.
  RateLimiter limiter(RateLimitSettings{-19, 1, 4, 0}, 1024, 1);
  int on_time = 0, early = 0;
  for (uint32_t c = 0; c < 200; ++c) {
    const auto client = v4(0x0A000000 + c);
    EXPECT_EQ(limiter.decide(client, 0), RateDecision::allow);
    early += limiter.decide(client, 1907) == RateDecision::allow;
    on_time += limiter.decide(client, 1907 + 1908) == RateDecision::allow;
  }
  EXPECT_EQ(on_time, 200);
  EXPECT_LT(early, 200 / 16 * 2);
}

TEST(ServerRateLimit, LeakAndKodRates) {
  // Over the limit: answered with probability 2^-leak; of the rest a KoD with 2^-kod.
  RateLimiter limiter(RateLimitSettings{12, 1, 2, 1}, 64, 12345);
  const auto client = v4(0x0A000002);
  EXPECT_EQ(limiter.decide(client, 0), RateDecision::allow);
  int allow = 0, kod = 0, drop = 0;
  const int n = 100000;
  for (int i = 0; i < n; ++i) {
    switch (limiter.decide(client, 0)) {
      case RateDecision::allow:
        ++allow;
        break;
      case RateDecision::kiss_of_death:
        ++kod;
        break;
      case RateDecision::drop:
        ++drop;
        break;
    }
  }
  // Expected 25000 / 37500 / 37500; 5 sigma is about 700.
  EXPECT_NEAR(allow, 25000, 700);
  EXPECT_NEAR(kod, 37500, 800);
  EXPECT_NEAR(drop, 37500, 800);
  // kod 0: never a KoD.
  RateLimiter no_kod(RateLimitSettings{12, 1, 1, 0}, 64, 1);
  EXPECT_EQ(no_kod.decide(client, 0), RateDecision::allow);
  for (int i = 0; i < 1000; ++i) EXPECT_NE(no_kod.decide(client, 0), RateDecision::kiss_of_death);
}

TEST(ServerRateLimit, DeterministicWithTheSeed) {
  const auto run = [](uint64_t seed) {
    RateLimiter limiter(RateLimitSettings{3, 2, 1, 1}, 256, seed);
    std::vector<RateDecision> out;
    for (int i = 0; i < 500; ++i)
      out.push_back(limiter.decide(v4(0x0A000000 + i % 7), i * kSecond / 10));
    return out;
  };
  EXPECT_EQ(run(99), run(99));
  EXPECT_NE(run(99), run(100));
}

TEST(ServerRateLimit, MemoryFixedAfterAMillionSpoofedAddresses) {
  RateLimiter limiter(RateLimitSettings{}, 4096, 3);
  const std::size_t capacity = limiter.capacity();
  const std::size_t bytes = limiter.memory_bytes();
  EXPECT_EQ(capacity, 4096u);
  EXPECT_EQ(bytes, capacity * 40);  // 16-byte address, two int64, a flag: 40 bytes a slot
  int allowed = 0;
  for (uint64_t i = 0; i < 1000000; ++i) {
    allowed += limiter.decide(spoofed(i), static_cast<int64_t>(i) * 1000) == RateDecision::allow;
  }
  EXPECT_EQ(limiter.capacity(), capacity);
  EXPECT_EQ(limiter.memory_bytes(), bytes);
  EXPECT_EQ(limiter.occupied(), capacity);
  EXPECT_EQ(limiter.evictions(), 1000000u - capacity);
  EXPECT_EQ(allowed, 1000000);  // every new address starts with a full bucket
}

TEST(ServerRateLimit, SteadyClientStillLimitedAmidModerateFlood) {
  // A client asking every second (8 times its allowance) for 300 s, once alone and once with
  // 250 spoofed new addresses a second churning through a 16384-entry table (75 000 in all,
  // 4.6 times the table). It is evicted only if 4 newer addresses land in its bucket between
  // two of its requests; then it would come back with a full bucket and get 8 extra answers.
  // Flood addresses are new, take a token from a full bucket and draw nothing, so the steady
  // client's leak draws are the same in both runs: its decisions must be identical.
  const RateLimitSettings settings{3, 8, 2, 0};
  RateLimiter alone(settings, 16384, 5);
  RateLimiter flooded(settings, 16384, 5);
  const auto steady = v4(0xC6336401);
  std::vector<RateDecision> a, b;
  uint64_t next_spoofed = 0;
  for (int s = 0; s < 300; ++s) {
    const int64_t t = s * kSecond;
    a.push_back(alone.decide(steady, t));
    b.push_back(flooded.decide(steady, t));
    for (int i = 0; i < 250; ++i) {
      const int64_t when = t + 1000000 + i * 4000000;
      EXPECT_EQ(flooded.decide(spoofed(next_spoofed++), when), RateDecision::allow);
    }
  }
  EXPECT_EQ(a, b);
  EXPECT_GT(flooded.evictions(), 50000u);
  int answered = 0;
  for (const auto d : a) answered += d == RateDecision::allow;
  // 8 (burst) + 299 / 8 refills = 45 by tokens, plus about a quarter of the other 255 by leak:
  // far below the 300 asked.
  EXPECT_GE(answered, 45);
  EXPECT_LT(answered, 45 + 255 / 4 + 30);
}

}  // namespace
}  // namespace taid::server
