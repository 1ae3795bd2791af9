// Tests for the kernel state read-out (decode_timex on hand-made values, a real read) and the
// observe-only NullClockDriver. Nothing here writes to the clock: the real read uses modes = 0.
#include <sys/timex.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "clock/clock_driver.hpp"
#include "clock/null_driver.hpp"

namespace taid::clock {
namespace {

using Names = std::vector<std::string>;

TEST(DecodeTimex, NanoModeTakesOffsetAndTimeInNanoseconds) {
  ::timex tx{};
  tx.status = STA_NANO;
  tx.offset = 1500;
  tx.time.tv_sec = 1700000000;
  tx.time.tv_usec = 123456789;  // nanoseconds under STA_NANO
  const KernelTimeState s = decode_timex(tx, TIME_OK);
  EXPECT_EQ(s.offset, Duration::from_ns(1500));
  EXPECT_EQ(s.time, UtcTime::from_unix_ns(1700000000123456789));
}

TEST(DecodeTimex, MicroModeConvertsOffsetAndTimeToNanoseconds) {
  ::timex tx{};
  tx.status = 0;
  tx.offset = -1500;
  tx.time.tv_sec = 1700000000;
  tx.time.tv_usec = 123456;
  const KernelTimeState s = decode_timex(tx, TIME_OK);
  EXPECT_EQ(s.offset, Duration::from_us(-1500));
  EXPECT_EQ(s.time, UtcTime::from_unix_ns(1700000000123456000));
}

TEST(DecodeTimex, ScaledPpmBecomesPpb) {
  ::timex tx{};
  tx.freq = 65536 * 12;
  tx.tolerance = 65536 * 500;  // the kernel's MAXFREQ: 500 ppm
  EXPECT_DOUBLE_EQ(decode_timex(tx, TIME_OK).frequency_ppb, 12000.0);
  EXPECT_DOUBLE_EQ(decode_timex(tx, TIME_OK).tolerance_ppb, 500000.0);
  tx.freq = -65536 * 5 - 32768;  // -5.5 ppm: fractions of a ppm survive
  EXPECT_DOUBLE_EQ(decode_timex(tx, TIME_OK).frequency_ppb, -5500.0);
  tx.freq = 1;  // one unit is 1000/65536 ppb
  EXPECT_DOUBLE_EQ(decode_timex(tx, TIME_OK).frequency_ppb, 1000.0 / 65536.0);
}

TEST(DecodeTimex, CopiesTheRemainingFields) {
  ::timex tx{};
  tx.maxerror = 16000000;  // microseconds: the kernel's NTP_PHASE_LIMIT after 16 s unsynced
  tx.esterror = 250;
  tx.constant = 2;
  tx.precision = 1;
  tx.tai = 37;
  tx.tick = 10000;
  const KernelTimeState s = decode_timex(tx, TIME_WAIT);
  EXPECT_EQ(s.clock_state, TIME_WAIT);
  EXPECT_EQ(s.max_error, Duration::from_s(16));
  EXPECT_EQ(s.est_error, Duration::from_us(250));
  EXPECT_EQ(s.time_constant, 2);
  EXPECT_EQ(s.precision, Duration::from_us(1));
  EXPECT_EQ(s.tai_offset_s, 37);
  EXPECT_EQ(s.tick_us, 10000);
}

TEST(KernelTimeState, StatusFlagNames) {
  KernelTimeState s;
  EXPECT_EQ(s.status_flag_names(), Names{});
  s.status = STA_PLL | STA_UNSYNC | STA_NANO;
  EXPECT_EQ(s.status_flag_names(), (Names{"PLL", "UNSYNC", "NANO"}));
  s.status = 0xffff;
  EXPECT_EQ(
      s.status_flag_names(),
      (Names{"PLL", "PPSFREQ", "PPSTIME", "FLL", "INS", "DEL", "UNSYNC", "FREQHOLD", "PPSSIGNAL",
             "PPSJITTER", "PPSWANDER", "PPSERROR", "CLOCKERR", "NANO", "MODE", "CLK"}));
  s.status = STA_INS | STA_CLK;
  EXPECT_EQ(s.status_flag_names(), (Names{"INS", "CLK"}));
}

TEST(KernelTimeState, ClockStateNames) {
  KernelTimeState s;
  const std::vector<std::pair<int, std::string>> cases{
      {TIME_OK, "TIME_OK"},   {TIME_INS, "TIME_INS"},   {TIME_DEL, "TIME_DEL"},
      {TIME_OOP, "TIME_OOP"}, {TIME_WAIT, "TIME_WAIT"}, {TIME_ERROR, "TIME_ERROR"},
      {42, "unknown(42)"},    {-1, "unknown(-1)"}};
  for (const auto& [state, name] : cases) {
    s.clock_state = state;
    EXPECT_EQ(s.clock_state_name(), name) << state;
  }
}

TEST(KernelTimeState, SynchronizedNeedsUnsyncClearAndNoTimeError) {
  KernelTimeState s;
  s.clock_state = TIME_OK;
  s.status = STA_PLL;
  EXPECT_TRUE(s.synchronized());
  s.status = STA_PLL | STA_UNSYNC;
  EXPECT_FALSE(s.synchronized());
  s.status = STA_PLL;
  s.clock_state = TIME_ERROR;
  EXPECT_FALSE(s.synchronized());
  s.clock_state = TIME_INS;  // a pending leap second is still synchronized
  EXPECT_TRUE(s.synchronized());
}

TEST(ReadKernelTimeState, ReadsThisMachine) {
  const auto s = read_kernel_time_state();
  ASSERT_TRUE(s.ok()) << s.error().message();
  EXPECT_LT((s->time - realtime_now()).abs(), Duration::from_s(1));
  EXPECT_GE(s->clock_state, TIME_OK);
  EXPECT_LE(s->clock_state, TIME_ERROR);
  EXPECT_GT(s->tick_us, 0);
  EXPECT_GT(s->tolerance_ppb, 0.0);
}

TEST(NullClockDriver, ReadsTheRealClock) {
  NullClockDriver driver;
  EXPECT_EQ(driver.name(), "null");
  EXPECT_LT((driver.now() - realtime_now()).abs(), Duration::from_s(1));
  const auto kernel = read_kernel_time_state();
  const auto freq = driver.frequency_ppb();
  ASSERT_TRUE(kernel.ok() && freq.ok());
  EXPECT_DOUBLE_EQ(*freq, kernel->frequency_ppb);
  ASSERT_TRUE(driver.state().ok());
  EXPECT_EQ(driver.suppressed_writes(), 0U);
}

// Every kind of write, with values the kernel would visibly keep if one got through.
void write_everything(NullClockDriver& driver, double current_ppb, Result<double>& applied) {
  applied = driver.set_frequency_ppb(current_ppb + 12345.0);
  EXPECT_TRUE(driver.step(Duration::from_ms(250)).ok());
  EXPECT_TRUE(driver.set_leap(LeapState::insert).ok());
  EXPECT_TRUE(driver
                  .set_sync_status(SyncStatus{.synchronized = true,
                                              .max_error = Duration::from_ms(1),
                                              .est_error = Duration::from_us(10)})
                  .ok());
  EXPECT_TRUE(driver.set_tai_offset(37).ok());
}

TEST(NullClockDriver, WritesLeaveTheKernelUntouchedAndAreCounted) {
  NullClockDriver driver;
  // Another time daemon on the host may legitimately move the kernel state between our reads;
  // retry a few times so only a change we caused every time fails the test.
  bool unchanged = false;
  for (int attempt = 0; attempt < 3 && !unchanged; ++attempt) {
    const auto before = read_kernel_time_state();
    ASSERT_TRUE(before.ok()) << before.error().message();
    Result<double> applied = 0.0;
    write_everything(driver, before->frequency_ppb, applied);
    const auto after = read_kernel_time_state();
    ASSERT_TRUE(after.ok()) << after.error().message();
    ASSERT_TRUE(applied.ok()) << applied.error().message();
    // The frequency "applied" is the one the kernel kept, never the one requested.
    EXPECT_NE(*applied, before->frequency_ppb + 12345.0);
    unchanged = before->frequency_ppb == after->frequency_ppb && *applied == after->frequency_ppb &&
                before->status == after->status && before->tai_offset_s == after->tai_offset_s;
    EXPECT_EQ(driver.suppressed_writes(), 5U * static_cast<uint64_t>(attempt + 1));
  }
  EXPECT_TRUE(unchanged);
}

}  // namespace
}  // namespace taid::clock
