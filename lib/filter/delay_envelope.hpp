// Offset and frequency of one source from the envelopes of its delays — the per-source estimate
// taid reports and will steer by; the RFC 5905 clock filter beside it still supplies dispersion,
// jitter and the poll control.
//
// Each sample bounds the true offset x at its time t. The request cannot reach the server before
// it left, nor the reply come back before the server sent it, so with θ and δ of the sample and
// D_f, D_b the path's smallest one-way delays:
//     l = θ − δ/2  ≤  x(t) − D_b        and        x(t) + D_f  ≤  θ + δ/2 = u.
// Queueing only ever adds delay. The samples that travelled fastest each way therefore pin x down
// from above and from below, while averaging (a regression) spreads every queueing delay into the
// estimate. Over a window, with x(t) = x₀ + f·t and D_f = D_b = D (the symmetry that every
// two-way method assumes), the best line is the one whose band between the upper envelope (u) and
// the lower envelope (l) is widest: f maximises
//     g(f) = minᵢ(uᵢ − f·tᵢ) − maxᵢ(lᵢ − f·tᵢ),
// which is concave in f. The offset is the middle of the band at the newest sample, and D̂ = g/2,
// half the narrowest round trip after frequency correction, is as far as path asymmetry can move
// it. It is the two-sided form of Moon, Skelly and Towsley's lower-envelope skew estimate
// (INFOCOM 1999). The error shrinks like 1/n as the window fills, where a mean shrinks like 1/√n.
//
// When no line fits between the bounds any more (the source's clock was stepped, the path's
// asymmetry changed, the oscillator wandered off a straight line), the older samples are dropped
// until the rest fit again. Limits: a path that grows longer but stays symmetric keeps the old,
// tighter envelope until those samples leave the window (kMaxSpan at most), which is right, as
// the offset has not changed; a path whose fastest packets are asymmetric biases the result as
// it biases every two-way method.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "core/time.hpp"

namespace taid::filter {

struct EnvelopeEstimate {
  Duration offset;          // at `time`; positive: the local clock is behind the source
  double frequency = 0;     // d(offset)/dt in s/s; positive: the local clock runs slow
  Duration half_min_delay;  // D̂: half the narrowest frequency-corrected round trip
  UtcTime time;             // the newest sample's local time (T4)
  std::size_t samples = 0;  // in the window
  Duration span;            // from the oldest to the newest sample in the window
};

class DelayEnvelope {
 public:
  // The window is every sample of the last kMaxSpan, up to this many: the error shrinks like
  // 1/n, so more samples help as long as the line holds; the cap bounds memory (24 KiB) at the
  // fastest polls.
  static constexpr std::size_t kMaxSamples = 1024;
  // Below this the frequency is not determined well enough to use the fit.
  static constexpr std::size_t kMinSamples = 4;
  // A straight line holds while the oscillator's frequency wander stays below the network noise;
  // for PC oscillators that is up to about 1000 s (RADclock's τ*). At polls of 64 s and more
  // the window is therefore 16 samples or fewer, but never fewer than kMinSamples.
  static constexpr Duration kMaxSpan = Duration::from_s(1024);
  // The kernel cannot run the clock more than 500 ppm off, nor can a sane source.
  static constexpr double kMaxFrequency = 500e-6;

  // Adds a sample taken at local time `time` (T4). A second measurement of the newest instant
  // (interleaved mode re-measures the previous exchange) replaces it. Returns the new estimate
  // once the window holds kMinSamples, else std::nullopt.
  std::optional<EnvelopeEstimate> add(Duration offset, Duration delay, UtcTime time);

  const std::optional<EnvelopeEstimate>& estimate() const { return estimate_; }
  std::size_t size() const { return window_.size(); }
  // How often samples stopped fitting one line and the older ones were dropped.
  uint64_t restarts() const { return restarts_; }

 private:
  struct Point {
    UtcTime time;
    double upper_s;  // θ + δ/2 − reference_
    double lower_s;  // θ − δ/2 − reference_
  };
  struct Band {
    double frequency;    // s/s
    double top, bottom;  // its edges at the newest sample, seconds; top < bottom: inconsistent
  };
  // The widest band over window_[first..].
  Band fit(std::size_t first) const;

  std::vector<Point> window_;  // oldest first
  Duration reference_;         // the offset the points' bounds are relative to
  std::optional<EnvelopeEstimate> estimate_;
  uint64_t restarts_ = 0;
};

}  // namespace taid::filter
