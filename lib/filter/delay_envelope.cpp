// The delay-envelope estimate: the widest band between the samples' upper and lower bounds.
#include "filter/delay_envelope.hpp"

#include <algorithm>
#include <limits>

namespace taid::filter {

std::optional<EnvelopeEstimate> DelayEnvelope::add(Duration offset, Duration delay,
                                                   UtcTime time) {
  const Point point{time, (offset + delay / 2).seconds(), (offset - delay / 2).seconds()};
  if (!window_.empty() && window_.back().time == time) {
    window_.back() = point;
  } else {
    // Samples arrive in time order but for interleaved ones, which carry the previous T4.
    const auto at = std::upper_bound(window_.begin(), window_.end(), time,
                                     [](UtcTime t, const Point& p) { return t < p.time; });
    window_.insert(at, point);
  }
  const UtcTime newest = window_.back().time;
  const auto first_kept =
      std::find_if(window_.begin(), window_.end(),
                   [&](const Point& p) { return newest - p.time <= kMaxSpan; });
  window_.erase(window_.begin(), first_kept);
  if (window_.size() > kMaxSamples)
    window_.erase(window_.begin(), window_.end() - static_cast<std::ptrdiff_t>(kMaxSamples));
  if (window_.size() < kMinSamples) return std::nullopt;
  estimate_ = fit();
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

std::optional<EnvelopeEstimate> DelayEnvelope::fit() const {
  const UtcTime newest = window_.back().time;
  std::vector<Vertex> upper, lower;
  upper.reserve(window_.size());
  lower.reserve(window_.size());
  for (const Point& p : window_) {
    const double age_s = (p.time - newest).seconds();
    upper.push_back({age_s, p.upper_s});
    lower.push_back({age_s, p.lower_s});
  }
  // Only the hulls' corners can bound the band: a few dozen of up to kMaxSamples points.
  const std::vector<Vertex> top = hull(upper, 1), bottom = hull(lower, -1);
  const auto width = [&](double f) { return min_at(top, f) - max_at(bottom, f); };
  // The width is concave in f (a minimum of lines minus a maximum of lines), so a ternary search
  // finds its maximum; where it is flat, any point of the plateau is as good. 100 steps shrink
  // the ±500 ppm bracket below 1e-20, far under a nanosecond over kMaxSpan.
  double lo = -kMaxFrequency, hi = kMaxFrequency;
  for (int step = 0; step < 100; ++step) {
    const double m1 = lo + (hi - lo) / 3, m2 = hi - (hi - lo) / 3;
    if (width(m1) < width(m2))
      lo = m1;
    else
      hi = m2;
  }
  const double f = (lo + hi) / 2;
  const double band_top = min_at(top, f), band_bottom = max_at(bottom, f);
  return EnvelopeEstimate{Duration::from_seconds((band_top + band_bottom) / 2),
                          f,
                          Duration::from_seconds((band_top - band_bottom) / 2),
                          newest,
                          window_.size(),
                          newest - window_.front().time};
}

}  // namespace taid::filter
