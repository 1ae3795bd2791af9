// The regression estimate: weighted least squares over a window trimmed by a runs test.
#include "filter/regression_estimate.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace taid::filter {

namespace regression_detail {

std::size_t count_runs(std::span<const double> residuals) {
  if (residuals.empty()) return 0;
  std::size_t runs = 1;
  for (std::size_t i = 1; i < residuals.size(); ++i)
    if ((residuals[i] < 0) != (residuals[i - 1] < 0)) ++runs;
  return runs;
}

std::size_t critical_runs(std::size_t n) {
  if (n < 8) return 0;
  // Half the signs each way (the line splits the residuals about evenly): the number of runs has
  // mean n/2 + 1 and variance n(n − 2)/(4(n − 1)). With the continuity correction, P(R ≤ c) ≤ 5 %
  // where c + 0.5 ≤ mean − 1.645·sd.
  const double nd = static_cast<double>(n);
  const double mean = nd / 2 + 1;
  const double sd = std::sqrt(nd * (nd - 2) / (4 * (nd - 1)));
  const double c = std::floor(mean - 0.5 - 1.6449 * sd);
  return c < 0 ? 0 : static_cast<std::size_t>(c);
}

Line fit(std::span<const double> x, std::span<const double> y, std::span<const double> w) {
  double sw = 0, sx = 0, sy = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    sw += 1 / w[i];
    sx += x[i] / w[i];
    sy += y[i] / w[i];
  }
  const double mx = sx / sw, my = sy / sw;
  double sxx = 0, sxy = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double dx = x[i] - mx;
    sxx += dx * dx / w[i];
    sxy += dx * (y[i] - my) / w[i];
  }
  Line line;
  line.b1 = sxx > 0 ? sxy / sxx : 0;
  line.b0 = my - line.b1 * mx;
  double ss = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double r = y[i] - (line.b0 + line.b1 * x[i]);
    ss += r * r / w[i];
  }
  const double dof = x.size() > 2 ? static_cast<double>(x.size() - 2) : 1;
  // The weights are relative (the best sample has 1): scale the sum back to the mean weight's.
  line.sd = std::sqrt(ss / dof * (static_cast<double>(x.size()) / sw));
  return line;
}

}  // namespace regression_detail

void RegressionEstimator::reset() {
  window_.clear();
  runs_only_ = 0;
  last_sd_s_ = 0;
  estimate_.reset();
}

std::optional<RegressionEstimate> RegressionEstimator::add(Duration offset, Duration delay,
                                                           UtcTime sent, UtcTime received) {
  delay = std::max(delay, Duration{});
  const Point point{sent, received, offset, delay};
  if (!window_.empty() && window_.back().received == received) {
    window_.back() = point;
  } else {
    const auto at = std::upper_bound(window_.begin(), window_.end(), received,
                                     [](UtcTime t, const Point& p) { return t < p.received; });
    window_.insert(at, point);
  }
  // The fit holds at most max_samples; older ones stay for the runs test, as many again at most.
  const std::size_t fitted = window_.size() - runs_only_;
  if (fitted > options_.max_samples) runs_only_ += fitted - options_.max_samples;
  const std::size_t keep_runs = std::min(runs_only_, window_.size() - runs_only_);
  if (runs_only_ > keep_runs) {
    window_.erase(window_.begin(),
                  window_.begin() + static_cast<std::ptrdiff_t>(runs_only_ - keep_runs));
    runs_only_ = keep_runs;
  }
  return refit();
}

std::optional<RegressionEstimate> RegressionEstimator::refit() {
  namespace rd = regression_detail;
  const std::size_t total = window_.size();
  const std::size_t n = total - runs_only_;
  if (n < std::max<std::size_t>(options_.min_samples, 2)) {
    estimate_.reset();
    return std::nullopt;
  }
  const Point newest = window_.back();  // a copy: the window is trimmed below
  std::vector<double> x(total), y(total), w(total);
  double min_distance = std::numeric_limits<double>::infinity();
  for (std::size_t i = runs_only_; i < total; ++i)
    min_distance = std::min(min_distance, window_[i].delay.seconds() / 2);
  double sd = last_sd_s_;
  if (sd <= 0 || sd > min_distance) sd = min_distance;
  sd = std::max(sd, 1e-9);  // a zero-delay path: every weight 1
  for (std::size_t i = 0; i < total; ++i) {
    const Point& p = window_[i];
    x[i] = ((p.sent - newest.received) + (p.received - p.sent) / 2).seconds();
    y[i] = (p.offset - newest.offset).seconds();
    const double extra = std::max(p.delay.seconds() / 2 - min_distance, 0.0);
    const double weight = 1 + kDistanceRatio * extra / sd;
    w[i] = weight * weight;
  }
  // Try windows from the longest: the first whose residuals (over it and as many older samples
  // again) are random enough wins.
  std::size_t start = runs_only_;  // index of the fit's oldest sample
  rd::Line line;
  std::size_t runs = 0;
  std::vector<double> residuals;
  for (;;) {
    const std::size_t m = total - start;
    line = rd::fit(std::span(x).subspan(start), std::span(y).subspan(start),
                   std::span(w).subspan(start));
    const std::size_t tested_from = start >= m ? start - m : 0;
    residuals.clear();
    for (std::size_t i = tested_from; i < total; ++i)
      residuals.push_back(y[i] - (line.b0 + line.b1 * x[i]));
    runs = rd::count_runs(residuals);
    if (!options_.runs_test || runs > rd::critical_runs(residuals.size()) ||
        m <= options_.min_samples)
      break;
    const std::size_t step =
        m <= options_.trim_one_by_one_below ? 1 : std::max<std::size_t>(1, m / 32);
    start += std::min(step, m - options_.min_samples);
  }
  // The samples before the chosen window no longer count for the fit; as many as it holds stay
  // for the next runs test.
  const std::size_t m = total - start;
  const std::size_t drop = start > m ? start - m : 0;
  window_.erase(window_.begin(), window_.begin() + static_cast<std::ptrdiff_t>(drop));
  runs_only_ = start - drop;
  last_sd_s_ = line.sd;

  const Point& oldest = window_[runs_only_];
  estimate_ = RegressionEstimate{newest.offset + Duration::from_seconds(line.b0),
                                 line.b1,
                                 newest.received,
                                 m,
                                 newest.received - oldest.received,
                                 line.sd,
                                 runs};
  return estimate_;
}

}  // namespace taid::filter
