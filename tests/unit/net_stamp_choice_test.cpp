// Unit tests for the receive-stamp path choice: fixed policies with fallback, auto by lateness.
#include <gtest/gtest.h>

#include "net/stamp_choice.hpp"

namespace taid::net {
namespace {

using ntp::LocalTimestamp;
using ntp::TimestampSource;

const UtcTime t0 = UtcTime::from_unix_ns(1700000000LL * 1000000000);

// A reply whose paths stamped `late_ns` after t0 each (negative: absent).
RxCandidates reply(int64_t user, int64_t kernel, int64_t bpf) {
  RxCandidates c;
  c[TimestampSource::user] =
      LocalTimestamp{t0 + Duration::from_ns(user), TimestampSource::user, -14};
  if (kernel >= 0)
    c[TimestampSource::kernel] =
        LocalTimestamp{t0 + Duration::from_ns(kernel), TimestampSource::kernel, -25};
  if (bpf >= 0)
    c[TimestampSource::bpf] =
        LocalTimestamp{t0 + Duration::from_ns(bpf), TimestampSource::bpf, -25};
  return c;
}

// What the engine does for an accepted reply: pick, then learn from it.
LocalTimestamp accept(StampChooser& chooser, const RxCandidates& c) {
  const LocalTimestamp picked = chooser.pick(c);
  chooser.record(c);
  return picked;
}

TEST(StampChooser, AutoSettlesOnTheEarliestPathByMedian) {
  StampChooser chooser(StampPolicy::auto_);
  // bpf is earlier than kernel on most replies (as with XDP native), once much later.
  for (std::size_t i = 0; i < StampChooser::kEvaluationReplies; ++i) {
    const int64_t bpf = i == 3 ? 50000 : 0;
    (void)accept(chooser, reply(60000, 1500, bpf));
    EXPECT_EQ(chooser.decided(), i + 1 == StampChooser::kEvaluationReplies);
  }
  EXPECT_EQ(chooser.current(), TimestampSource::bpf);
  const auto message = chooser.take_message();
  ASSERT_TRUE(message);
  EXPECT_NE(message->find("chose bpf"), std::string::npos) << *message;
  EXPECT_FALSE(chooser.take_message());
  // Once decided the choice holds even if a later reply would rank differently.
  EXPECT_EQ(accept(chooser, reply(60000, 0, 900)).source, TimestampSource::bpf);
  const auto paths = chooser.lateness();
  ASSERT_EQ(paths.size(), 3U);
  EXPECT_EQ(paths[0].source, TimestampSource::bpf);
  EXPECT_EQ(paths[0].median_lateness, Duration{});
  EXPECT_EQ(paths[1].median_lateness, Duration::from_ns(1500));
}

TEST(StampChooser, AutoPicksKernelWhenBpfStampsLater) {
  StampChooser chooser(StampPolicy::auto_);
  for (std::size_t i = 0; i < StampChooser::kEvaluationReplies; ++i)
    (void)accept(chooser, reply(60000, 0, 2000));
  EXPECT_EQ(chooser.current(), TimestampSource::kernel);
}

TEST(StampChooser, AutoIgnoresAPathThatIsUsuallyMissing) {
  StampChooser chooser(StampPolicy::auto_);
  for (std::size_t i = 0; i < StampChooser::kEvaluationReplies; ++i)
    (void)accept(chooser, reply(60000, 100, i % 4 == 0 ? 0 : -1));
  EXPECT_EQ(chooser.current(), TimestampSource::kernel);
}

TEST(StampChooser, AutoWithOnlyUserSpace) {
  StampChooser chooser(StampPolicy::auto_);
  EXPECT_EQ(accept(chooser, reply(10, -1, -1)).source, TimestampSource::user);
}

TEST(StampChooser, FixedPolicyUsesItsPathAndFallsBackOnce) {
  StampChooser chooser(StampPolicy::bpf);
  EXPECT_EQ(accept(chooser, reply(60000, 0, 2000)).source, TimestampSource::bpf);
  EXPECT_FALSE(chooser.take_message());
  EXPECT_EQ(accept(chooser, reply(60000, 0, -1)).source, TimestampSource::kernel);
  const auto message = chooser.take_message();
  ASSERT_TRUE(message);
  EXPECT_NE(message->find("no bpf receive stamp"), std::string::npos);
  EXPECT_EQ(accept(chooser, reply(60000, -1, -1)).source, TimestampSource::user);
  EXPECT_FALSE(chooser.take_message());  // said once
}

TEST(StampChooser, PickAloneDoesNotLearn) {
  StampChooser chooser(StampPolicy::auto_);
  for (std::size_t i = 0; i < 2 * StampChooser::kEvaluationReplies; ++i)
    (void)chooser.pick(reply(60000, 5000, 0));  // rejected replies: picked, never recorded
  EXPECT_FALSE(chooser.decided());
  EXPECT_TRUE(chooser.lateness().empty());
}

TEST(StampChooser, UserPolicyIgnoresKernelStamps) {
  StampChooser chooser(StampPolicy::user);
  const LocalTimestamp chosen = accept(chooser, reply(60000, 0, 0));
  EXPECT_EQ(chosen.source, TimestampSource::user);
  EXPECT_EQ(chosen.time, t0 + Duration::from_ns(60000));
}

}  // namespace
}  // namespace taid::net
