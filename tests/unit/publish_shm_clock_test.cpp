// The shared-memory clock record: ShmClockWriter publishes, the C reader (taid_clock.h) reads.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <taid/taid_clock.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "publish/shm_clock_writer.hpp"

namespace taid::publish {
namespace {

int64_t now_ns(clockid_t id) {
  timespec ts{};
  clock_gettime(id, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// A private directory per test, removed afterwards.
class ShmClockTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "taid-shm-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/clock";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // A synchronized, vouched record that is fresh for 10 s.
  static ClockRecordValues good_values(int64_t as_of_mono_ns) {
    ClockRecordValues v;
    v.as_of_mono_ns = as_of_mono_ns;
    v.bound_ns = 1000;
    v.max_drift_ppb = 1000;
    v.tai_offset_s = 37;
    v.tai_vouched = true;
    v.status = ClockStatus::synchronized;
    v.void_after_mono_ns = now_ns(CLOCK_MONOTONIC) + kValidityNs;
    return v;
  }

  // A writable mapping of the record behind the writer's back, to damage it by hand.
  taid_clock_record* map_writable() {
    int fd = ::open(path_.c_str(), O_RDWR | O_CLOEXEC);
    EXPECT_GE(fd, 0);
    void* p = mmap(nullptr, sizeof(taid_clock_record), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ::close(fd);
    EXPECT_NE(p, MAP_FAILED);
    return static_cast<taid_clock_record*>(p);
  }

  std::string dir_;
  std::string path_;
};

void expect_widest(const taid_interval& i, int32_t status) {
  EXPECT_EQ(i.status, status) << taid_clock_status_name(i.status);
  EXPECT_EQ(i.earliest_tai_ns, INT64_MIN);
  EXPECT_EQ(i.latest_tai_ns, INT64_MAX);
}

TEST(TaidClockIntervalAt, BoundGrowsByDriftTimesAgeRoundedUp) {
  taid_clock_snapshot s{};
  s.as_of_mono_ns = 1'000'000'000;
  s.bound_ns = 5000;
  s.void_after_mono_ns = 100'000'000'000;
  s.max_drift_ppb = 500;
  s.status = TAID_CLOCK_SYNCHRONIZED;
  s.flags = TAID_CLOCK_FLAG_TAI_VOUCHED;
  const uint64_t no_boot_check[2] = {0, 0};
  // 2.5 s at 500 ppb: 1250 ns.
  taid_interval i = taid_clock_interval_at(&s, 7'000'000'000, 3'500'000'000, no_boot_check);
  EXPECT_EQ(i.status, TAID_CLOCK_SYNCHRONIZED);
  EXPECT_EQ(i.earliest_tai_ns, 7'000'000'000 - 6250);
  EXPECT_EQ(i.latest_tai_ns, 7'000'000'000 + 6250);
  // 1 ns at 500 ppb is 0.0000005 ns: rounded up to 1, never down.
  i = taid_clock_interval_at(&s, 7'000'000'000, 1'000'000'001, no_boot_check);
  EXPECT_EQ(i.latest_tai_ns - i.earliest_tai_ns, 2 * 5001);
  // As-of slightly after the reader's monotonic reading (within the slack): age 0.
  i = taid_clock_interval_at(&s, 7'000'000'000, 999'000'000, no_boot_check);
  EXPECT_EQ(i.latest_tai_ns - i.earliest_tai_ns, 2 * 5000);
  // Free running: the same arithmetic, its own status.
  s.status = TAID_CLOCK_FREE_RUNNING;
  i = taid_clock_interval_at(&s, 7'000'000'000, 3'500'000'000, no_boot_check);
  EXPECT_EQ(i.status, TAID_CLOCK_FREE_RUNNING);
  EXPECT_EQ(i.latest_tai_ns, 7'000'000'000 + 6250);
}

TEST(TaidClockIntervalAt, UntrustworthySnapshotsGetTheWidestInterval) {
  taid_clock_snapshot good{};
  good.as_of_mono_ns = 1'000'000'000;
  good.bound_ns = 5000;
  good.void_after_mono_ns = 10'000'000'000;
  good.max_drift_ppb = 500;
  good.status = TAID_CLOCK_SYNCHRONIZED;
  good.flags = TAID_CLOCK_FLAG_TAI_VOUCHED;
  good.boot_id[0] = 1;
  good.boot_id[1] = 2;
  const uint64_t boot[2] = {1, 2};
  const int64_t tai = 7'000'000'000;
  EXPECT_EQ(taid_clock_interval_at(&good, tai, 2'000'000'000, boot).status,
            TAID_CLOCK_SYNCHRONIZED);

  taid_clock_snapshot s = good;
  expect_widest(taid_clock_interval_at(&s, tai, 10'000'000'001, boot), TAID_CLOCK_STALE);
  const uint64_t other_boot[2] = {1, 3};
  expect_widest(taid_clock_interval_at(&s, tai, 2'000'000'000, other_boot), TAID_CLOCK_STALE);
  // As-of 2 ms after the reader's monotonic time: beyond the 1 ms slack.
  expect_widest(taid_clock_interval_at(&s, tai, 998'000'000, boot), TAID_CLOCK_STALE);
  s.flags = 0;
  expect_widest(taid_clock_interval_at(&s, tai, 2'000'000'000, boot), TAID_CLOCK_TAI_UNVOUCHED);
  s = good;
  s.status = TAID_CLOCK_UNKNOWN;
  expect_widest(taid_clock_interval_at(&s, tai, 2'000'000'000, boot), TAID_CLOCK_UNKNOWN);
  s.status = TAID_CLOCK_DISRUPTED;
  expect_widest(taid_clock_interval_at(&s, tai, 2'000'000'000, boot), TAID_CLOCK_DISRUPTED);
  s.status = 4;  // not a status a writer may write
  expect_widest(taid_clock_interval_at(&s, tai, 2'000'000'000, boot), TAID_CLOCK_BAD_RECORD);
  s = good;
  s.max_drift_ppb = 1'000'000'000;
  expect_widest(taid_clock_interval_at(&s, tai, 2'000'000'000, boot), TAID_CLOCK_BAD_RECORD);
  s = good;
  s.bound_ns = -1;
  expect_widest(taid_clock_interval_at(&s, tai, 2'000'000'000, boot), TAID_CLOCK_BAD_RECORD);
  // Extreme as-of values (a damaged record) neither overflow nor give a tight interval.
  s = good;
  s.as_of_mono_ns = INT64_MAX;
  expect_widest(taid_clock_interval_at(&s, tai, -2'000'000'000, boot), TAID_CLOCK_STALE);
  // An age whose drift term would overflow: stale, not a wrapped-around tight bound.
  s = good;
  s.as_of_mono_ns = INT64_MIN / 2;
  s.max_drift_ppb = 999'999'999;
  expect_widest(taid_clock_interval_at(&s, tai, 2'000'000'000, boot), TAID_CLOCK_STALE);
}

TEST(MaxDriftPpb, MaxClockErrorPlusSkewRoundedUpAndCapped) {
  EXPECT_EQ(max_drift_ppb(1, 0), 1000u);  // chrony's default maxclockerror
  EXPECT_EQ(max_drift_ppb(1, 12.2), 1013u);
  EXPECT_EQ(max_drift_ppb(0.5, -3), 500u);  // a negative skew never shrinks it
  EXPECT_EQ(max_drift_ppb(0, 0), 0u);
  EXPECT_EQ(max_drift_ppb(5e6, 0), 999'999'999u);
  EXPECT_EQ(max_drift_ppb(std::nan(""), 0), 999'999'999u);
}

TEST_F(ShmClockTest, PublishThenReadContainsClockTaiWithTheDriftGrownBound) {
  auto writer = ShmClockWriter::open(path_);
  ASSERT_TRUE(writer) << writer.error().message();
  const int64_t as_of = now_ns(CLOCK_MONOTONIC) - 10'000'000'000;  // 10 s ago
  writer->publish(good_values(as_of));

  taid_clock clock{};
  ASSERT_EQ(taid_clock_open(&clock, path_.c_str()), 0);
  const int64_t mono_before = now_ns(CLOCK_MONOTONIC);
  const int64_t tai_before = now_ns(CLOCK_TAI);
  const taid_interval i = taid_now(&clock);
  const int64_t tai_after = now_ns(CLOCK_TAI);
  const int64_t mono_after = now_ns(CLOCK_MONOTONIC);
  taid_clock_close(&clock);

  ASSERT_EQ(i.status, TAID_CLOCK_SYNCHRONIZED) << taid_clock_status_name(i.status);
  // The interval holds the CLOCK_TAI reading taken inside taid_now, in [tai_before, tai_after].
  const int64_t mid = i.earliest_tai_ns + (i.latest_tai_ns - i.earliest_tai_ns) / 2;
  EXPECT_GE(mid, tai_before);
  EXPECT_LE(mid, tai_after);
  EXPECT_LE(i.earliest_tai_ns, tai_after);
  EXPECT_GE(i.latest_tai_ns, tai_before);
  // Half width = 1000 + ceil(1000 ppb × age): age ≥ 10 s (10 000 ns), and at most the later
  // monotonic reading plus the coarse clock's slack (tick + 10 ms: ≤ 20 ns more at 1 ppm).
  const int64_t half = (i.latest_tai_ns - i.earliest_tai_ns) / 2;
  EXPECT_EQ((i.latest_tai_ns - i.earliest_tai_ns) % 2, 0);
  EXPECT_GE(half, 1000 + (mono_before - as_of) / 1'000'000);
  EXPECT_LE(half, 1000 + (mono_after + clock.coarse_slack_ns - as_of) / 1'000'000 + 1);
  EXPECT_LE(clock.coarse_slack_ns, 20'000'000);
}

TEST_F(ShmClockTest, StatusTransitionsAsPublished) {
  auto writer = ShmClockWriter::open(path_);
  ASSERT_TRUE(writer) << writer.error().message();
  taid_clock clock{};
  ASSERT_EQ(taid_clock_open(&clock, path_.c_str()), 0);
  // Freshly opened: unknown until the daemon publishes.
  expect_widest(taid_now(&clock), TAID_CLOCK_UNKNOWN);

  ClockRecordValues v = good_values(now_ns(CLOCK_MONOTONIC));
  writer->publish(v);
  EXPECT_EQ(taid_now(&clock).status, TAID_CLOCK_SYNCHRONIZED);
  v.status = ClockStatus::free_running;
  writer->publish(v);
  taid_interval i = taid_now(&clock);
  EXPECT_EQ(i.status, TAID_CLOCK_FREE_RUNNING);
  EXPECT_LT(i.latest_tai_ns - i.earliest_tai_ns, 1'000'000);
  v.status = ClockStatus::disrupted;
  writer->publish(v);
  expect_widest(taid_now(&clock), TAID_CLOCK_DISRUPTED);
  v.status = ClockStatus::synchronized;
  v.tai_vouched = false;
  writer->publish(v);
  expect_widest(taid_now(&clock), TAID_CLOCK_TAI_UNVOUCHED);
  v.tai_vouched = true;
  writer->publish(v);
  EXPECT_EQ(taid_now(&clock).status, TAID_CLOCK_SYNCHRONIZED);
  EXPECT_EQ(writer->sequence() % 2, 0u);

  // A clean shutdown leaves the file and says unknown at once to readers still mapped.
  auto other = ShmClockWriter::open(dir_ + "/other");
  ASSERT_TRUE(other) << other.error().message();
  *writer = std::move(*other);  // the move assignment closes the first writer
  expect_widest(taid_now(&clock), TAID_CLOCK_UNKNOWN);
  EXPECT_TRUE(std::filesystem::exists(path_));
  taid_clock_close(&clock);
  expect_widest(taid_now(&clock), TAID_CLOCK_ERROR);
}

TEST_F(ShmClockTest, TornStaleAndForeignRecordsAreReportedWithTheWidestInterval) {
  auto writer = ShmClockWriter::open(path_);
  ASSERT_TRUE(writer) << writer.error().message();
  writer->publish(good_values(now_ns(CLOCK_MONOTONIC)));
  taid_clock clock{};
  ASSERT_EQ(taid_clock_open(&clock, path_.c_str()), 0);
  ASSERT_EQ(taid_now(&clock).status, TAID_CLOCK_SYNCHRONIZED);
  taid_clock_record* raw = map_writable();

  // A writer stuck mid-publish (seq odd).
  const uint64_t seq = raw->seq;
  raw->seq = seq + 1;
  expect_widest(taid_now(&clock), TAID_CLOCK_TORN);
  raw->seq = seq;
  EXPECT_EQ(taid_now(&clock).status, TAID_CLOCK_SYNCHRONIZED);

  // Wrong magic, version or size: not a record of ours.
  raw->magic ^= 1;
  expect_widest(taid_now(&clock), TAID_CLOCK_BAD_RECORD);
  raw->magic ^= 1;
  raw->version = 2;
  expect_widest(taid_now(&clock), TAID_CLOCK_BAD_RECORD);
  raw->version = TAID_CLOCK_VERSION;
  raw->size = 64;
  expect_widest(taid_now(&clock), TAID_CLOCK_BAD_RECORD);
  raw->size = sizeof(taid_clock_record);
  EXPECT_EQ(taid_now(&clock).status, TAID_CLOCK_SYNCHRONIZED);

  // Written during another boot.
  raw->boot_id[1] ^= 1;
  expect_widest(taid_now(&clock), TAID_CLOCK_STALE);
  raw->boot_id[1] ^= 1;
  munmap(raw, sizeof(taid_clock_record));

  // Stale: the writer's promise ran out an hour ago (as-of a day back).
  ClockRecordValues old = good_values(now_ns(CLOCK_MONOTONIC) - 86'400'000'000'000);
  old.void_after_mono_ns = now_ns(CLOCK_MONOTONIC) - 3'600'000'000'000;
  writer->publish(old);
  expect_widest(taid_now(&clock), TAID_CLOCK_STALE);
  // From the future: as-of a minute ahead of CLOCK_MONOTONIC.
  ClockRecordValues future = good_values(now_ns(CLOCK_MONOTONIC) + 60'000'000'000);
  future.void_after_mono_ns = future.as_of_mono_ns + kValidityNs;
  writer->publish(future);
  expect_widest(taid_now(&clock), TAID_CLOCK_STALE);
  taid_clock_close(&clock);
}

TEST_F(ShmClockTest, ConcurrentReadersNeverSeeAMixOfTwoPublications) {
  auto writer = ShmClockWriter::open(path_);
  ASSERT_TRUE(writer) << writer.error().message();
  taid_clock clock{};
  ASSERT_EQ(taid_clock_open(&clock, path_.c_str()), 0);

  // Each publication k carries k in every field that can hold it; a mix shows as a mismatch.
  std::atomic<bool> stop{false};
  std::atomic<int64_t> mixed{0}, consistent{0}, torn{0}, distinct{0};
  auto reader = [&] {
    int64_t last = -1;
    while (!stop.load(std::memory_order_relaxed)) {
      taid_clock_snapshot s{};
      const int32_t r = taid_clock_read_snapshot(clock.record, &s);
      if (r == TAID_CLOCK_TORN) {
        torn.fetch_add(1);
        continue;
      }
      if (r != TAID_CLOCK_SYNCHRONIZED) continue;
      const int64_t k = s.as_of_mono_ns;
      if (k == 0) continue;  // the initial unknown record
      const bool same = s.bound_ns == k && s.void_after_mono_ns == 2 * k &&
                        s.max_drift_ppb == static_cast<uint32_t>(k % 1'000'000) &&
                        s.tai_offset_s == static_cast<int32_t>(k % 100'000) &&
                        s.status == static_cast<uint32_t>(1 + k % 2) &&
                        s.flags == static_cast<uint32_t>(k % 2);
      (same ? consistent : mixed).fetch_add(1);
      if (k != last) distinct.fetch_add(1);
      last = k;
    }
  };
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t) readers.emplace_back(reader);
  // Until the readers have seen 10 000 publications change under them, at most 3 s: on an idle
  // machine that takes milliseconds; on this shared 2-core machine under a build, longer.
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  int64_t k = 0;
  while (distinct.load(std::memory_order_relaxed) < 10'000 &&
         std::chrono::steady_clock::now() < end) {
    ++k;
    ClockRecordValues v;
    v.as_of_mono_ns = k;
    v.bound_ns = k;
    v.void_after_mono_ns = 2 * k;
    v.max_drift_ppb = static_cast<uint32_t>(k % 1'000'000);
    v.tai_offset_s = static_cast<int32_t>(k % 100'000);
    v.status = k % 2 == 0 ? ClockStatus::synchronized : ClockStatus::free_running;
    v.tai_vouched = k % 2 == 1;
    writer->publish(v);
  }
  stop = true;
  for (auto& t : readers) t.join();
  taid_clock_close(&clock);

  EXPECT_EQ(mixed.load(), 0);
  EXPECT_GT(consistent.load(), 1000);
  EXPECT_GE(distinct.load(), 20) << "the readers must have overlapped many publications";
  RecordProperty("publications", std::to_string(k));
  RecordProperty("torn_reads", std::to_string(torn.load()));
  RecordProperty("distinct_seen", std::to_string(distinct.load()));
}

TEST_F(ShmClockTest, ReaderRefusesMissingSmallAndWritableFiles) {
  taid_clock clock{};
  EXPECT_EQ(taid_clock_open(&clock, (dir_ + "/none").c_str()), -ENOENT);
  EXPECT_EQ(clock.record, nullptr);
  expect_widest(taid_now(&clock), TAID_CLOCK_ERROR);
  {
    std::ofstream small(path_);
    small << "short";
  }
  chmod(path_.c_str(), 0644);
  EXPECT_EQ(taid_clock_open(&clock, path_.c_str()), -EINVAL);
  auto writer = ShmClockWriter::open(path_);  // replaces the short file
  ASSERT_TRUE(writer) << writer.error().message();
  ASSERT_EQ(chmod(path_.c_str(), 0666), 0);
  EXPECT_EQ(taid_clock_open(&clock, path_.c_str()), -EPERM);
  ASSERT_EQ(chmod(path_.c_str(), 0644), 0);
  EXPECT_EQ(taid_clock_open(&clock, path_.c_str()), 0);
  taid_clock_close(&clock);
}

TEST_F(ShmClockTest, WriterErrorsNameThePath) {
  auto w = ShmClockWriter::open(dir_ + "/no/such/dir/clock");
  ASSERT_FALSE(w);
  EXPECT_NE(w.error().message().find(dir_ + "/no/such/dir/clock"), std::string::npos)
      << w.error().message();
  EXPECT_EQ(w.error().errno_value, ENOENT);
  std::filesystem::create_directory(dir_ + "/adir");
  auto d = ShmClockWriter::open(dir_ + "/adir");
  ASSERT_FALSE(d);
  EXPECT_NE(d.error().message().find(dir_ + "/adir"), std::string::npos) << d.error().message();
  EXPECT_FALSE(ShmClockWriter::open(""));
}

TEST_F(ShmClockTest, ASecondWriterIsRefusedWhileTheFirstHoldsTheRecord) {
  auto first = ShmClockWriter::open(path_);
  ASSERT_TRUE(first) << first.error().message();
  first->publish(good_values(now_ns(CLOCK_MONOTONIC)));
  auto second = ShmClockWriter::open(path_);
  ASSERT_FALSE(second);
  EXPECT_NE(second.error().message().find(path_ + ": locked by another writer"), std::string::npos)
      << second.error().message();
  // The refused writer changed nothing.
  taid_clock clock{};
  ASSERT_EQ(taid_clock_open(&clock, path_.c_str()), 0);
  EXPECT_EQ(taid_now(&clock).status, TAID_CLOCK_SYNCHRONIZED);
  auto elsewhere = ShmClockWriter::open(dir_ + "/elsewhere");
  ASSERT_TRUE(elsewhere) << elsewhere.error().message();
  *first = std::move(*elsewhere);  // closes the first record, releasing its lock
  EXPECT_TRUE(ShmClockWriter::open(path_)) << "the lock goes with the first writer";
  taid_clock_close(&clock);
}

TEST_F(ShmClockTest, RestartReusesTheFileInPlaceSoMappedReadersCarryOn) {
  struct stat first {};
  taid_clock clock{};
  {
    auto w1 = ShmClockWriter::open(path_);
    ASSERT_TRUE(w1) << w1.error().message();
    w1->publish(good_values(now_ns(CLOCK_MONOTONIC)));
    ASSERT_EQ(stat(path_.c_str(), &first), 0);
    EXPECT_EQ(first.st_mode & 0777, 0644u);
    EXPECT_EQ(first.st_size, static_cast<off_t>(sizeof(taid_clock_record)));
    ASSERT_EQ(taid_clock_open(&clock, path_.c_str()), 0);
    EXPECT_EQ(taid_now(&clock).status, TAID_CLOCK_SYNCHRONIZED);
  }
  expect_widest(taid_now(&clock), TAID_CLOCK_UNKNOWN);  // the writer closed
  auto w2 = ShmClockWriter::open(path_);
  ASSERT_TRUE(w2) << w2.error().message();
  struct stat second {};
  ASSERT_EQ(stat(path_.c_str(), &second), 0);
  EXPECT_EQ(second.st_ino, first.st_ino);
  w2->publish(good_values(now_ns(CLOCK_MONOTONIC)));
  EXPECT_EQ(taid_now(&clock).status, TAID_CLOCK_SYNCHRONIZED);  // the old mapping, new data
  EXPECT_EQ(clock.record->writer_pid, static_cast<uint32_t>(getpid()));
  taid_clock_close(&clock);
}

TEST_F(ShmClockTest, ASymlinkOrForeignFileIsReplacedNotFollowedOrTruncated) {
  const std::string target = dir_ + "/precious";
  {
    std::ofstream f(target);
    f << "do not touch";
  }
  ASSERT_EQ(symlink(target.c_str(), path_.c_str()), 0);
  auto w = ShmClockWriter::open(path_);
  ASSERT_TRUE(w) << w.error().message();
  std::ifstream f(target);
  std::string content;
  std::getline(f, content);
  EXPECT_EQ(content, "do not touch");
  struct stat st {};
  ASSERT_EQ(lstat(path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  // No temporary file left beside it.
  int entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir_)) {
    (void)e;
    ++entries;
  }
  EXPECT_EQ(entries, 2);
}

}  // namespace
}  // namespace taid::publish
