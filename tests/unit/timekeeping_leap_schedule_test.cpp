// Tests for the leap-second plan: when taid sets and vouches for the TAI offset, what arms a leap
// second (table, sources' majority, the table winning), disarming, the June/December rule, the
// state after the leap, observe-only and the window around the leap.
#include <gtest/gtest.h>

#include "core/time.hpp"
#include "timekeeping/leap_schedule.hpp"
#include "timescale/leap_table.hpp"

namespace taid::timekeeping {
namespace {

constexpr int64_t kNs = 1000000000;
constexpr int64_t kMidnight2017 = 1483228800;  // 2017-01-01T00:00:00Z

UtcTime at_s(int64_t s, int64_t ns = 0) { return UtcTime::from_unix_ns(s * kNs + ns); }

// The last entries of the real table, expiring in 2027 (a good table for any 2016-2026 date).
timescale::LeapTable table_until_2027() {
  timescale::LeapTable t;
  t.entries = {{63072000, 10}, {1341100800, 35}, {1435708800, 36}, {kMidnight2017, 37}};
  t.expires_utc_s = 1814140800;  // 2027-06-28
  t.origin = "leap-seconds.list test";
  return t;
}

LeapVote votes(int selected, int insert, int delete_ = 0) { return {selected, insert, delete_}; }

TEST(LeapScheduleTest, SynchronizedOnTheLeapDaySetsTheOffsetAndArmsTheInsertion) {
  LeapSchedule s(LeapMode::system, 0);
  s.set_table(table_until_2027(), "");
  const auto step = s.update(at_s(kMidnight2017 - 3600), true, votes(1, 0), false);
  ASSERT_TRUE(step.set_tai_offset_s);
  EXPECT_EQ(*step.set_tai_offset_s, 36);
  ASSERT_TRUE(step.arm);
  EXPECT_EQ(*step.arm, 1);
  EXPECT_NE(step.log.find("armed for 2016-12-31T23:59:60Z"), std::string::npos) << step.log;
  // One source announcing nothing disagrees with the table: logged, the table wins.
  EXPECT_NE(step.log.find("the table wins"), std::string::npos) << step.log;
  EXPECT_TRUE(s.vouched());
  EXPECT_EQ(s.known_offset(), 36);
  EXPECT_EQ(s.kernel_tai_offset_s(), 36);
  EXPECT_EQ(s.armed(), 1);
  EXPECT_EQ(s.due_at(), at_s(kMidnight2017));
  // Nothing changes at the next update.
  const auto again = s.update(at_s(kMidnight2017 - 3000), true, votes(1, 1), false);
  EXPECT_FALSE(again.set_tai_offset_s);
  EXPECT_FALSE(again.arm);
  EXPECT_EQ(again.log, "");
}

TEST(LeapScheduleTest, UnsynchronizedBeforeTheLastEntryWaits) {
  LeapSchedule s(LeapMode::system, 0);
  s.set_table(table_until_2027(), "");
  const auto step = s.update(at_s(kMidnight2017 - 20), false, votes(0, 0), false);
  EXPECT_FALSE(step.set_tai_offset_s);
  EXPECT_FALSE(step.arm);
  EXPECT_FALSE(s.vouched());
  EXPECT_FALSE(s.known_offset());
  EXPECT_NE(s.tai_note().find("waiting for synchronisation"), std::string::npos);
}

TEST(LeapScheduleTest, UnsynchronizedAfterTheLastEntrySetsTheOffsetButArmsNothing) {
  LeapSchedule s(LeapMode::system, 0);
  s.set_table(table_until_2027(), "");
  const auto step = s.update(at_s(1790000000), false, votes(0, 0), false);  // 2026-09
  ASSERT_TRUE(step.set_tai_offset_s);
  EXPECT_EQ(*step.set_tai_offset_s, 37);
  EXPECT_TRUE(s.vouched());
  EXPECT_FALSE(step.arm);
}

TEST(LeapScheduleTest, ExpiredTableIsNotVouchedForAndSetsNothing) {
  LeapSchedule s(LeapMode::system, 0);
  auto table = table_until_2027();
  table.expires_utc_s = 1782604800;  // 2026-06-28, as tzdata 2025b's list
  s.set_table(table, "");
  const auto step = s.update(at_s(1796083200), true, votes(1, 0), false);  // 2026-12-01
  EXPECT_FALSE(step.set_tai_offset_s);
  EXPECT_FALSE(s.vouched());
  EXPECT_FALSE(s.known_offset());
  EXPECT_NE(s.tai_note().find("has expired (2026-06-28)"), std::string::npos) << s.tai_note();
}

TEST(LeapScheduleTest, NoTableArmsFromTheMajorityAndDisarmsWhenItChangesItsMind) {
  LeapSchedule s(LeapMode::system, 37);
  s.set_table(std::nullopt, "no leap table: x: cannot read");
  const int64_t dec31 = 1830297600 - 3600;  // 2027-12-31T23:00:00Z
  // One of three: no majority.
  auto step = s.update(at_s(dec31), true, votes(3, 1), false);
  EXPECT_FALSE(step.arm);
  EXPECT_FALSE(s.vouched());
  EXPECT_EQ(s.tai_note(), "no leap table: x: cannot read");
  step = s.update(at_s(dec31 + 60), true, votes(3, 2), false);
  ASSERT_TRUE(step.arm);
  EXPECT_EQ(*step.arm, 1);
  EXPECT_EQ(s.armed_from(), "a majority of the selected sources");
  step = s.update(at_s(dec31 + 120), true, votes(3, 1), false);
  ASSERT_TRUE(step.arm);
  EXPECT_EQ(*step.arm, 0);
  EXPECT_NE(step.log.find("disarmed"), std::string::npos) << step.log;
  EXPECT_EQ(s.armed(), 0);
  // A deletion works the same way.
  step = s.update(at_s(dec31 + 180), true, votes(2, 0, 2), false);
  ASSERT_TRUE(step.arm);
  EXPECT_EQ(*step.arm, -1);
  EXPECT_NE(step.log.find("deletion armed for 2027-12-31T23:59:58Z"), std::string::npos)
      << step.log;
}

TEST(LeapScheduleTest, SourcesAnnouncingALeapOnAnOrdinaryDayAreIgnored) {
  LeapSchedule s(LeapMode::system, 37);
  const int64_t june15 = 1813017600;  // 2027-06-15
  auto step = s.update(at_s(june15), true, votes(2, 2), false);
  EXPECT_FALSE(step.arm);
  EXPECT_NE(step.log.find("not the last day of June or December"), std::string::npos);
  // Logged once.
  step = s.update(at_s(june15 + 60), true, votes(2, 2), false);
  EXPECT_EQ(step.log, "");
}

TEST(LeapScheduleTest, TheTableWinsOverSourcesAnnouncingALeapItDoesNotHave) {
  LeapSchedule s(LeapMode::step, 37);
  s.set_table(table_until_2027(), "");
  const int64_t dec31_2026 = 1798761600 - 600;  // 2026-12-31T23:50:00Z
  const auto step = s.update(at_s(dec31_2026), true, votes(3, 3), false);
  EXPECT_EQ(s.armed(), 0);
  EXPECT_NE(step.log.find("says no leap second at the end of 2026-12-31, the majority of sources "
                          "announces an insertion: the table wins"),
            std::string::npos)
      << step.log;
}

TEST(LeapScheduleTest, AfterTheKernelsLeapTheFlagIsClearedAndNotArmedAgain) {
  LeapSchedule s(LeapMode::system, 0);
  s.set_table(table_until_2027(), "");
  s.update(at_s(kMidnight2017 - 30), true, votes(1, 1), false);
  ASSERT_EQ(s.armed(), 1);
  EXPECT_TRUE(s.near_leap(at_s(kMidnight2017 - 1)));
  EXPECT_FALSE(s.near_leap(at_s(kMidnight2017 - 3)));
  s.on_leap_done(1);
  EXPECT_EQ(s.kernel_tai_offset_s(), 37);
  // The repeated 23:59:59 is still 31 December: the flag is cleared, nothing is armed again, and
  // the offset is not touched within the window (the kernel has just changed it).
  auto step = s.update(at_s(kMidnight2017 - 1, 500000000), true, votes(1, 1), false);
  ASSERT_TRUE(step.arm);
  EXPECT_EQ(*step.arm, 0);
  EXPECT_FALSE(step.set_tai_offset_s);
  EXPECT_EQ(s.armed(), 0);
  EXPECT_TRUE(s.near_leap(at_s(kMidnight2017 + 1)));
  step = s.update(at_s(kMidnight2017 + 60), true, votes(1, 0), false);
  EXPECT_FALSE(step.arm);
  EXPECT_FALSE(step.set_tai_offset_s);
  EXPECT_TRUE(s.vouched());
}

TEST(LeapScheduleTest, ObserveOnlySetsNothingAndVouchesForAMatchingKernel) {
  LeapSchedule wrong(LeapMode::system, 0);
  wrong.set_table(table_until_2027(), "");
  auto step = wrong.update(at_s(1790000000), true, votes(1, 0), true);
  EXPECT_FALSE(step.set_tai_offset_s);
  EXPECT_FALSE(wrong.vouched());
  EXPECT_EQ(wrong.known_offset(), 37);  // the table's offset is known whatever the kernel has
  EXPECT_NE(wrong.tai_note().find("the kernel has 0 s"), std::string::npos) << wrong.tai_note();

  LeapSchedule right(LeapMode::system, 37);
  right.set_table(table_until_2027(), "");
  right.update(at_s(1790000000), true, votes(1, 0), true);
  EXPECT_TRUE(right.vouched());

  // Armed for reporting, never in the kernel.
  LeapSchedule leap_day(LeapMode::system, 36);
  leap_day.set_table(table_until_2027(), "");
  step = leap_day.update(at_s(kMidnight2017 - 60), true, votes(1, 1), true);
  EXPECT_FALSE(step.arm);
  EXPECT_EQ(leap_day.armed(), 1);
  EXPECT_TRUE(leap_day.vouched());
}

TEST(LeapScheduleTest, AStepAfterArmingClearsTheKernelFlagAndArmsItAgainLater) {
  LeapSchedule s(LeapMode::system, 36);
  s.set_table(table_until_2027(), "");
  s.update(at_s(kMidnight2017 - 30), true, votes(1, 1), false);
  ASSERT_EQ(s.armed(), 1);
  // The kernel forgets an armed leap at a step: clear now, set again 1.5 s later.
  s.on_clock_stepped(at_s(kMidnight2017 - 20));
  ASSERT_TRUE(s.rearm_at());
  auto step = s.update(at_s(kMidnight2017 - 20), true, votes(1, 1), false);
  ASSERT_TRUE(step.arm);
  EXPECT_EQ(*step.arm, 0);
  EXPECT_EQ(s.armed(), 1);  // still planned
  step = s.update(at_s(kMidnight2017 - 19), true, votes(1, 1), false);
  EXPECT_FALSE(step.arm);
  step = s.update(at_s(kMidnight2017 - 18, 400000000), true, votes(1, 1), false);
  ASSERT_TRUE(step.arm);
  EXPECT_EQ(*step.arm, 1);
  EXPECT_NE(step.log.find("armed again after a step"), std::string::npos);
  EXPECT_FALSE(s.rearm_at());
  // Nothing armed, or another mode: a step changes nothing.
  LeapSchedule step_mode(LeapMode::step, 36);
  step_mode.set_table(table_until_2027(), "");
  step_mode.update(at_s(kMidnight2017 - 30), true, votes(1, 1), false);
  step_mode.on_clock_stepped(at_s(kMidnight2017 - 20));
  EXPECT_FALSE(step_mode.rearm_at());
}

TEST(LeapScheduleTest, ModeNames) {
  for (LeapMode m : {LeapMode::system, LeapMode::step, LeapMode::slew, LeapMode::ignore})
    EXPECT_EQ(parse_leap_mode(to_string(m)), m);
  EXPECT_FALSE(parse_leap_mode("smear"));
}

}  // namespace
}  // namespace taid::timekeeping
