// A change taid makes to the local clock, and how it maps the local times and offsets measured
// before it, so stored samples read as if the new clock had measured them (chrony's
// SST_SlewSamples does the same to its sample history).
//
// At local time `when` the clock was made to run faster by `dfrequency` (s/s, relative to its old
// rate: the kernel's change of frequency divided by 1 + the old frequency, a correction of at most
// 500 ppm of itself) and stepped forward by `doffset`. A local time t is mapped to what the clock
// would have read at that instant had it always run at the new rate and been stepped already:
//     t' = t + shift(t),    shift(t) = (t − when)·dfrequency + doffset.
// Times after `when` are on the new scale already and must not be mapped; the map is for what was
// stored before. It is monotone (|dfrequency| ≪ 1), so stored order survives it.
//
// An offset θ = server − local moves with its local stamps: with s1 = shift(T1), s4 = shift(T4),
// the bounds u = T2 − T1 = θ + δ/2 and l = T3 − T4 = θ − δ/2 become u − s1 and l − s4, so
//     θ' = θ − (s1 + s4)/2,    δ' = δ − s1 + s4,
// i.e. θ moves by the shift at the exchange's midpoint and δ by dfrequency × (T4 − T1). A line
// fitted to offsets against local time changes its slope by −dfrequency (to first order) and its
// value at a given instant by −shift.
#pragma once

#include <algorithm>

#include "core/time.hpp"

namespace taid::filter {

struct LocalClockChange {
  UtcTime when;
  double dfrequency = 0;  // s/s; positive: the clock runs faster from `when` on
  Duration doffset;       // positive: the clock was stepped forward
  // How far the far end's time scale moved too: a leap second steps the UTC scale for the
  // server and us alike (doffset = scale_shift = ∓1 s), so stamps move and no offset changes.
  Duration scale_shift;

  // t' − t, to the nearest nanosecond.
  Duration shift(UtcTime t) const {
    return Duration::from_seconds((t - when).seconds() * dfrequency) + doffset;
  }
  // t'.
  UtcTime map(UtcTime t) const { return t + shift(t); }
};

// One exchange's offset, delay and local stamps as the new clock would have measured them. A
// round trip cannot come out negative (as in the estimators, a negative one is a broken stamp).
struct Remeasured {
  Duration offset, delay;
  UtcTime sent, received;  // T1', T4'
};
inline Remeasured remeasure(const LocalClockChange& change, Duration offset, Duration delay,
                            UtcTime sent, UtcTime received) {
  const Duration s1 = change.shift(sent), s4 = change.shift(received);
  return {offset - (s1 + s4) / 2 + change.scale_shift, std::max(delay - s1 + s4, Duration{}),
          sent + s1, received + s4};
}

}  // namespace taid::filter
