// The delay-envelope estimate: the widest band between the samples' upper and lower bounds.
#include "filter/delay_envelope.hpp"

#include <algorithm>
#include <limits>

namespace taid::filter {

std::optional<EnvelopeEstimate> DelayEnvelope::add(Duration offset, Duration delay, UtcTime time) {
  // A sample from before the window's span (the local clock was stepped back) says nothing
  // about the line the window holds, nor the window about it: start over from it.
  if (!window_.empty() && time < window_.back().time - kMaxSpan) {
    window_.clear();
    ++restarts_;
  }
  // Bounds are kept as doubles relative to the first sample's offset, so a clock that is years
  // off keeps nanoseconds (a double holds 16 digits).
  if (window_.empty()) reference_ = offset;
  // A negative round trip is a broken stamp, not a measurement; as zero it still bounds.
  delay = std::max(delay, Duration{});
  const Point point{time, (offset - reference_ + delay / 2).seconds(),
                    (offset - reference_ - delay / 2).seconds()};
  if (!window_.empty() && window_.back().time == time) {
    window_.back() = point;
  } else {
    // Samples arrive in time order but for interleaved ones, which carry the previous T4.
    const auto at = std::upper_bound(window_.begin(), window_.end(), time,
                                     [](UtcTime t, const Point& p) { return t < p.time; });
    window_.insert(at, point);
  }
  // The span limit never leaves fewer than kMinSamples: at polls of 512 s and more those span
  // longer, and a line still holds far better than the network noise of such paths.
  const UtcTime newest = window_.back().time;
  std::size_t too_old = 0;
  while (window_.size() - too_old > kMinSamples && newest - window_[too_old].time > kMaxSpan)
    ++too_old;
  too_old = std::max(too_old, window_.size() > kMaxSamples ? window_.size() - kMaxSamples : 0);
  window_.erase(window_.begin(), window_.begin() + static_cast<std::ptrdiff_t>(too_old));

  Band band = fit(0);
  if (band.top < band.bottom) {
    // No line within ±kMaxFrequency passes between every upper and every lower bound, which a
    // clock that runs straight over a path no faster than its minimum cannot produce: the
    // source's clock was stepped, the path's asymmetry changed, or the oscillator wandered off
    // a line. Keep the longest run of newest samples that is consistent again. Dropping samples
    // only widens the band, so the shortest drop is found by bisection; one sample alone is
    // always consistent (its band is its own round trip).
    std::size_t inconsistent = 0, consistent = window_.size() - 1;
    while (consistent - inconsistent > 1) {
      const std::size_t mid = inconsistent + (consistent - inconsistent) / 2;
      const Band b = fit(mid);
      (b.top < b.bottom ? inconsistent : consistent) = mid;
    }
    window_.erase(window_.begin(), window_.begin() + static_cast<std::ptrdiff_t>(consistent));
    ++restarts_;
    band = fit(0);
  }
  if (window_.size() < kMinSamples) {
    estimate_.reset();  // what it said was measured against a clock or path that has changed
    return std::nullopt;
  }
  estimate_ = EnvelopeEstimate{reference_ + Duration::from_seconds((band.top + band.bottom) / 2),
                               band.frequency,
                               Duration::from_seconds((band.top - band.bottom) / 2),
                               newest,
                               window_.size(),
                               newest - window_.front().time};
  return estimate_;
}

namespace {

struct Vertex {
  double age_s;  // ≤ 0: time relative to the newest sample
  double value_s;
};

// The hull of the points that can ever be the extreme: min(value − f·age) over all points is
// reached on the lower convex hull (sign +1), max(value − f·age) on the upper one (sign −1).
// Points come in time order, so Andrew's monotone chain builds it in one pass.
std::vector<Vertex> hull(const std::vector<Vertex>& points, double sign) {
  std::vector<Vertex> h;
  for (const Vertex& p : points) {
    while (h.size() >= 2) {
      const Vertex& a = h[h.size() - 2];
      const Vertex& b = h.back();
      const double cross = (b.age_s - a.age_s) * (p.value_s - a.value_s) -
                           (b.value_s - a.value_s) * (p.age_s - a.age_s);
      if (sign * cross > 0) break;  // b stays a corner
      h.pop_back();
    }
    h.push_back(p);
  }
  return h;
}

double min_at(const std::vector<Vertex>& h, double f) {
  double m = std::numeric_limits<double>::infinity();
  for (const Vertex& v : h) m = std::min(m, v.value_s - f * v.age_s);
  return m;
}

double max_at(const std::vector<Vertex>& h, double f) {
  double m = -std::numeric_limits<double>::infinity();
  for (const Vertex& v : h) m = std::max(m, v.value_s - f * v.age_s);
  return m;
}

}  // namespace

DelayEnvelope::Band DelayEnvelope::fit(std::size_t first) const {
  const UtcTime newest = window_.back().time;
  std::vector<Vertex> upper, lower;
  upper.reserve(window_.size() - first);
  lower.reserve(window_.size() - first);
  for (std::size_t i = first; i < window_.size(); ++i) {
    const double age_s = (window_[i].time - newest).seconds();
    upper.push_back({age_s, window_[i].upper_s});
    lower.push_back({age_s, window_[i].lower_s});
  }
  // Only the hulls' corners can bound the band: a few dozen of up to kMaxSamples points.
  const std::vector<Vertex> top = hull(upper, 1), bottom = hull(lower, -1);
  const auto width = [&](double f) { return min_at(top, f) - max_at(bottom, f); };
  // The width is concave in f (a minimum of lines minus a maximum of lines), so a ternary search
  // finds where it is largest. Where the top is flat (one sample holds both edges, or a hull
  // edge of each side is parallel) every f of the plateau gives the widest band; its middle is
  // the unbiased choice, so one search settles ties to the left, one to the right. 100 steps
  // shrink the ±500 ppm bracket below 1e-20, far under a nanosecond over any window.
  const auto search = [&](bool ties_left) {
    constexpr double kTie = 1e-13;  // seconds: below any stamp, above rounding
    double lo = -kMaxFrequency, hi = kMaxFrequency;
    for (int step = 0; step < 100; ++step) {
      const double m1 = lo + (hi - lo) / 3, m2 = hi - (hi - lo) / 3;
      const double w1 = width(m1), w2 = width(m2);
      const bool go_right = ties_left ? w1 < w2 - kTie : w1 <= w2 + kTie;
      if (go_right)
        lo = m1;
      else
        hi = m2;
    }
    return (lo + hi) / 2;
  };
  const double f = (search(true) + search(false)) / 2;
  return Band{f, min_at(top, f), max_at(bottom, f)};
}

}  // namespace taid::filter
