// Tests for TAI → UTC: the sign, the choice of offset when it changes between reads (leap
// seconds, a daemon setting it), error propagation, and a real read-only kernel offset read.
#include <time.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <utility>

#include <gtest/gtest.h>

#include "core/result.hpp"
#include "core/time.hpp"
#include "timescale/tai.hpp"

namespace taid::timescale {
namespace {

constexpr int64_t kNs = 1000000000;
// 2017-01-01T00:00:00Z, the last real leap second (an insertion, 36 → 37).
constexpr int64_t kMidnight2017 = 1483228800;

// Answers with scripted offsets (or errors), one per read, and counts the reads.
class FakeOffsetSource final : public TaiOffsetSource {
 public:
  explicit FakeOffsetSource(std::deque<Result<int32_t>> answers) : answers_(std::move(answers)) {}
  Result<int32_t> tai_offset_s() override {
    ++reads_;
    if (answers_.empty()) return Error::plain("fake: no more answers");
    Result<int32_t> next = answers_.front();
    if (answers_.size() > 1) answers_.pop_front();  // the last answer repeats
    return next;
  }
  int reads() const { return reads_; }

 private:
  std::deque<Result<int32_t>> answers_;
  int reads_ = 0;
};

TaiTime tai_s(int64_t s, int64_t ns = 0) { return TaiTime::from_tai_ns(s * kNs + ns); }
UtcTime utc_s(int64_t s, int64_t ns = 0) { return UtcTime::from_unix_ns(s * kNs + ns); }

TEST(UtcFromTai, SubtractsTheOffset) {
  FakeOffsetSource source({37});
  const Result<UtcTime> utc = utc_from_tai(tai_s(1700000037, 123), source);
  ASSERT_TRUE(utc.ok()) << utc.error().message();
  EXPECT_EQ(*utc, utc_s(1700000000, 123));  // UTC = TAI − offset
  EXPECT_EQ(source.reads(), 2);
}

TEST(UtcFromTai, ZeroOffsetIsIdentity) {
  FakeOffsetSource source({0});
  const Result<UtcTime> utc = utc_from_tai(tai_s(1700000000, 5), source);
  ASSERT_TRUE(utc.ok());
  EXPECT_EQ(*utc, utc_s(1700000000, 5));
}

TEST(LeapChangeInstant, InsertionAndDeletionFollowTheKernel) {
  // Insertion 36 → 37 at 2017-01-01: realtime steps back from M to M − 1 at TAI M + 36.
  EXPECT_EQ(leap_change_instant(tai_s(kMidnight2017 + 36 - 5), 36, 37), tai_s(kMidnight2017 + 36));
  // Found from a stamp on either side of the midnight, up to half a day away.
  EXPECT_EQ(leap_change_instant(tai_s(kMidnight2017 - 43000), 36, 37), tai_s(kMidnight2017 + 36));
  EXPECT_EQ(leap_change_instant(tai_s(kMidnight2017 + 43000), 36, 37), tai_s(kMidnight2017 + 36));
  // Deletion 37 → 36: realtime jumps from M − 1 to M at TAI M − 1 + 37.
  EXPECT_EQ(leap_change_instant(tai_s(kMidnight2017 + 30), 37, 36), tai_s(kMidnight2017 + 36));
}

TEST(UtcFromTai, InsertionBetweenReadsKeepsTheOldOffsetForAnEarlierStamp) {
  // The stamp was taken 10 ms before the leap; the leap happened between our two reads.
  const TaiTime stamp = tai_s(kMidnight2017 + 36, -10000000);
  FakeOffsetSource source({36, 37});
  const Result<UtcTime> utc = utc_from_tai(stamp, source);
  ASSERT_TRUE(utc.ok());
  EXPECT_EQ(*utc, utc_s(kMidnight2017, -10000000));  // 23:59:59.990, not 23:59:58.990
}

TEST(UtcFromTai, InsertionBetweenReadsAppliesTheNewOffsetFromTheChangeOn) {
  // At the change instant itself realtime shows the repeated 23:59:59 (= M − 1).
  FakeOffsetSource at_change({36, 37});
  const Result<UtcTime> first = utc_from_tai(tai_s(kMidnight2017 + 36), at_change);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(*first, utc_s(kMidnight2017 - 1));
  // One nanosecond earlier is still the first 23:59:59.999999999.
  FakeOffsetSource before({36, 37});
  const Result<UtcTime> last_old = utc_from_tai(tai_s(kMidnight2017 + 36, -1), before);
  ASSERT_TRUE(last_old.ok());
  EXPECT_EQ(*last_old, utc_s(kMidnight2017, -1));
  // A second after the change realtime is back at M.
  FakeOffsetSource after({36, 37});
  const Result<UtcTime> later = utc_from_tai(tai_s(kMidnight2017 + 37), after);
  ASSERT_TRUE(later.ok());
  EXPECT_EQ(*later, utc_s(kMidnight2017));
}

TEST(UtcFromTai, DeletionBetweenReadsSwitchesAtTheDeletedSecond) {
  // Deletion 37 → 36 at TAI M − 1 + 37: just before it realtime shows 23:59:58.999...
  FakeOffsetSource before({37, 36});
  const Result<UtcTime> old_side = utc_from_tai(tai_s(kMidnight2017 + 36, -1), before);
  ASSERT_TRUE(old_side.ok());
  EXPECT_EQ(*old_side, utc_s(kMidnight2017 - 1, -1));
  // ... and from it on realtime shows M: 23:59:59 never happens.
  FakeOffsetSource after({37, 36});
  const Result<UtcTime> new_side = utc_from_tai(tai_s(kMidnight2017 + 36), after);
  ASSERT_TRUE(new_side.ok());
  EXPECT_EQ(*new_side, utc_s(kMidnight2017));
}

TEST(UtcFromTai, NonLeapChangeBetweenReadsUsesTheFirstRead) {
  // A daemon setting the offset 0 → 37 after the stamp was taken: the stamp is on the old scale.
  FakeOffsetSource source({0, 37});
  const Result<UtcTime> utc = utc_from_tai(tai_s(1700000000), source);
  ASSERT_TRUE(utc.ok());
  EXPECT_EQ(*utc, utc_s(1700000000));
}

TEST(UtcFromTai, ErrorsOfEitherReadArePassedOn) {
  FakeOffsetSource first_fails({Error{EPERM, "first"}});
  const Result<UtcTime> a = utc_from_tai(tai_s(1), first_fails);
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.error().errno_value, EPERM);
  EXPECT_EQ(a.error().context, "first");

  FakeOffsetSource second_fails({37, Error{EIO, "second"}});
  const Result<UtcTime> b = utc_from_tai(tai_s(1), second_fails);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.error().context, "second");
}

TEST(KernelTaiOffset, MatchesTheGapBetweenClockTaiAndRealtime) {
  // Read-only (adjtimex with modes = 0). Retried in the unlikely event a second boundary with an
  // offset change falls between the readings.
  KernelTaiOffset kernel;
  bool matched = false;
  for (int attempt = 0; attempt < 5 && !matched; ++attempt) {
    const Result<int32_t> offset = kernel.tai_offset_s();
    ASSERT_TRUE(offset.ok()) << offset.error().message();
    timespec tai{};
    timespec real{};
    clock_gettime(CLOCK_TAI, &tai);
    clock_gettime(CLOCK_REALTIME, &real);
    const int64_t gap_ns = (tai.tv_sec - real.tv_sec) * kNs + (tai.tv_nsec - real.tv_nsec);
    // The two clock reads are a few µs apart; the offset is whole seconds.
    matched = std::llabs(gap_ns - int64_t{*offset} * kNs) < kNs / 100;
  }
  EXPECT_TRUE(matched);
}

TEST(KernelTaiOffset, ConvertsANowStampToRealtime) {
  KernelTaiOffset kernel;
  timespec tai{};
  clock_gettime(CLOCK_TAI, &tai);
  const Result<UtcTime> utc =
      utc_from_tai(TaiTime::from_tai_ns(tai.tv_sec * kNs + tai.tv_nsec), kernel);
  ASSERT_TRUE(utc.ok()) << utc.error().message();
  timespec real{};
  clock_gettime(CLOCK_REALTIME, &real);
  const Duration age = UtcTime::from_timespec(real) - *utc;
  EXPECT_GE(age, Duration());
  EXPECT_LT(age, Duration::from_ms(100));
}

}  // namespace
}  // namespace taid::timescale
