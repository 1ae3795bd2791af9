// Response rate limiting per client address (chrony's `ratelimit`), in a table of fixed size.
//
// chrony 4.3's `ratelimit interval I burst B leak L [kod K]` (chrony.conf(5), clientlog.c):
//   interval  the minimum mean interval between responses to one address, log2 s. Default 3
//             (8 s), range -19 (524288 responses/s) .. 12 (one per 4096 s).
//   burst     how many responses an address may take back to back, above that rate (a chronyd
//             client's iburst). Default 8, range 1 .. 255.
//   leak      over the limit, a request is still answered at random with probability 2^-L, so
//             an attacker spoofing a victim's address cannot cut the victim off entirely.
//             Default 2 (one in four), range 1 .. 4.
//   kod       a request that is dropped after the leak draw is instead answered with a KoD RATE
//             with probability 2^-K. 0 (the default) disables KoDs; range 0 .. 4.
// Each address has a token bucket: it holds up to `burst` responses, refills one response per
// 2^interval s, starts full, and each response takes one. chrony counts time in 1/16 s and turns
// coarse below interval -4; we count in 2^-24 s, so short intervals stay exact. chrony's
// exception for clients that speed up while not answered (its timeout rate) is not copied.
// chrony clamps out-of-range values silently; parse_rate_limit() refuses them instead.
//
// The table: `entries` slots allocated once, a set-associative hash (4 ways per bucket, keyed
// with a secret drawn from the seed so an attacker cannot aim at one bucket); a new address takes
// an empty way or evicts the way that was used least recently. So 10^6 spoofed addresses cost no
// memory, and only push out clients that have been quieter than the flood's churn. An evicted
// address comes back with a full bucket (as in chrony, whose table is bounded too).
#pragma once

#include <array>
#include <cstdint>
#include <random>
#include <string_view>
#include <vector>

#include "core/result.hpp"

namespace taid::server {

struct RateLimitSettings {
  int interval_log2 = 3;
  int burst = 8;
  int leak_log2 = 2;
  int kod_log2 = 0;  // 0: no KoD
  friend bool operator==(const RateLimitSettings&, const RateLimitSettings&) = default;
};

// `ratelimit` options as chrony.conf writes them, "interval 1 burst 16 leak 3 kod 2", in any
// order, each optional; errors name the option ("ratelimit: burst 300 is not 1..255").
Result<RateLimitSettings> parse_rate_limit(std::string_view arguments);
// An error when a value is out of the ranges above.
Result<void> validate(const RateLimitSettings& settings);

enum class RateDecision : uint8_t { allow, drop, kiss_of_death };

class RateLimiter {
 public:
  static constexpr std::size_t kWays = 4;

  // `table_entries` is rounded up to a power of two buckets of kWays slots (at least one bucket).
  // Settings out of range are clamped as chrony does (validate() first to refuse them).
  RateLimiter(const RateLimitSettings& settings, std::size_t table_entries, uint64_t seed);

  // One request from `address` (16-byte form, the port plays no part) at CLOCK_MONOTONIC
  // `monotonic_ns`: answer, drop, or answer with a KoD RATE.
  RateDecision decide(const std::array<uint8_t, 16>& address, int64_t monotonic_ns);
  // A request from a client another limiter already holds over the limit (the XDP path's): the
  // leak and KoD draws only, nothing taken from or given to its bucket here.
  RateDecision decide_over_limit();

  const RateLimitSettings& settings() const { return settings_; }
  std::size_t capacity() const { return slots_.size(); }
  std::size_t occupied() const { return occupied_; }
  // Bytes held by the table: fixed at construction.
  std::size_t memory_bytes() const { return slots_.capacity() * sizeof(Slot); }
  uint64_t evictions() const { return evictions_; }

 private:
  struct Slot {
    std::array<uint8_t, 16> address{};
    int64_t last_ns = 0;  // last request, for the refill and for choosing whom to evict
    int64_t credit = 0;   // in 2^-24 s; one response costs cost_
    bool used = false;
  };
  uint64_t hash(const std::array<uint8_t, 16>& address) const;
  bool draw_one_in(int log2);  // true with probability 2^-log2

  RateLimitSettings settings_;
  int64_t cost_ = 0;      // one response, 2^-24 s units
  int64_t capacity_ = 0;  // burst responses
  std::vector<Slot> slots_;
  std::size_t bucket_mask_ = 0;
  uint64_t key0_ = 0, key1_ = 0;  // SipHash key
  std::mt19937_64 rng_;
  std::size_t occupied_ = 0;
  uint64_t evictions_ = 0;
};

}  // namespace taid::server
