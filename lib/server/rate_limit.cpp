// Per-address token buckets in a fixed set-associative table, chrony's ratelimit semantics.
#include "server/rate_limit.hpp"
#include "server/words.hpp"

#include <algorithm>
#include <bit>
#include <charconv>
#include <string>

namespace taid::server {
namespace {

constexpr int kUnitBits = 24;  // credit counted in 2^-24 s
constexpr int kMinInterval = -19, kMaxInterval = 12;
constexpr int kMinBurst = 1, kMaxBurst = 255;
constexpr int kMinLeak = 1, kMaxLeak = 4;
constexpr int kMinKod = 0, kMaxKod = 4;

struct Range {
  const char* name;
  int RateLimitSettings::*field;
  int min, max;
};
constexpr Range kRanges[] = {
    {"interval", &RateLimitSettings::interval_log2, kMinInterval, kMaxInterval},
    {"burst", &RateLimitSettings::burst, kMinBurst, kMaxBurst},
    {"leak", &RateLimitSettings::leak_log2, kMinLeak, kMaxLeak},
    {"kod", &RateLimitSettings::kod_log2, kMinKod, kMaxKod},
};

// Nanoseconds to 2^-24 s units, exact to a unit, for 0 <= ns < ~2^62 / 2^24 s.
int64_t ns_to_units(int64_t ns) {
  const int64_t s = ns / 1000000000, rem = ns % 1000000000;
  return (s << kUnitBits) + (rem << kUnitBits) / 1000000000;
}

uint64_t rotl(uint64_t x, int b) { return std::rotl(x, b); }

void sip_round(uint64_t& v0, uint64_t& v1, uint64_t& v2, uint64_t& v3) {
  v0 += v1;
  v1 = rotl(v1, 13);
  v1 ^= v0;
  v0 = rotl(v0, 32);
  v2 += v3;
  v3 = rotl(v3, 16);
  v3 ^= v2;
  v0 += v3;
  v3 = rotl(v3, 21);
  v3 ^= v0;
  v2 += v1;
  v1 = rotl(v1, 17);
  v1 ^= v2;
  v2 = rotl(v2, 32);
}

uint64_t load_le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

Result<void> validate(const RateLimitSettings& settings) {
  for (const Range& r : kRanges) {
    const int value = settings.*r.field;
    if (value < r.min || value > r.max) {
      return Error::plain(std::string("ratelimit: ") + r.name + " " + std::to_string(value) +
                          " is not " + std::to_string(r.min) + ".." + std::to_string(r.max));
    }
  }
  return {};
}

Result<RateLimitSettings> parse_rate_limit(std::string_view arguments) {
  RateLimitSettings settings;
  const std::vector<std::string_view> words = split_words(arguments);
  for (std::size_t i = 0; i < words.size(); i += 2) {
    const std::string option(words[i]);
    const Range* range = nullptr;
    for (const Range& r : kRanges)
      if (option == r.name) range = &r;
    if (range == nullptr) return Error::plain("ratelimit: unknown option '" + option + "'");
    if (i + 1 == words.size()) return Error::plain("ratelimit: " + option + " needs a value");
    const std::string_view text = words[i + 1];
    int value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc{} || end != text.data() + text.size()) {
      return Error::plain("ratelimit: " + option + " '" + std::string(text) +
                          "' is not an integer");
    }
    settings.*range->field = value;
  }
  if (auto ok = validate(settings); !ok) return ok.error();
  return settings;
}

RateLimiter::RateLimiter(const RateLimitSettings& settings, std::size_t table_entries,
                         uint64_t seed)
    : settings_(settings), rng_(seed) {
  settings_.interval_log2 = std::clamp(settings_.interval_log2, kMinInterval, kMaxInterval);
  settings_.burst = std::clamp(settings_.burst, kMinBurst, kMaxBurst);
  settings_.leak_log2 = std::clamp(settings_.leak_log2, kMinLeak, kMaxLeak);
  settings_.kod_log2 = std::clamp(settings_.kod_log2, kMinKod, kMaxKod);
  cost_ = int64_t{1} << (kUnitBits + settings_.interval_log2);
  capacity_ = cost_ * settings_.burst;
  const std::size_t buckets = std::bit_ceil(std::max<std::size_t>(1, table_entries / kWays));
  bucket_mask_ = buckets - 1;
  slots_.resize(buckets * kWays);
  slots_.shrink_to_fit();
  // The hash key comes from its own stream, so the leak draws stay those of `seed` alone.
  std::mt19937_64 key_rng(seed ^ 0x9e3779b97f4a7c15ULL);
  key0_ = key_rng();
  key1_ = key_rng();
}

uint64_t RateLimiter::hash(const std::array<uint8_t, 16>& address) const {
  // SipHash-2-4 of the 16 bytes.
  uint64_t v0 = 0x736f6d6570736575ULL ^ key0_, v1 = 0x646f72616e646f6dULL ^ key1_;
  uint64_t v2 = 0x6c7967656e657261ULL ^ key0_, v3 = 0x7465646279746573ULL ^ key1_;
  for (int i = 0; i < 2; ++i) {
    const uint64_t m = load_le64(address.data() + 8 * i);
    v3 ^= m;
    sip_round(v0, v1, v2, v3);
    sip_round(v0, v1, v2, v3);
    v0 ^= m;
  }
  const uint64_t b = uint64_t{16} << 56;
  v3 ^= b;
  sip_round(v0, v1, v2, v3);
  sip_round(v0, v1, v2, v3);
  v0 ^= b;
  v2 ^= 0xff;
  for (int i = 0; i < 4; ++i) sip_round(v0, v1, v2, v3);
  return v0 ^ v1 ^ v2 ^ v3;
}

bool RateLimiter::draw_one_in(int log2) { return (rng_() & ((uint64_t{1} << log2) - 1)) == 0; }

RateDecision RateLimiter::decide_over_limit() {
  if (draw_one_in(settings_.leak_log2)) return RateDecision::allow;
  if (settings_.kod_log2 > 0 && draw_one_in(settings_.kod_log2)) return RateDecision::kiss_of_death;
  return RateDecision::drop;
}

RateDecision RateLimiter::decide(const std::array<uint8_t, 16>& address, int64_t monotonic_ns) {
  Slot* const bucket = &slots_[(hash(address) & bucket_mask_) * kWays];
  Slot* slot = nullptr;
  Slot* victim = nullptr;
  for (std::size_t way = 0; way < kWays; ++way) {
    Slot& s = bucket[way];
    if (s.used && s.address == address) {
      slot = &s;
      break;
    }
    // An empty way first, else the one whose last request is the oldest.
    if (!s.used) {
      if (victim == nullptr || victim->used) victim = &s;
    } else if (victim == nullptr || (victim->used && s.last_ns < victim->last_ns)) {
      victim = &s;
    }
  }
  if (slot == nullptr) {
    if (victim->used)
      ++evictions_;
    else
      ++occupied_;
    *victim = Slot{address, monotonic_ns, capacity_, true};
    slot = victim;
  } else {
    const int64_t elapsed_ns = monotonic_ns - slot->last_ns;
    if (elapsed_ns > 0) {
      // Past a full bucket the refill no longer matters (and the conversion stays in range).
      const int64_t full_ns = (int64_t{1000000000} * settings_.burst)
                              << std::max(settings_.interval_log2, 0);
      const int64_t refill = ns_to_units(std::min(elapsed_ns, full_ns));
      slot->credit = std::min(capacity_, slot->credit + refill);
    }
    slot->last_ns = std::max(slot->last_ns, monotonic_ns);
  }
  if (slot->credit >= cost_) {
    slot->credit -= cost_;
    return RateDecision::allow;
  }
  if (draw_one_in(settings_.leak_log2)) {
    slot->credit = 0;  // chrony: a leaked response empties the bucket
    return RateDecision::allow;
  }
  if (settings_.kod_log2 > 0 && draw_one_in(settings_.kod_log2)) return RateDecision::kiss_of_death;
  return RateDecision::drop;
}

}  // namespace taid::server
