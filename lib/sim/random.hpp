// Seeded random draws for the simulator: mt19937_64 with our own uniform, normal and exponential
// transforms, so a seed gives the same run with any standard library (whose distributions are
// implementation-defined).
#pragma once

#include <cmath>
#include <cstdint>
#include <numbers>
#include <random>

namespace taid::sim {

// splitmix64: a well-mixed seed for stream `stream` of a run seeded with `seed`, so the clock,
// each path and each server draw from their own sequence and adding one does not shift another.
constexpr uint64_t derive_seed(uint64_t seed, uint64_t stream) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ULL * (stream + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

class Random {
 public:
  explicit Random(uint64_t seed) : engine_(seed) {}

  uint64_t u64() { return engine_(); }
  // Uniform in (0, 1]: 53 random bits, never 0 (so −ln(u) is finite).
  double uniform() { return static_cast<double>((engine_() >> 11) + 1) * 0x1.0p-53; }
  // Standard normal by Box–Muller; the second value of each pair is kept for the next call.
  double normal() {
    if (spare_) {
      spare_ = false;
      return spare_value_;
    }
    const double r = std::sqrt(-2.0 * std::log(uniform()));
    const double phi = 2.0 * std::numbers::pi * uniform();
    spare_value_ = r * std::sin(phi);
    spare_ = true;
    return r * std::cos(phi);
  }
  // Exponential with mean 1: −ln(U).
  double exponential() { return -std::log(uniform()); }
  // True with probability p; always draws once, so the sequence does not depend on p.
  bool chance(double p) { return uniform() <= p; }

 private:
  std::mt19937_64 engine_;
  bool spare_ = false;
  double spare_value_ = 0;
};

}  // namespace taid::sim
