// Offset and frequency of one source by weighted least squares, as chrony's sourcestats does it:
// the comparison estimator for the delay envelope (bench/estimators), not used by the daemon.
//
// Each sample's offset θ is placed at the exchange's midpoint (T1 + T4)/2 (as the envelope places
// its bounds) and a line θ = b0 + b1·t is fitted by weighted least squares. A sample's weight is
// chrony's: its variance is taken as (1 + k·(d − d_min)/σ)², d = δ/2 its distance, d_min the
// smallest in the window, σ the previous fit's residual deviation (no more than d_min) and
// k = kDistanceRatio, so samples that queued longer count less but none is thrown away.
//
// The window is trimmed by a runs test (Wald–Wolfowitz) on the signs of the residuals: a line
// through data that curve (the oscillator's frequency moved) leaves long runs of one sign. The
// oldest samples are dropped until the runs are as many as random signs would give at the 5 %
// level, the newest min_samples always kept; the residuals of up to as many older samples again
// (kept for this only) take part in the test, so a short window is still tested on a long record
// (chrony's REGRESS_RUNS_RATIO). What was dropped is forgotten: the window regrows from there.
//
// Written from our understanding of chrony's regress.c (RGR_FindBestRegression) and
// sourcestats.c, not checked line by line against their source (the search tool did not return
// it); the critical numbers of runs come from the normal approximation, not chrony's table.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "core/time.hpp"

namespace taid::filter {

struct RegressionEstimate {
  Duration offset;           // at `time`; positive: the local clock is behind the source
  double frequency = 0;      // d(offset)/dt in s/s; positive: the local clock runs slow
  UtcTime time;              // the newest sample's local receive time (T4)
  std::size_t samples = 0;   // in the fit
  Duration span;             // from the oldest to the newest fitted sample's T4
  double residual_sd_s = 0;  // the weighted residuals' standard deviation (chrony's "sd")
  std::size_t runs = 0;      // of residual signs over the tested samples
};

struct RegressionOptions {
  // chrony keeps at most 64 samples per source (its maxsamples' default).
  std::size_t max_samples = 64;
  // A fit needs this many; trimming never leaves fewer (chrony's MIN_SAMPLES_FOR_REGRESS).
  std::size_t min_samples = 3;
  bool runs_test = true;
  // Above this many samples the trim drops 1/32 of the window per try instead of one sample,
  // so windows of a thousand samples stay O(n log n) per fit.
  std::size_t trim_one_by_one_below = 64;
};

namespace regression_detail {
// The number of runs of equal signs (a residual of 0 counts as positive).
std::size_t count_runs(std::span<const double> residuals);
// The largest number of runs that n random signs give with probability ≤ 5 % (one-sided): a
// sequence with no more runs than this is not random. 0 below 8 samples (never rejected).
std::size_t critical_runs(std::size_t n);

struct Line {
  double b0 = 0, b1 = 0;  // value at age 0, slope
  double sd = 0;          // weighted residual standard deviation
};
// Weighted least squares of y on x with variances w (larger: less reliable); x, y, w equally
// long, at least 2 points with distinct x.
Line fit(std::span<const double> x, std::span<const double> y, std::span<const double> w);
}  // namespace regression_detail

class RegressionEstimator {
 public:
  // chrony's SD_TO_DIST_RATIO: how much of a sample's extra distance counts as its deviation.
  static constexpr double kDistanceRatio = 0.7;

  explicit RegressionEstimator(RegressionOptions options = {}) : options_(options) {}

  // Adds a sample (θ = offset, δ = delay; T1 = sent, T4 = received), samples in T4 order.
  // Returns the new estimate once min_samples are held, else std::nullopt.
  std::optional<RegressionEstimate> add(Duration offset, Duration delay, UtcTime sent,
                                        UtcTime received);
  void reset();

  const std::optional<RegressionEstimate>& estimate() const { return estimate_; }
  std::size_t size() const { return window_.size(); }

 private:
  struct Point {
    UtcTime sent, received;
    Duration offset, delay;
  };
  std::optional<RegressionEstimate> refit();

  RegressionOptions options_;
  std::vector<Point> window_;  // by T4, oldest first: runs-test-only samples, then the fit's
  std::size_t runs_only_ = 0;  // how many of the oldest take part in the runs test only
  double last_sd_s_ = 0;       // the previous fit's, for the weights
  std::optional<RegressionEstimate> estimate_;
};

}  // namespace taid::filter
