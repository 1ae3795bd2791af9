// The delay-envelope estimate: the widest band between the samples' upper and lower bounds.
#include "filter/delay_envelope.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "filter/local_clock_change.hpp"

namespace taid::filter {

void DelayEnvelope::reset() {
  window_.clear();
  estimate_.reset();
  hulls_ = {};
}

std::optional<EnvelopeEstimate> DelayEnvelope::add(Duration offset, Duration delay, UtcTime sent,
                                                   UtcTime received) {
  // A sample from before the window's span (the local clock was stepped back and nobody told
  // us) says nothing about the line the window holds, nor the window about it: start over.
  const Duration max_span = options_.max_span > Duration{} ? options_.max_span : kMaxSpan;
  if (!window_.empty() && received < window_.back().received - max_span) {
    window_.clear();
    ++restarts_;
  }
  // A negative round trip is a broken stamp, not a measurement; as zero it still bounds.
  delay = std::max(delay, Duration{});
  const Point point{sent, received, offset, delay};
  if (!window_.empty() && window_.back().received == received) {
    window_.back() = point;
  } else {
    // Samples arrive in time order but for interleaved ones, which carry the previous T4.
    const auto at = std::upper_bound(window_.begin(), window_.end(), received,
                                     [](UtcTime t, const Point& p) { return t < p.received; });
    window_.insert(at, point);
  }
  // The span limit never leaves fewer than kMinSamples: at polls of 512 s and more those span
  // longer, and a line still holds far better than the network noise of such paths.
  const UtcTime newest = window_.back().received;
  std::size_t too_old = 0;
  while (window_.size() - too_old > kMinSamples && newest - window_[too_old].received > max_span)
    ++too_old;
  const std::size_t max_samples = options_.max_samples > 0
                                      ? std::clamp(options_.max_samples, kMinSamples, kMaxSamples)
                                      : kMaxSamples;
  too_old = std::max(too_old, window_.size() > max_samples ? window_.size() - max_samples : 0);
  window_.erase(window_.begin(), window_.begin() + static_cast<std::ptrdiff_t>(too_old));

  return refit(true);
}

std::optional<EnvelopeEstimate> DelayEnvelope::refit(bool count_restart) {
  Hulls whole = hulls(0);
  Band band = widest(whole);
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
    if (count_restart) ++restarts_;
    whole = hulls(0);
    band = widest(whole);
  }
  if (window_.size() < kMinSamples) {
    estimate_.reset();  // what it said was measured against a clock or path that has changed
    hulls_ = {};
    return std::nullopt;
  }
  std::size_t first = 0;
  if (options_.adaptive_window) {
    first = adaptive_first(whole, band);
  }
  const UtcTime newest = window_.back().received;
  hulls_ = std::move(whole);
  frequency_ = band.frequency;
  middle_s_ = (band.top + band.bottom) / 2;
  // Bounds are relative to the newest offset: a recent value whatever the window held before.
  estimate_ = EnvelopeEstimate{window_.back().offset + Duration::from_seconds(middle_s_),
                               band.frequency,
                               Duration::from_seconds((band.top - band.bottom) / 2),
                               newest,
                               window_.size() - first,
                               newest - window_[first].received,
                               Duration{}};
  Duration half_delays;
  for (std::size_t i = first; i < window_.size(); ++i) half_delays += window_[i].delay / 2;
  estimate_->mean_excess = std::max(
      half_delays / static_cast<int64_t>(window_.size() - first) - estimate_->half_min_delay,
      Duration{});
  return estimate_;
}

std::size_t DelayEnvelope::adaptive_first(Hulls& chosen, Band& band) const {
  // From the whole window down: halve it while the half's band is significantly wider, i.e.
  // while the older half of the samples pinches the band more than their faster packets could.
  // Tested from the top, where the statistic is sharpest (many samples); a window shrinks to a
  // few samples only after every longer one was refuted.
  const std::size_t n = window_.size();
  const double factor =
      options_.width_loss_factor > 0 ? options_.width_loss_factor : kWidthLossFactor;
  std::size_t m = n;
  while (m / 2 >= kAdaptiveMin) {
    const std::size_t half_m = m / 2;
    Hulls half = hulls(n - half_m);
    const Band half_band = widest(half);
    const double half_width_s = half_band.top - half_band.bottom;
    // The queueing J of the half window: its mean half round trip above its D̂.
    double half_delays_s = 0;
    for (std::size_t i = n - half_m; i < n; ++i) half_delays_s += window_[i].delay.seconds() / 2;
    const double queueing_s =
        std::max(half_delays_s / static_cast<double>(half_m) - half_width_s / 2, 0.0);
    const double loss_s = half_width_s - (band.top - band.bottom);
    // A nanosecond at least: on a path without queueing the loss is rounding.
    if (loss_s <= std::max(factor * queueing_s / static_cast<double>(half_m), 1e-9)) break;
    m = half_m;
    chosen = std::move(half);
    band = half_band;
  }
  return n - m;
}

void DelayEnvelope::correct_for_local_clock(UtcTime when, double dfrequency, Duration doffset,
                                       Duration scale_shift) {
  if (window_.empty()) return;
  const LocalClockChange change{when, dfrequency, doffset, scale_shift};
  for (Point& p : window_) {
    const Remeasured r = remeasure(change, p.offset, p.delay, p.sent, p.received);
    p = Point{r.sent, r.received, r.offset, r.delay};
  }
  // A fresh fit of the remapped points, not an adjustment of the old one: the hulls are of the
  // new points and the band is the widest for them, whatever rounding did. The map is affine in
  // (time, bound), so a window one line fitted still fits one (but for a slope pushed beyond
  // ±kMaxFrequency, or a sample's bounds moving apart by dfrequency × its round trip); should it
  // not, the older samples go as in add(), but that is no change of the source: no restart.
  refit(false);
}

std::optional<Duration> DelayEnvelope::error_bound(Duration clearance, double max_frequency) const {
  if (!estimate_) return std::nullopt;
  const auto bound = bound_s(std::max(clearance, Duration{}).seconds(), max_frequency);
  if (!bound) return std::nullopt;
  return Duration::from_seconds(*bound);
}

namespace {

using Vertex = envelope_detail::Vertex;

// The hull of the points that can ever be the extreme: min(value − f·age) over all points is
// reached on the lower convex hull (sign +1), max(value − f·age) on the upper one (sign −1).
// Points come sorted by age, so Andrew's monotone chain builds it in one pass. Of points with
// the same age only the extreme one can matter; the chain's turn test cannot rank them (their
// cross product is 0 whatever their values), so the tie is settled before it.
std::vector<Vertex> hull(const std::vector<Vertex>& points, double sign) {
  std::vector<Vertex> h;
  for (const Vertex& p : points) {
    if (!h.empty() && h.back().age_s == p.age_s) {
      if (sign * (p.value_s - h.back().value_s) >= 0) continue;  // not lower (upper) than it
      h.pop_back();
    }
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

// Where a concave function (convex: pass its negation) of f is largest on [lo, hi], to far below
// a nanosecond over any window; the value, not the place, is what the callers need.
template <typename F>
double maximum(F&& g, double lo, double hi) {
  for (int step = 0; step < 60; ++step) {  // (2/3)^60 of 1e-3: 3e-14 s/s
    const double m1 = lo + (hi - lo) / 3, m2 = hi - (hi - lo) / 3;
    if (g(m1) < g(m2))
      lo = m1;
    else
      hi = m2;
  }
  return g((lo + hi) / 2);
}

}  // namespace

DelayEnvelope::Hulls DelayEnvelope::hulls(std::size_t first) const {
  const Point& newest = window_.back();
  std::vector<Vertex> upper, lower;
  upper.reserve(window_.size() - first);
  lower.reserve(window_.size() - first);
  for (std::size_t i = first; i < window_.size(); ++i) {
    const Point& p = window_[i];
    const double offset_s = (p.offset - newest.offset).seconds(), half_s = p.delay.seconds() / 2;
    // Both bounds at the exchange's midpoint (see the header for why not each at its own leg).
    const double age_s = ((p.sent - newest.received) + (p.received - p.sent) / 2).seconds();
    upper.push_back({age_s, offset_s + half_s});
    lower.push_back({age_s, offset_s - half_s});
  }
  // The window is in T4 order; the midpoints follow it but for a sample whose round trip was
  // longer than the time to the next one's, which is rare: sort only then.
  const auto by_age = [](const Vertex& a, const Vertex& b) { return a.age_s < b.age_s; };
  if (!std::is_sorted(upper.begin(), upper.end(), by_age)) {
    std::stable_sort(upper.begin(), upper.end(), by_age);
    std::stable_sort(lower.begin(), lower.end(), by_age);
  }
  // Only the hulls' corners can bound the band: a few dozen of up to kMaxSamples points.
  return {hull(upper, 1), hull(lower, -1)};
}

DelayEnvelope::Band DelayEnvelope::widest(const Hulls& h) {
  const auto width = [&](double f) { return min_at(h.top, f) - max_at(h.bottom, f); };
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
  return Band{f, min_at(h.top, f), max_at(h.bottom, f)};
}

std::optional<double> DelayEnvelope::bound_s(double clearance_s, double max_frequency) const {
  // Plain references, not a structured binding: C++20 lets lambdas capture bindings, clang 14
  // (the fuzz preset) does not yet.
  const auto& top = hulls_.top;
  const auto& bottom = hulls_.bottom;
  // Lines that keep `clearance` from every bound have slopes where the band is at least twice
  // that wide: an interval around the estimate's frequency, as the width is concave. Of those
  // slopes the ones within ±max_frequency count. Over them the top edge (concave) reaches its
  // highest and the bottom edge (convex) its lowest at the newest T4; the lines' offsets there
  // lie between the two, `clearance` inside.
  const double f = frequency_;
  const double need_s = std::min(2 * clearance_s, min_at(top, f) - max_at(bottom, f));
  const auto fits = [&](double g) { return min_at(top, g) - max_at(bottom, g) >= need_s; };
  const auto edge = [&](double from,
                        double to) {  // the last slope from `from` toward `to` that fits
    if (fits(to)) return to;
    for (int step = 0; step < 50; ++step) {  // 2^-50 of 5e-4: 4e-19 s/s
      const double mid = (from + to) / 2;
      (fits(mid) ? from : to) = mid;
    }
    return from;
  };
  const double f_low = std::max(edge(f, -kMaxFrequency), -max_frequency);
  const double f_high = std::min(edge(f, kMaxFrequency), max_frequency);
  if (f_low > f_high) return std::nullopt;
  const double half_need_s = need_s / 2;
  double high = maximum([&](double g) { return min_at(top, g); }, f_low, f_high) - half_need_s;
  double low = -maximum([&](double g) { return -max_at(bottom, g); }, f_low, f_high) + half_need_s;
  // The searches stop a hair inside the range; it never excludes the end slopes' lines.
  high = std::max({high, min_at(top, f_low) - half_need_s, min_at(top, f_high) - half_need_s});
  low = std::min({low, max_at(bottom, f_low) + half_need_s, max_at(bottom, f_high) + half_need_s});
  return std::max(high - middle_s_, middle_s_ - low);
}

}  // namespace taid::filter
