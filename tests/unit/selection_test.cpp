// Unit tests for source selection: marks, intersection and majority, minsources, maxdistance,
// maxjitter, noselect, prefer, trust, require, clustering, the previous system peer, combining
// weights and offset, and random candidates that must keep the Result's invariants.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>

#include "selection/selection.hpp"

namespace taid::selection {
namespace {

Duration ms(int64_t v) { return Duration::from_ms(v); }
Duration us(int64_t v) { return Duration::from_us(v); }

Candidate source(Duration offset, Duration distance, Duration jitter = us(100),
                 uint8_t stratum = 2) {
  Candidate c;
  c.usable = true;
  c.offset = offset;
  c.root_distance = distance;
  c.jitter = jitter;
  c.stratum = stratum;
  return c;
}

std::string marks_of(const Result& r) {
  std::string s;
  for (Mark m : r.marks) s += static_cast<char>(m);
  return s;
}

double weight_sum(const Result& r) {
  double sum = 0;
  for (double w : r.weights) sum += w;
  return sum;
}

TEST(Selection, NoCandidates) {
  const Result r = select({}, Settings{});
  EXPECT_TRUE(r.marks.empty());
  EXPECT_TRUE(r.weights.empty());
  EXPECT_FALSE(r.system_peer);
  EXPECT_EQ(r.reason, "no sources");
}

TEST(Selection, OneGoodSourceIsTheSystemPeer) {
  const std::vector<Candidate> c{source(ms(5), ms(10), ms(1))};
  const Result r = select(c, Settings{});
  ASSERT_EQ(r.system_peer, 0u);
  EXPECT_EQ(marks_of(r), "*");
  EXPECT_EQ(r.weights[0], 1.0);
  EXPECT_EQ(r.offset, ms(5));
  EXPECT_EQ(r.jitter, ms(1));  // no spread: the peer's own jitter
  EXPECT_EQ(r.reason, "");
}

TEST(Selection, TwoFalsetickersOfFiveAreMarkedAndTheTruthIsSelected) {
  const std::vector<Candidate> c{
      source(ms(0), ms(10)),                // [-10, 10]
      source(ms(2), ms(12)),                // [-10, 14]
      source(ms(-1), ms(20)),               // [-21, 19]
      source(Duration::from_s(1), ms(10)),  // +1 s: false
      source(Duration::from_s(2), ms(10)),  // +2 s: false
  };
  const Result r = select(c, Settings{});
  EXPECT_EQ(marks_of(r), "*++xx");
  ASSERT_EQ(r.system_peer, 0u);  // the least root distance
  EXPECT_EQ(r.weights[3], 0.0);
  EXPECT_EQ(r.weights[4], 0.0);
  // Inside the intersection of the truechimers' intervals, [-10 ms, +10 ms].
  EXPECT_GE(r.offset, ms(-10));
  EXPECT_LE(r.offset, ms(10));
  // Weights 1/10 : 1/12 : 1/20 = 6/14 : 5/14 : 3/14, so (5·2 − 3·1)/14 ms = 0.5 ms.
  EXPECT_EQ(r.offset, us(500));
  // Spread (5/14·2² + 3/14·1²) ms² with the peer's 0.1 ms jitter.
  EXPECT_NEAR(static_cast<double>(r.jitter.ns()), 1e6 * std::sqrt(23.0 / 14 + 0.01), 1.0);
}

TEST(Selection, ThreeFalsetickersOfFiveLeaveNoMajority) {
  const std::vector<Candidate> c{
      source(ms(0), ms(10)),
      source(ms(1), ms(10)),
      source(Duration::from_s(1), ms(10)),
      source(Duration::from_s(2), ms(10)),
      source(Duration::from_s(3), ms(10)),
  };
  const Result r = select(c, Settings{});
  EXPECT_FALSE(r.system_peer);
  EXPECT_EQ(marks_of(r), "xxxxx");  // as chrony: nobody is to be trusted
  EXPECT_EQ(weight_sum(r), 0.0);
  EXPECT_NE(r.reason.find("no majority"), std::string::npos) << r.reason;
  EXPECT_EQ(r.reason, "no majority: 3 of 5 sources are falsetickers (only 2 agree)");
}

TEST(Selection, TwoDisagreeingSourcesHaveNoMajority) {
  const std::vector<Candidate> c{source(ms(0), ms(10)), source(Duration::from_s(1), ms(10))};
  const Result r = select(c, Settings{});
  EXPECT_FALSE(r.system_peer);
  EXPECT_EQ(marks_of(r), "xx");
}

TEST(Selection, AWrongMajorityWins) {
  // Three sources that agree on +1 s outvote two that agree on 0: intersection counts, nothing
  // else (which is why trust exists).
  const std::vector<Candidate> c{
      source(ms(0), ms(10)),
      source(ms(0), ms(10)),
      source(Duration::from_s(1), ms(20)),
      source(Duration::from_s(1), ms(20)),
      source(Duration::from_s(1), ms(20)),
  };
  const Result r = select(c, Settings{});
  EXPECT_EQ(marks_of(r), "xx*++");
  EXPECT_EQ(r.offset, Duration::from_s(1));
}

TEST(Selection, MinSources) {
  const std::vector<Candidate> c{source(ms(0), ms(10)), source(ms(1), ms(10)),
                                 source(ms(2), ms(10))};
  Settings s;
  s.min_sources = 4;
  Result r = select(c, s);
  EXPECT_FALSE(r.system_peer);
  EXPECT_EQ(marks_of(r), "---");
  EXPECT_EQ(r.reason, "3 selectable sources, minsources 4");
  s.min_sources = 3;
  r = select(c, s);
  EXPECT_EQ(r.system_peer, 0u);
  EXPECT_EQ(r.reason, "");
}

TEST(Selection, MinSourcesCountsOnlyTruechimers) {
  const std::vector<Candidate> c{source(ms(0), ms(10)), source(ms(1), ms(10)),
                                 source(Duration::from_s(5), ms(10))};
  Settings s;
  s.min_sources = 3;
  const Result r = select(c, s);
  EXPECT_FALSE(r.system_peer);
  EXPECT_EQ(marks_of(r), "--x");
  EXPECT_EQ(r.reason, "2 selectable sources, minsources 3");
}

TEST(Selection, MaxDistance) {
  const std::vector<Candidate> c{source(ms(0), ms(10)), source(ms(0), ms(3500)),
                                 source(ms(0), ms(3000))};
  Result r = select(c, Settings{});
  // 3 s is the limit itself: still usable, a truechimer, though too far to be combined.
  EXPECT_EQ(marks_of(r), "*?-");
  Settings s;
  s.max_distance = ms(5);
  r = select(c, s);
  EXPECT_FALSE(r.system_peer);
  EXPECT_EQ(marks_of(r), "???");
  EXPECT_EQ(r.reason, "no selectable sources (3 unusable, 0 above maxjitter, 0 noselect)");
}

TEST(Selection, MaxJitterMarksTooVariableAndTheyDoNotVote) {
  // The jittery source sits at +1 s: if it voted, two against one would still win, but with
  // two more jittery ones there it would be no majority.
  const std::vector<Candidate> c{
      source(ms(0), ms(10)),
      source(ms(1), ms(10)),
      source(Duration::from_s(1), ms(10), ms(1500)),
      source(Duration::from_s(2), ms(10), ms(1001)),
      source(Duration::from_s(3), ms(10), ms(1000)),  // at the limit: not too variable
  };
  Result r = select(c, Settings{});
  EXPECT_EQ(marks_of(r), "*+~~x");
  Settings s;
  s.max_jitter = us(50);  // now the 100 µs sources too
  r = select(c, s);
  EXPECT_EQ(marks_of(r), "~~~~~");
  EXPECT_EQ(r.reason, "no selectable sources (0 unusable, 5 above maxjitter, 0 noselect)");
}

TEST(Selection, NoselectIsNeverSelectedAndDoesNotVote) {
  std::vector<Candidate> c{source(ms(0), ms(1)), source(ms(0), ms(10))};
  c[0].options.noselect = true;
  Result r = select(c, Settings{});
  EXPECT_EQ(marks_of(r), "?*");
  EXPECT_EQ(r.weights[0], 0.0);
  EXPECT_EQ(r.offset, ms(0));
  // Without its vote, 0 and +1 s are one against one.
  c.push_back(source(Duration::from_s(1), ms(10)));
  r = select(c, Settings{});
  EXPECT_FALSE(r.system_peer);
  EXPECT_EQ(marks_of(r), "?xx");
  // Noselect and previous: still never selected.
  r = select(std::span(c).first(2), Settings{}, 0);
  EXPECT_EQ(r.system_peer, 1u);
}

TEST(Selection, PreferWinsOverACloserSourceAndRestrictsCombining) {
  std::vector<Candidate> c{source(ms(0), ms(5)), source(ms(1), ms(8)), source(ms(-1), ms(6))};
  c[1].options.prefer = true;
  Result r = select(c, Settings{});
  EXPECT_EQ(marks_of(r), "-*-");
  EXPECT_EQ(r.weights[1], 1.0);
  EXPECT_EQ(r.offset, ms(1));
  // Two preferred: the closer of them is the peer, and only they are combined (1/8 : 1/6).
  c[2].options.prefer = true;
  r = select(c, Settings{});
  EXPECT_EQ(marks_of(r), "-+*");
  EXPECT_NEAR(r.weights[1], 3.0 / 7, 1e-12);
  EXPECT_NEAR(r.weights[2], 4.0 / 7, 1e-12);
  EXPECT_EQ(r.offset.ns(), std::llround(1e6 * (3.0 / 7 - 4.0 / 7)));
}

TEST(Selection, PreferFalsetickerIsNotPreferred) {
  std::vector<Candidate> c{source(ms(0), ms(10)), source(ms(1), ms(10)),
                           source(Duration::from_s(1), ms(1))};
  c[2].options.prefer = true;
  const Result r = select(c, Settings{});
  EXPECT_EQ(marks_of(r), "*+x");
}

TEST(Selection, TrustedSourcesOutvoteAnUntrustedMajority) {
  std::vector<Candidate> c{
      source(ms(0), ms(10)),   source(ms(1), ms(10)),   source(ms(500), ms(10)),
      source(ms(500), ms(10)), source(ms(500), ms(10)),
  };
  EXPECT_EQ(marks_of(select(c, Settings{})), "xx*++");
  c[0].options.trust = true;
  c[1].options.trust = true;
  const Result r = select(c, Settings{});
  EXPECT_EQ(marks_of(r), "*+xxx");
  EXPECT_EQ(r.offset, us(500));  // equal weights
}

TEST(Selection, TrustedFalsetickerOnlyWhenOtherTrustedDisagree) {
  std::vector<Candidate> c{
      source(ms(0), ms(10)),   // trusted [-10, 10]
      source(ms(2), ms(10)),   // trusted [-8, 12]
      source(ms(500), ms(5)),  // trusted, disagrees with the other two trusted
      source(ms(1), ms(5)),    // untrusted [-4, 6], inside the trusted intersection [-8, 10]
      source(ms(1), ms(10)),   // untrusted [-9, 11]: agrees, but reaches outside [-8, 10]
  };
  c[0].options.trust = c[1].options.trust = c[2].options.trust = true;
  Result r = select(c, Settings{});
  EXPECT_EQ(marks_of(r), "++x*x");
  // One trusted source alone is a majority of the trusted ones: it stands against two
  // untrusted sources that agree with each other but not with it.
  std::vector<Candidate> d{source(ms(0), ms(10)), source(ms(500), ms(10)), source(ms(500), ms(10))};
  d[0].options.trust = true;
  r = select(d, Settings{});
  EXPECT_EQ(marks_of(r), "*xx");
}

TEST(Selection, UntrustedSourceMustLieWhollyInsideTheTrustedInterval) {
  std::vector<Candidate> c{
      source(ms(0), ms(10)),   // trusted [-10, 10]
      source(ms(15), ms(10)),  // [5, 25]: agrees, but reaches outside the trusted interval
      source(ms(2), ms(5)),    // [-3, 7]
  };
  c[0].options.trust = true;
  const Result r = select(c, Settings{});
  EXPECT_EQ(marks_of(r), "+x*");
  // Weights 1/10 : 1/5 = 1/3 : 2/3 about the peer's +2 ms.
  EXPECT_EQ(r.offset.ns(), 1333333);
}

TEST(Selection, RequireWithAndWithoutARequiredSurvivor) {
  std::vector<Candidate> c{source(ms(0), ms(20)), source(ms(1), ms(10)), source(ms(2), ms(10))};
  c[0].options.require = true;
  Result r = select(c, Settings{});
  EXPECT_EQ(marks_of(r), "+*+");  // required need not be the peer, only a truechimer
  c[0].offset = Duration::from_s(1);
  r = select(c, Settings{});
  EXPECT_FALSE(r.system_peer);
  EXPECT_EQ(marks_of(r), "x--");
  EXPECT_EQ(r.reason, "no required source among the 2 selectable sources");
  EXPECT_EQ(weight_sum(r), 0.0);
  // A required source that is noselect cannot be selectable either.
  c[0].offset = ms(0);
  c[0].options.noselect = true;
  r = select(c, Settings{});
  EXPECT_FALSE(r.system_peer);
  EXPECT_EQ(marks_of(r), "?--");
}

TEST(Selection, CombineWeightsSumToOneAndGiveTheWeightedMean) {
  // Peer jitters of 5 ms keep clustering out (no selection jitter is above 5 ms).
  const std::vector<Candidate> c{
      source(ms(1), ms(10), ms(5)), source(ms(3), ms(20), ms(5)),
      source(ms(-2), ms(40), ms(5)),  // 40 > 3 × 10.1 ms: not combined
      source(ms(0), ms(100), ms(5)),  // not combined
  };
  const Result r = select(c, Settings{});
  EXPECT_EQ(marks_of(r), "*+--");
  EXPECT_NEAR(r.weights[0], 2.0 / 3, 1e-12);
  EXPECT_NEAR(r.weights[1], 1.0 / 3, 1e-12);
  EXPECT_EQ(r.weights[2], 0.0);
  EXPECT_EQ(r.weights[3], 0.0);
  EXPECT_NEAR(weight_sum(r), 1.0, 1e-12);
  EXPECT_EQ(r.offset.ns(), 1666667);  // (2·1 + 1·3)/3 ms
  // RFC 5905 system jitter: √(1/3·(2 ms)² + (5 ms)²).
  EXPECT_NEAR(static_cast<double>(r.jitter.ns()), 1e6 * std::sqrt(4.0 / 3 + 25), 1.0);
  // A larger combinelimit takes in the 40 ms source (40 ≤ 4 × 10.1), weights 4 : 2 : 1.
  Settings s;
  s.combine_limit = 4;
  const Result wide = select(c, s);
  EXPECT_EQ(marks_of(wide), "*++-");
  EXPECT_NEAR(wide.weights[2], 1.0 / 7, 1e-12);
  EXPECT_EQ(wide.offset.ns(), std::llround(1e6 * (4.0 * 1 + 2.0 * 3 + 1.0 * -2) / 7));
}

TEST(Selection, ClusteringDropsTheOutlierEvenIfItIsTheClosest) {
  const std::vector<Candidate> c{
      source(us(8000), ms(40), us(200)),  // agrees with the intervals but far from the cluster
      source(us(0), ms(50), us(200)),    source(us(100), ms(51), us(200)),
      source(us(-100), ms(52), us(200)), source(us(50), ms(53), us(200)),
  };
  const Result r = select(c, Settings{});
  // Dropped once: after that the largest selection jitter (155 µs, of −100 µs) is below the
  // least peer jitter (200 µs).
  EXPECT_EQ(marks_of(r), "-*+++");
  EXPECT_EQ(r.weights[0], 0.0);
  EXPECT_NEAR(weight_sum(r), 1.0, 1e-12);
  // With peer jitters of 100 µs the −100 µs source goes too; three are the minimum.
  std::vector<Candidate> tight = c;
  for (Candidate& t : tight) t.jitter = us(100);
  EXPECT_EQ(marks_of(select(tight, Settings{})), "-*+-+");
}

TEST(Selection, ClusteringKeepsAtLeastThree) {
  const std::vector<Candidate> c{source(ms(0), ms(50), us(1)), source(ms(20), ms(50), us(1)),
                                 source(ms(-20), ms(50), us(1))};
  EXPECT_EQ(marks_of(select(c, Settings{})), "*++");
}

TEST(Selection, PreviousPeerKeptUnderSmallDifferences) {
  const std::vector<Candidate> c{source(ms(0), ms(10)), source(ms(1), ms(12)),
                                 source(ms(2), ms(25))};
  EXPECT_EQ(select(c, Settings{}).system_peer, 0u);
  Result r = select(c, Settings{}, 1);
  EXPECT_EQ(r.system_peer, 1u);  // 12 ≤ 2 × 10.1 ms
  EXPECT_EQ(marks_of(r), "+*+");
  r = select(c, Settings{}, 2);
  EXPECT_EQ(r.system_peer, 0u);  // 25 > 2 × 10.1 ms: clearly worse, dropped
  r = select(c, Settings{}, 7);  // out of range: ignored
  EXPECT_EQ(r.system_peer, 0u);
}

TEST(Selection, ReselectDistanceFavoursThePreviousPeer) {
  // 20.1 ms ≤ 2 × (10 + 0.1) ms: kept only thanks to reselectdist.
  const std::vector<Candidate> c{source(ms(0), ms(10)), source(ms(0), us(20100))};
  EXPECT_EQ(select(c, Settings{}, 1).system_peer, 1u);
  Settings s;
  s.reselect_distance = Duration{};
  EXPECT_EQ(select(c, s, 1).system_peer, 0u);
  // combinelimit applies to the peer's distance plus reselectdist: 30.2 ≤ 3 × 10.1 ms.
  const std::vector<Candidate> d{source(ms(0), ms(10)), source(ms(0), us(30200))};
  EXPECT_EQ(marks_of(select(d, Settings{})), "*+");
  EXPECT_EQ(marks_of(select(d, s)), "*-");
}

TEST(Selection, PreviousPeerDroppedWhenItBecomesAFalseticker) {
  std::vector<Candidate> c{source(ms(0), ms(10)), source(ms(1), ms(12)), source(ms(2), ms(11))};
  EXPECT_EQ(select(c, Settings{}, 2).system_peer, 2u);
  c[2].offset = Duration::from_s(1);
  const Result r = select(c, Settings{}, 2);
  EXPECT_EQ(marks_of(r), "*+x");
}

TEST(Selection, StratumWeightRanksTheSystemPeer) {
  // Stratum 1 at 10 ms beats stratum 3 at 9 ms: two strata are 2 ms of stratumweight.
  const std::vector<Candidate> c{source(ms(0), ms(9), us(100), 3),
                                 source(ms(0), ms(10), us(100), 1)};
  EXPECT_EQ(select(c, Settings{}).system_peer, 1u);
  Settings s;
  s.stratum_weight = Duration{};
  EXPECT_EQ(select(c, s).system_peer, 0u);
}

TEST(Selection, UnusableSourcesAreMarkedUnusable) {
  std::vector<Candidate> c{source(ms(0), ms(10)), source(ms(0), ms(10)),
                           source(ms(0), ms(10), us(100), 16), source(ms(0), ms(-1)),
                           source(ms(0), ms(10), us(100), 0)};
  c[1].usable = false;
  const Result r = select(c, Settings{});
  // Stratum 0 (a reference clock) is fine, and outranks stratum 2 at the same distance.
  EXPECT_EQ(marks_of(r), "+???*");
}

TEST(Selection, RandomCandidatesKeepTheInvariants) {
  std::mt19937_64 rng(20261201);
  auto uniform = [&](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  };
  int selected = 0;
  for (int round = 0; round < 20000; ++round) {
    std::vector<Candidate> c(static_cast<std::size_t>(uniform(0, 12)));
    const int64_t centre_ns = uniform(-2'000'000'000, 2'000'000'000);
    for (Candidate& x : c) {
      x.usable = uniform(0, 9) != 0;
      // Mostly near a common centre, sometimes anywhere, now and then at the int64 ends.
      const int64_t pick = uniform(0, 19);
      x.offset = Duration::from_ns(pick == 0   ? std::numeric_limits<int64_t>::max()
                                   : pick == 1 ? std::numeric_limits<int64_t>::min()
                                   : pick < 6  ? uniform(-3'000'000'000, 3'000'000'000)
                                               : centre_ns + uniform(-20'000'000, 20'000'000));
      x.root_distance = Duration::from_ns(uniform(-1000, 3'500'000'000) / uniform(1, 1000));
      x.jitter = Duration::from_ns(uniform(0, 1'200'000'000) / uniform(1, 1000));
      x.stratum = static_cast<uint8_t>(uniform(0, 16));
      x.options.prefer = uniform(0, 5) == 0;
      x.options.noselect = uniform(0, 9) == 0;
      x.options.trust = uniform(0, 5) == 0;
      x.options.require = uniform(0, 9) == 0;
    }
    Settings s;
    s.min_sources = static_cast<int>(uniform(0, 4));
    s.combine_limit = static_cast<double>(uniform(0, 40)) / 10;
    std::optional<std::size_t> previous;
    if (uniform(0, 1)) previous = static_cast<std::size_t>(uniform(0, 14));

    const Result r = select(c, s, previous);
    SCOPED_TRACE(round);
    ASSERT_EQ(r.marks.size(), c.size());
    ASSERT_EQ(r.weights.size(), c.size());
    ASSERT_EQ(r.system_peer.has_value(), r.reason.empty()) << r.reason;
    int stars = 0;
    double sum = 0;
    for (std::size_t i = 0; i < c.size(); ++i) {
      const bool in_combination = r.marks[i] == Mark::selected || r.marks[i] == Mark::combined;
      ASSERT_GE(r.weights[i], 0.0);
      ASSERT_EQ(r.weights[i] > 0, in_combination) << i;
      if (c[i].options.noselect || !c[i].usable) {
        ASSERT_EQ(r.marks[i], Mark::unusable);
      }
      stars += r.marks[i] == Mark::selected;
      sum += r.weights[i];
    }
    if (!r.system_peer) {
      ASSERT_EQ(stars, 0);
      ASSERT_EQ(sum, 0.0);
      continue;
    }
    ++selected;
    ASSERT_EQ(stars, 1);
    ASSERT_EQ(r.marks[*r.system_peer], Mark::selected);
    ASSERT_NEAR(sum, 1.0, 1e-9);
    ASSERT_GE(r.jitter, c[*r.system_peer].jitter);
    // The weighted mean lies among the combined offsets (give or take the nanosecond it is
    // rounded to).
    Duration lo = c[*r.system_peer].offset, hi = lo;
    for (std::size_t i = 0; i < c.size(); ++i) {
      if (r.weights[i] == 0) continue;
      lo = std::min(lo, c[i].offset);
      hi = std::max(hi, c[i].offset);
    }
    ASSERT_GE(r.offset.ns(),
              lo.ns() == std::numeric_limits<int64_t>::min() ? lo.ns() : lo.ns() - 1);
    ASSERT_LE(r.offset.ns(),
              hi.ns() == std::numeric_limits<int64_t>::max() ? hi.ns() : hi.ns() + 1);
  }
  EXPECT_GT(selected, 2000);  // the rounds exercised selection, not only the refusals
}

}  // namespace
}  // namespace taid::selection
