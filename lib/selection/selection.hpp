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
};

// One source as selection sees it.
struct Candidate {
  Options options;
  // Reachable with an offset estimate. An unusable candidate is marked '?' and takes no part.
  bool usable = false;
  Duration offset;  // the source's estimate
  // Root distance λ: root delay / 2 + root dispersion (the source's own, plus the path's delay/2,
  // its filter dispersion and jitter) — half the correctness interval's width.
  Duration root_distance;
  Duration jitter;  // the source's own (clock filter) jitter
  uint8_t stratum = 16;
};

// Marks as chronyc prints them.
enum class Mark : char {
  selected = '*',      // the system peer
  combined = '+',      // a truechimer combined with it
  not_combined = '-',  // a truechimer left out of the combination (or noselect)
  falseticker = 'x',   // outside the intersection
  too_variable = '~',  // jitter above max_jitter
  unusable = '?',      // unreachable, no estimate, or root distance above max_distance
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

// Selects among `candidates`. `previous` is the last system peer: kept while it survives and is
// not much worse than the best (clock hopping costs more than it gains).
Result select(std::span<const Candidate> candidates, const Settings& settings,
              std::optional<std::size_t> previous = std::nullopt);

}  // namespace taid::selection
