// Source selection: intersection, minsources/require, prefer, clustering, system peer and combine
// (RFC 5905 §11.2 with chrony's directives and marks; the order is documented in selection.hpp).
#include "selection/selection.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/strcat.hpp"

namespace taid::selection {
namespace {

// Saturating: an absurd offset must not overflow the interval's ends.
int64_t add_saturated(int64_t a, int64_t b) {
  int64_t sum = 0;
  if (__builtin_add_overflow(a, b, &sum)) {
    return b > 0 ? std::numeric_limits<int64_t>::max() : std::numeric_limits<int64_t>::min();
  }
  return sum;
}

// A correctness interval's end; at equal times a low end sorts before a high end, so intervals
// that only touch still count as overlapping.
struct Endpoint {
  int64_t at_ns;
  int kind;  // -1 low end, +1 high end
  std::size_t index;
};

struct Intersection {
  int64_t lo_ns = 0, hi_ns = 0;              // the interval inside the most intervals
  int64_t trust_lo_ns = 0, trust_hi_ns = 0;  // the one inside the most trusted intervals
  int depth = 0;                             // how many intervals contain [lo, hi]
  int trust_depth = 0;                       // how many trusted intervals contain it
};

// One sweep over the sorted ends, counting how many intervals (and trusted intervals) are open.
// The trusted count decides first, the total count second. Where several separate stretches reach
// the same best depth, [lo, hi] runs from the first to the last of them (as chrony does): their
// sources are all kept, and too few sources to tell them apart shows up as no majority.
Intersection intersect(std::span<const Candidate> candidates,
                       const std::vector<std::size_t>& taking_part) {
  std::vector<Endpoint> ends;
  ends.reserve(2 * taking_part.size());
  for (std::size_t i : taking_part) {
    const Candidate& c = candidates[i];
    ends.push_back({add_saturated(c.offset.ns(), -c.root_distance.ns()), -1, i});
    ends.push_back({add_saturated(c.offset.ns(), c.root_distance.ns()), +1, i});
  }
  std::sort(ends.begin(), ends.end(), [](const Endpoint& a, const Endpoint& b) {
    return a.at_ns != b.at_ns ? a.at_ns < b.at_ns : a.kind < b.kind;
  });
  Intersection best;
  int depth = 0, trust_depth = 0;
  for (const Endpoint& e : ends) {
    const bool trusted = candidates[e.index].options.trust;
    if (e.kind < 0) {
      ++depth;
      if (trusted) ++trust_depth;
      if (trust_depth > best.trust_depth) {
        best.trust_depth = trust_depth;
        best.trust_lo_ns = e.at_ns;
        best.depth = depth;
        best.lo_ns = e.at_ns;
      } else if (trust_depth == best.trust_depth && depth > best.depth) {
        best.depth = depth;
        best.lo_ns = e.at_ns;
      }
    } else {
      if (trust_depth == best.trust_depth) {
        if (depth == best.depth) best.hi_ns = e.at_ns;
        best.trust_hi_ns = e.at_ns;
      }
      --depth;
      if (trusted) --trust_depth;
    }
  }
  return best;
}

// RFC 5905 §11.2.2: selection jitter of survivor i, the RMS of the others' offsets about its own.
double selection_jitter_s(std::span<const Candidate> candidates,
                          const std::vector<std::size_t>& survivors, std::size_t i) {
  double sum = 0;
  for (std::size_t j : survivors) {
    const double d = candidates[j].offset.seconds() - candidates[i].offset.seconds();
    sum += d * d;
  }
  return std::sqrt(sum / static_cast<double>(survivors.size() - 1));
}

// Drops the survivor with the largest selection jitter while more than kMinClusterSurvivors are
// left and that jitter exceeds the smallest peer jitter: removing it would then tighten the
// cluster more than the sources' own noise. Ties drop the candidate with the larger distance.
void cluster(std::span<const Candidate> candidates, std::vector<std::size_t>& survivors,
             std::vector<Mark>& marks) {
  while (survivors.size() > kMinClusterSurvivors) {
    std::size_t worst = 0;
    double worst_jitter_s = -1;
    double min_peer_jitter_s = std::numeric_limits<double>::infinity();
    for (std::size_t k = 0; k < survivors.size(); ++k) {
      const std::size_t i = survivors[k];
      const double phi = selection_jitter_s(candidates, survivors, i);
      if (phi > worst_jitter_s ||
          (phi == worst_jitter_s &&
           candidates[i].root_distance > candidates[survivors[worst]].root_distance)) {
        worst_jitter_s = phi;
        worst = k;
      }
      min_peer_jitter_s = std::min(min_peer_jitter_s, candidates[i].jitter.seconds());
    }
    if (!(worst_jitter_s > min_peer_jitter_s)) return;
    marks[survivors[worst]] = Mark::not_combined;
    survivors.erase(survivors.begin() + static_cast<std::ptrdiff_t>(worst));
  }
}

Duration clamp_to_duration(long double ns) {
  constexpr auto kMax = static_cast<long double>(std::numeric_limits<int64_t>::max());
  if (!(ns < kMax)) return Duration::from_ns(std::numeric_limits<int64_t>::max());
  if (!(ns > -kMax)) return Duration::from_ns(-std::numeric_limits<int64_t>::max());
  return Duration::from_ns(std::llround(ns));
}

// A zero root distance (a local reference clock may report one) must not give infinite weight.
double weight_of(const Candidate& c) { return 1.0 / std::max(c.root_distance.seconds(), 1e-9); }

}  // namespace

Result select(std::span<const Candidate> candidates, const Settings& settings,
              std::optional<std::size_t> previous) {
  const std::size_t n = candidates.size();
  Result result;
  result.marks.assign(n, Mark::unusable);
  result.weights.assign(n, 0.0);
  // n stands for "none": an out-of-range previous peer is ignored.
  const std::size_t prev = previous && *previous < n ? *previous : n;

  // 1. Who takes part. Counted for the reasons below.
  std::vector<std::size_t> taking_part;
  std::size_t n_unusable = 0, n_noselect = 0, n_jittery = 0;
  int n_pending = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const Candidate& c = candidates[i];
    if (c.options.noselect) {
      ++n_noselect;
    } else if (!c.usable && c.pending) {
      ++n_unusable;
      ++n_pending;
    } else if (!c.usable || c.stratum >= 16 || c.root_distance < Duration{} ||
               c.root_distance > settings.max_distance) {
      ++n_unusable;
    } else if (c.jitter > settings.max_jitter) {
      result.marks[i] = Mark::too_variable;
      ++n_jittery;
    } else {
      taking_part.push_back(i);
    }
  }
  if (taking_part.empty()) {
    result.reason = n == 0 ? std::string("no sources")
                           : strcat("no selectable sources (", n_unusable, " unusable, ", n_jittery,
                                    " above maxjitter, ", n_noselect, " noselect)");
    return result;
  }

  // 2. Intersection.
  const Intersection best = intersect(candidates, taking_part);
  int n_voting = static_cast<int>(taking_part.size());
  int agreeing = best.depth;
  const bool trusted_decide = best.trust_depth > 0;
  if (trusted_decide) {
    n_voting =
        static_cast<int>(std::count_if(taking_part.begin(), taking_part.end(),
                                       [&](std::size_t i) { return candidates[i].options.trust; }));
    agreeing = best.trust_depth;
  }
  if (!trusted_decide && agreeing > n_voting / 2 && agreeing <= (n_voting + n_pending) / 2) {
    // A majority of those that answered, but not of all that may still answer.
    for (std::size_t i : taking_part) result.marks[i] = Mark::not_combined;
    result.reason = strcat("waiting for ", n_pending,
                           " source(s) that have not answered yet: only ", agreeing, " of ",
                           n_voting + n_pending, " agree so far");
    return result;
  }
  if (agreeing <= n_voting / 2) {
    for (std::size_t i : taking_part) result.marks[i] = Mark::falseticker;
    result.reason = strcat("no majority: ", n_voting - agreeing, " of ", n_voting,
                           trusted_decide ? " trusted" : "", " sources are falsetickers (only ",
                           agreeing, " agree)");
    return result;
  }
  std::vector<std::size_t> truechimers;
  for (std::size_t i : taking_part) {
    const Candidate& c = candidates[i];
    const int64_t lo = add_saturated(c.offset.ns(), -c.root_distance.ns());
    const int64_t hi = add_saturated(c.offset.ns(), c.root_distance.ns());
    const bool agrees =
        (lo <= best.lo_ns && hi >= best.hi_ns) || (lo >= best.lo_ns && hi <= best.hi_ns);
    // With trusted sources, the others must lie wholly inside the trusted sources' interval, so
    // they cannot pull the combined offset out of it (chrony's rule).
    const bool trusted_ok =
        !trusted_decide || c.options.trust || (lo >= best.trust_lo_ns && hi <= best.trust_hi_ns);
    if (agrees && trusted_ok) {
      result.marks[i] = Mark::not_combined;
      truechimers.push_back(i);
    } else {
      result.marks[i] = Mark::falseticker;
    }
  }

  // 3. minsources and require.
  const auto required = [&](std::size_t i) { return candidates[i].options.require; };
  const bool any_required = std::any_of(candidates.begin(), candidates.end(),
                                        [](const Candidate& c) { return c.options.require; });
  if (truechimers.empty() || static_cast<int>(truechimers.size()) < settings.min_sources) {
    result.reason = strcat(truechimers.size(), " selectable sources, minsources ",
                           std::max(settings.min_sources, 1));
    return result;
  }
  if (any_required && std::none_of(truechimers.begin(), truechimers.end(), required)) {
    result.reason =
        strcat("no required source among the ", truechimers.size(), " selectable sources");
    return result;
  }

  // 4. prefer: with preferred truechimers, only they are candidates and only they are combined.
  std::vector<std::size_t> survivors = truechimers;
  const auto preferred = [&](std::size_t i) { return candidates[i].options.prefer; };
  if (std::any_of(survivors.begin(), survivors.end(), preferred)) {
    std::erase_if(survivors, [&](std::size_t i) { return !preferred(i); });
  }

  // 5. Clustering.
  cluster(candidates, survivors, result.marks);

  // 6. System peer.
  uint8_t min_stratum = 255;
  for (std::size_t i : survivors) min_stratum = std::min(min_stratum, candidates[i].stratum);
  const auto selection_distance_s = [&](std::size_t i) {
    const Candidate& c = candidates[i];
    double d =
        c.root_distance.seconds() + (c.stratum - min_stratum) * settings.stratum_weight.seconds();
    if (i != prev) d += settings.reselect_distance.seconds();
    return d;
  };
  std::size_t peer = survivors.front();
  for (std::size_t i : survivors) {
    if (selection_distance_s(i) < selection_distance_s(peer)) peer = i;
  }
  if (std::find(survivors.begin(), survivors.end(), prev) != survivors.end() &&
      selection_distance_s(prev) <= kReselectRatio * selection_distance_s(peer)) {
    peer = prev;
  }

  // 7. Combining.
  const Candidate& p = candidates[peer];
  const double limit_s =
      settings.combine_limit * (p.root_distance + settings.reselect_distance).seconds();
  std::vector<std::size_t> combined;
  double weight_sum = 0;
  for (std::size_t i : survivors) {
    if (i == peer || candidates[i].root_distance.seconds() <= limit_s) {
      combined.push_back(i);
      weight_sum += weight_of(candidates[i]);
    }
  }
  long double offset_ns = static_cast<long double>(p.offset.ns());
  double spread_s2 = 0;  // Σ wᵢ (θᵢ − θ₀)², the RFC's system selection jitter squared
  for (std::size_t i : combined) {
    const double w = weight_of(candidates[i]) / weight_sum;
    result.weights[i] = w;
    result.marks[i] = i == peer ? Mark::selected : Mark::combined;
    // Relative to the peer's offset: exact for the peer, and no int64 overflow.
    const long double d_ns = static_cast<long double>(candidates[i].offset.ns()) -
                             static_cast<long double>(p.offset.ns());
    offset_ns += w * d_ns;
    spread_s2 += w * static_cast<double>(d_ns * d_ns) * 1e-18;
  }
  result.system_peer = peer;
  result.offset = clamp_to_duration(offset_ns);
  result.jitter =
      clamp_to_duration(1e9L * std::sqrt(spread_s2 + p.jitter.seconds() * p.jitter.seconds()));
  return result;
}

}  // namespace taid::selection
