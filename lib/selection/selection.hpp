// Source selection (RFC 5905 §11.2): which sources tell the truth, which one is the system peer,
// and the combined offset — pure, no I/O. chrony's directives where they exist: minsources,
// maxdistance, maxjitter, combinelimit; per source prefer, noselect, trust, require.
//
// Units and sign: offsets are positive when the local clock is behind the source (as θ).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/time.hpp"

namespace taid::selection {

// A source's selection options (chrony's server options of the same names).
struct Options {
  bool prefer = false;    // preferred as system peer; with any prefer source, combine only those
  bool noselect = false;  // never selected (measured and shown only)
  bool trust = false;     // assumed true: a falseticker only if no other trusted source agrees
  bool require = false;   // no update unless at least one required source is selectable
};

// chrony's defaults.
struct Settings {
  int min_sources = 1;                          // minsources
  Duration max_distance = Duration::from_s(3);  // maxdistance: root distance above: unusable
  Duration max_jitter = Duration::from_s(1);    // maxjitter: jitter above: too variable ('~')
  double combine_limit = 3;                     // combinelimit
  // reselectdist: added to every candidate's distance but the previous system peer's, so a
  // peer is not dropped for a rival that is better by less than this.
  Duration reselect_distance = Duration::from_us(100);
  // stratumweight: each stratum above the lowest among the survivors counts as this much
  // extra distance when the system peer is chosen.
  Duration stratum_weight = Duration::from_ms(1);
};

// One source as selection sees it.
struct Candidate {
  Options options;
  // Reachable with an offset estimate. An unusable candidate is marked '?' and takes no part;
  // so is one with stratum 16 or more (unsynchronised, RFC 5905 fit()).
  bool usable = false;
  Duration offset;  // the source's estimate
  // Root distance λ: root delay / 2 + root dispersion (the source's own, plus the path's delay/2,
  // its filter dispersion and jitter) — half the correctness interval's width.
  Duration root_distance;
  Duration jitter;  // the source's own (clock filter) jitter
  uint8_t stratum = 16;
  // Not usable yet but not given up either (its first requests are still out, or its first
  // replies not yet through the filter): it may still vote, so it counts in the majority's
  // denominator and agrees with no one. Without this, the first two liars to answer out of five
  // would be a majority of two.
  bool pending = false;
};

// Marks as chronyc prints them.
enum class Mark : char {
  selected = '*',  // the system peer
  combined = '+',  // a truechimer combined with it
  // A truechimer left out: not combined, dropped by clustering, not prefer while prefer sources
  // survive, or waiting for minsources / a required source.
  not_combined = '-',
  // Outside the intersection; with trusted sources, also a non-trusted source not wholly inside
  // the trusted sources' interval (chrony's 'T', which chronyc prints as '?'); with no majority,
  // every candidate that took part.
  falseticker = 'x',
  too_variable = '~',  // jitter above max_jitter
  // Unreachable, no estimate, stratum >= 16, root distance above max_distance, or noselect
  // (chronyc prints noselect sources as '?' too: chrony's SRC_UNSELECTABLE is "nonselectable").
  unusable = '?',
};

struct Result {
  std::vector<Mark> marks;  // one per candidate, same order
  // Weight of each candidate in the combined offset (1/root distance, normalised to sum 1 over
  // the combined ones, 0 elsewhere), so a caller can combine other per-source values alike.
  std::vector<double> weights;
  std::optional<std::size_t> system_peer;  // index of the '*' candidate; nullopt: no selection
  Duration offset;                         // the combined offset (when system_peer)
  Duration jitter;  // system jitter: RMS of the combined offsets about the system peer's, with
                    // the system peer's own jitter (RFC 5905 §11.2.3)
  // Why there is no system peer ("no majority: 3 of 5 sources are falsetickers", "2 selectable
  // sources, minsources 3", ...); empty when there is one.
  std::string reason;
};

// The previous system peer is kept while its selection distance is at most this many times the
// best survivor's (see select()).
inline constexpr double kReselectRatio = 2.0;

// Clustering (RFC 5905 §11.2.2) stops at this many survivors (the RFC's NMIN; chrony does not
// cluster, so this only acts with four or more truechimers).
inline constexpr std::size_t kMinClusterSurvivors = 3;

// Selects among `candidates`, in this order:
//  1. '?' unusable or noselect, '~' jitter above max_jitter; the rest take part.
//  2. Intersection (RFC 5905 §11.2.1 as chrony sweeps it): the interval inside the most
//     correctness intervals [offset − λ, offset + λ], trusted sources counted first. No majority
//     (of the trusted sources, when some take part): no selection, all 'x'. Truechimers are the
//     sources whose interval contains that interval or lies inside it; the others 'x'.
//  3. Fewer truechimers than min_sources, or required sources exist and none is a truechimer: no
//     selection, truechimers '-'.
//  4. With prefer truechimers, only they go on; the others '-'.
//  5. Clustering (RFC 5905 §11.2.2) down to kMinClusterSurvivors; dropped ones '-'.
//  6. System peer: the least selection distance λ + (stratum − lowest stratum) × stratum_weight
//     (chrony's ranking, not the RFC's strict stratum order), reselect_distance added to all but
//     `previous`. `previous` (an index into `candidates`; out of range is ignored) is kept while
//     it survives and its selection distance is at most kReselectRatio × the best's: clock
//     hopping costs more than it gains, and chrony gets the same effect from a score it keeps
//     across updates, which a pure function cannot keep.
//  7. Combining: survivors with λ ≤ combine_limit × (the peer's λ + reselect_distance) (chrony)
//     are '+', weighted 1/λ; the others '-'.
Result select(std::span<const Candidate> candidates, const Settings& settings,
              std::optional<std::size_t> previous = std::nullopt);

}  // namespace taid::selection
