// Offset and frequency of one source from the envelopes of its delays — the per-source estimate
// taid reports and will steer by; the RFC 5905 clock filter beside it still supplies dispersion,
// jitter and the poll control.
//
// Each sample bounds the true offset x. The request cannot reach the server before it left, nor
// the reply come back before the server sent it, so with θ and δ of the sample and D_f, D_b the
// path's smallest one-way delays:
//     l = θ − δ/2 = T3 − T4  ≤  x − D_b        and        x + D_f  ≤  θ + δ/2 = T2 − T1 = u.
// Queueing only ever adds delay. The samples that travelled fastest each way therefore pin x
// down from above and from below, while averaging (a regression) spreads every queueing delay
// into the estimate. Over a window, with x(t) = x₀ + f·t and D_f = D_b = D (the symmetry that
// every two-way method assumes), the best line is the one whose band between the upper envelope
// (u) and the lower envelope (l) is widest: f maximises
//     g(f) = minᵢ(uᵢ − f·tᵢ) − maxᵢ(lᵢ − f·tᵢ),
// which is concave in f. The offset is the middle of the band at the newest sample's T4, and
// D̂ = g/2, half the narrowest round trip after frequency correction, is as far as path asymmetry
// can move it. It is the two-sided form of Moon, Skelly and Towsley's lower-envelope skew
// estimate (INFOCOM 1999). The error shrinks like 1/n as the window fills, where a mean shrinks
// like 1/√n.
//
// Where a sample's bounds sit in time: u measures x where the request reached the server
// (T1 + D_f), l where the reply left it (T4 − D_b). Both are placed at the exchange's midpoint
// tᵢ = (T1 + T4)/2, which is the middle of those two instants whenever the legs are symmetric:
// u − D_f and l + D_b then both read x(tᵢ) up to the same f·(T3 − T2)/2, so the band's middle is
// unbiased. Placing them at T4, as this code once did, put the offset f·(δ + T3 − T2)/2 off (160 µs
// over a 300 ms path at 400 ppm). Each at its own leg's time would be as unbiased but would
// tilt a lone sample's band by f·δ, so that where one packet holds both edges the widest band
// runs off to ±500 ppm; a common instant keeps that plateau flat. What it costs: a sample that
// was fastest one way and queued q the other way is placed f·q/2 off (5 ns at 10 ppm, 1 ms).
//
// The estimate has an error bound (error_bound(), on demand): every line of |f| ≤ kMaxFrequency
// that passes under every upper and over every lower bound is a possible truth, whatever the
// path's asymmetry, so the true offset at the newest T4 lies in the range of such lines there;
// the bound is the farther end of that range from the estimate. It is dominated by D̂ (the
// asymmetry allowance every two-way method has), so to compare with the clock filter the
// exchange asks for it under a clearance: lines that keep at least that far from every bound,
// i.e. a symmetric path whose one-way delays are at least the clearance. With few samples the
// frequency is loose and even those lines spread widely at the newest T4.
//
// The window adapts (EnvelopeOptions::adaptive_window, on by default): where the oscillator's
// frequency moves over the window, the older samples pinch the band and the fit keeps only the
// newest ones (kWidthLossFactor, below). On a stationary stream it keeps the whole window.
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
  UtcTime time;             // the newest sample's local receive time (T4)
  std::size_t samples = 0;  // in the window
  Duration span;            // from the oldest to the newest sample's T4 in the window
  // The mean of δ/2 − D̂ over the window: how much the samples' round trips were queued on
  // average, the scale of the queueing the fastest ones may still hide.
  Duration mean_excess;
};

struct EnvelopeOptions {
  // Fit only the newest part of the window when the older samples no longer lie on the same
  // line (see DelayEnvelope::kWidthLossFactor); false: the whole window, always.
  bool adaptive_window = true;
  // How much narrower than the half window's the doubled window's band may be, in units of
  // the queueing over the samples: DelayEnvelope::kWidthLossFactor unless a bench sweeps it.
  double width_loss_factor = 0;
  // A fixed window of fewer samples than kMaxSamples (a bench's comparison); 0: kMaxSamples.
  std::size_t max_samples = 0;
  // The window's span instead of kMaxSpan (0: kMaxSpan). Longer spans pay at slow polls only
  // with the adaptive window, which cuts them back where the line no longer holds.
  Duration max_span{};
};

namespace envelope_detail {
struct Vertex {
  double age_s;  // ≤ 0: time relative to the newest T4
  double value_s;
};
}  // namespace envelope_detail

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

  // The adaptive window. A straight line through the window is biased once the oscillator's
  // frequency has moved over it (wander, temperature): by about a·T²/8 at the newest sample for
  // a frequency drifting at a over a window T, while the noise of the band's edges shrinks like
  // J/n (J the mean queueing, n the samples). So the fit halves its window, from the whole one
  // down to kAdaptiveMin samples, while the half window's band is wider than the whole's by more
  // than kWidthLossFactor·J/n_half: on a line the older half narrows the band only as much as
  // its own faster packets do (about J/n_half, with an exponential tail: above 6 J/n_half in
  // 0.1 % to 1 % of fits for n_half ≥ 64 in bench/estimators' stationary stream), while a curve
  // pinches it by its bend. The factor was chosen by measurement (bench/estimators, 4 to 8 swept:
  // docs/ESTIMATORS.md); it only weighs precision when stationary against following a drift.
  static constexpr std::size_t kAdaptiveMin = 8;
  static constexpr double kWidthLossFactor = 6;

  DelayEnvelope() = default;
  explicit DelayEnvelope(EnvelopeOptions options) : options_(options) {}

  // Adds a sample (θ = offset, δ = delay) whose request left at local time `sent` (T1) and
  // whose reply arrived at `received` (T4); its bounds belong to the midpoint of the two. A
  // second measurement of the newest instant (interleaved mode re-measures the previous
  // exchange) replaces it. Returns the new estimate once the window holds kMinSamples, else
  // std::nullopt.
  std::optional<EnvelopeEstimate> add(Duration offset, Duration delay, UtcTime sent,
                                      UtcTime received);

  // Forgets every sample: the local clock was stepped, so their times no longer compare.
  void reset();

  // taid changed the local clock at local time `when`: from then on it runs faster by
  // `dfrequency` (s/s) and it was stepped forward by `doffset` (filter/local_clock_change.hpp).
  // Every sample is remeasured as the new clock would have measured it (T1, T4 mapped; θ, δ
  // moved by the shifts of T1 and T4) and the window is fitted afresh, so the estimate is what
  // the remapped samples give: its frequency f becomes (f − dfrequency)/(1 + dfrequency), its
  // offset drops by the shift at its time, and no restart is counted. Without this, our own
  // steering reads as a change of the source: a step beyond the round trip, or a frequency change
  // whose kink grows past it, leaves no line between the bounds and the window starts over. Call it
  // before adding any sample stamped after `when`.
  // `scale_shift`: the far end's scale moved too (LocalClockChange): a leap second.
  void correct_for_local_clock(UtcTime when, double dfrequency, Duration doffset,
                               Duration scale_shift = {});

  const std::optional<EnvelopeEstimate>& estimate() const { return estimate_; }
  // The estimate's error bound when the path is symmetric with one-way delays of at least
  // `clearance` and the frequency is within ±`max_frequency`: the farthest from the estimate
  // that a line of such a slope, passing at least `clearance` under every upper and over every
  // lower bound, puts the offset at the newest T4. With no clearance and kMaxFrequency it holds
  // whatever the path's asymmetry (the counterpart of a sample's δ/2, never below D̂); D̂ or more
  // leaves the lines of the widest band only. nullopt when there is no estimate or no such line
  // (the samples refute the assumption). Computed on demand: it costs about what a fit does.
  std::optional<Duration> error_bound(Duration clearance = {},
                                      double max_frequency = kMaxFrequency) const;
  // Samples held; the estimate may fit only the newest of them (its `samples`).
  std::size_t size() const { return window_.size(); }
  // How often samples stopped fitting one line and the older ones were dropped.
  uint64_t restarts() const { return restarts_; }

 private:
  struct Point {
    UtcTime sent, received;  // T1, T4
    Duration offset, delay;  // θ, δ
  };
  using Vertex = envelope_detail::Vertex;
  struct Hulls {
    std::vector<Vertex> top;     // lower hull of the upper bounds
    std::vector<Vertex> bottom;  // upper hull of the lower bounds
  };
  struct Band {
    double frequency;    // s/s
    double top, bottom;  // its edges at the newest T4, seconds; top < bottom: inconsistent
  };
  // The bounds of window_[first..] as hulls, relative to the newest sample's offset (so a clock
  // years off keeps nanoseconds in doubles) and its T4.
  Hulls hulls(std::size_t first) const;
  static Band widest(const Hulls& h);
  // Fits the window, first dropping its oldest samples if no line fits them all (a restart,
  // counted when `count_restart`); sets and returns the estimate (nullopt below kMinSamples).
  std::optional<EnvelopeEstimate> refit(bool count_restart);
  Band fit(std::size_t first) const { return widest(hulls(first)); }
  std::optional<double> bound_s(double clearance_s, double max_frequency) const;
  // The first sample of the fit the adaptive window chooses; `chosen` and `band` come in as the
  // whole window's and leave as that fit's.
  std::size_t adaptive_first(Hulls& chosen, Band& band) const;

  EnvelopeOptions options_;
  std::vector<Point> window_;  // by T4, oldest first
  std::optional<EnvelopeEstimate> estimate_;
  Hulls hulls_;           // of the estimate's window
  double frequency_ = 0;  // the estimate's
  double middle_s_ = 0;   // the estimate relative to the newest sample's offset
  uint64_t restarts_ = 0;
};

}  // namespace taid::filter
