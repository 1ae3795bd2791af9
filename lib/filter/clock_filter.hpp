// Eight-stage minimum-delay clock filter of RFC 5905 §10, one per source.
//
// Each exchange's (offset, delay, dispersion) enters a shift register. The sample with the
// smallest delay is taken as the best estimate of the offset — delay bounds the error of the
// offset, since asymmetric queueing can only add delay — but only if it is newer than the last one
// used, so a sample is never used twice and time never goes backwards. Dispersion of each stage
// grows at PHI (15 ppm, the assumed frequency tolerance) per second of age. Peer dispersion is
// ε = Σ εᵢ / 2^(i+1) over the stages sorted best first; jitter is the RMS of the other valid
// offsets about the best one. The popcorn-spike suppressor of RFC 5905 (Appendix A.5.2, as
// ntpd's clock_filter() runs it) holds back a new best sample whose offset jumps from the last
// released one by more than SGATE × jitter within two polls of that release; the register keeps
// it, so a real change gets through once the jitter grows with it or two polls have passed.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>

#include "core/time.hpp"

namespace taid::filter {

// RFC 5905 MAXDISP: the dispersion of an empty or dummy stage, and the ceiling of any dispersion.
inline constexpr Duration kMaxDispersion = Duration::from_s(16);
// RFC 5905 PHI: frequency tolerance, seconds of dispersion per second of age.
inline constexpr double kPhi = 15e-6;
// RFC 5905 SGATE: the popcorn-spike gate, in multiples of the jitter.
inline constexpr double kSpikeGate = 3;

// Dispersion accrued by `age` at PHI.
Duration dispersion_growth(Duration age);

struct Stage {
  Duration offset;                       // positive: the local clock is behind the source
  Duration delay;                        // round-trip delay
  Duration dispersion = kMaxDispersion;  // grows with age; MAXDISP marks an empty/dummy stage
  UtcTime time;                          // local time the sample was taken (T4)
  bool valid = false;                    // false for empty and dummy stages
};

// What the filter releases: the best stage plus the register-wide dispersion and jitter.
struct Estimate {
  Duration offset;
  Duration delay;
  Duration dispersion;  // peer dispersion ε at `updated`
  Duration jitter;      // RMS of other valid offsets about the chosen one
  UtcTime time;         // when the chosen sample was taken
  UtcTime updated;      // when the register last changed
  // The most the chosen offset can be off at `updated`: half its round trip (any asymmetry of
  // the path) plus its stage's dispersion (stamp precision, and PHI for each second of age).
  Duration error_bound;
};

class ClockFilter {
 public:
  static constexpr std::size_t kStages = 8;

  // Shifts in a measured sample taken at local time `time`. Returns the new estimate when the
  // minimum-delay stage is newer than the last one released and is no popcorn spike;
  // std::nullopt otherwise (the register, dispersion and jitter still update). Jitter is never
  // reported below `precision`, the resolution of the stamps that measured the sample (RFC 5905
  // clock_filter). `poll` is the source's poll interval: a spike is a jump within 2 × poll of the
  // last release (a zero poll switches the suppressor off).
  std::optional<Estimate> add(Duration offset, Duration delay, Duration dispersion, UtcTime time,
                              Duration precision = {}, Duration poll = {});

  // Shifts in a dummy stage (offset 0, dispersion MAXDISP) after polls went unanswered, so old
  // samples age out and the peer dispersion rises (RFC 5905 §13, poll process).
  void add_dummy(UtcTime time);

  // Newest first, dispersion as of the last update.
  const std::array<Stage, kStages>& stages() const { return stages_; }
  // The last released estimate, with dispersion/jitter as of the last update.
  const std::optional<Estimate>& estimate() const { return estimate_; }
  std::size_t valid_stages() const;
  // The peer dispersion grown by PHI since the last update (root-distance calculations).
  Duration dispersion_at(UtcTime now) const;
  // The released estimate's error bound grown by PHI up to `now`; nullopt before a release.
  std::optional<Duration> error_bound_at(UtcTime now) const;
  // Best samples held back as popcorn spikes since the start.
  uint64_t spikes() const { return spikes_; }

  void reset() { *this = ClockFilter{}; }

  // taid changed the local clock at local time `when`: from then on it runs faster by
  // `dfrequency` (s/s) and it was stepped forward by `doffset` (filter/local_clock_change.hpp).
  // Each valid stage, the released estimate and the register's times are remeasured as the new
  // clock would have measured them: t' = t + shift(t), θ' = θ − (shift(T1) + shift(T4))/2,
  // δ' = δ − shift(T1) + shift(T4), with T1 = T4 − δ; jitter and peer dispersion are recomputed.
  // The register then behaves as if it had been filled with the new clock. Without this it
  // mixes both clocks: a pick of an older stage carries the old clock's offset, the jitter
  // swells by the size of our correction, and after a step back the never-older rule holds every
  // sample until the clock passes the last T4 again. Releases nothing. Call it before adding any
  // sample stamped after `when`.
  // `scale_shift`: the far end's scale moved too (LocalClockChange): a leap second.
  void correct_for_local_clock(UtcTime when, double dfrequency, Duration doffset,
                               Duration scale_shift = {});

 private:
  struct Summary {
    const Stage* best;  // of the lowest delay; invalid when no stage is
    std::size_t valid;
  };
  void shift_in(const Stage& stage);
  // Sorts the stages by delay; sets peer_dispersion_ and jitter_.
  Summary summarize();
  std::optional<Estimate> evaluate();

  std::array<Stage, kStages> stages_{};
  std::optional<UtcTime> last_update_;
  std::optional<UtcTime> last_released_time_;
  std::optional<Estimate> estimate_;
  Duration peer_dispersion_ = kMaxDispersion;
  Duration jitter_;
  Duration precision_;  // of the newest sample: the floor of jitter
  Duration poll_;       // of the newest sample: the popcorn suppressor's time gate is 2 × poll
  uint64_t spikes_ = 0;
};

}  // namespace taid::filter
