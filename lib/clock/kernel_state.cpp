// Reads the kernel's NTP state (adjtimex with modes = 0) and decodes it into our units and names.
#include <sys/timex.h>

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "clock/clock_driver.hpp"

namespace taid::clock {
namespace {

// timex.freq and timex.tolerance are "scaled ppm": ppm * 2^16.
double scaled_ppm_to_ppb(long scaled_ppm) {
  return static_cast<double>(scaled_ppm) * 1000.0 / 65536.0;
}

// Every STA_* bit in <sys/timex.h> order, named as the kernel documentation names them.
constexpr std::array<std::pair<uint32_t, const char*>, 16> kStatusFlags{{
    {STA_PLL, "PLL"},
    {STA_PPSFREQ, "PPSFREQ"},
    {STA_PPSTIME, "PPSTIME"},
    {STA_FLL, "FLL"},
    {STA_INS, "INS"},
    {STA_DEL, "DEL"},
    {STA_UNSYNC, "UNSYNC"},
    {STA_FREQHOLD, "FREQHOLD"},
    {STA_PPSSIGNAL, "PPSSIGNAL"},
    {STA_PPSJITTER, "PPSJITTER"},
    {STA_PPSWANDER, "PPSWANDER"},
    {STA_PPSERROR, "PPSERROR"},
    {STA_CLOCKERR, "CLOCKERR"},
    {STA_NANO, "NANO"},
    {STA_MODE, "MODE"},
    {STA_CLK, "CLK"},
}};

}  // namespace

bool KernelTimeState::synchronized() const {
  return (status & STA_UNSYNC) == 0 && clock_state != TIME_ERROR;
}

std::vector<std::string> KernelTimeState::status_flag_names() const {
  std::vector<std::string> names;
  for (const auto& [bit, name] : kStatusFlags) {
    if ((status & bit) != 0) names.emplace_back(name);
  }
  return names;
}

std::string KernelTimeState::clock_state_name() const {
  switch (clock_state) {
    case TIME_OK:
      return "TIME_OK";
    case TIME_INS:
      return "TIME_INS";
    case TIME_DEL:
      return "TIME_DEL";
    case TIME_OOP:
      return "TIME_OOP";
    case TIME_WAIT:
      return "TIME_WAIT";
    case TIME_ERROR:
      return "TIME_ERROR";
    default:
      return "unknown(" + std::to_string(clock_state) + ")";
  }
}

KernelTimeState decode_timex(const ::timex& tx, int clock_state) {
  KernelTimeState s;
  s.clock_state = clock_state;
  s.status = static_cast<uint32_t>(tx.status);
  // With STA_NANO the kernel reports offset and time.tv_usec in nanoseconds, else microseconds.
  const bool nano = (s.status & STA_NANO) != 0;
  s.offset = nano ? Duration::from_ns(tx.offset) : Duration::from_us(tx.offset);
  s.frequency_ppb = scaled_ppm_to_ppb(tx.freq);
  s.max_error = Duration::from_us(tx.maxerror);
  s.est_error = Duration::from_us(tx.esterror);
  s.time_constant = tx.constant;
  s.precision = Duration::from_us(tx.precision);
  s.tolerance_ppb = scaled_ppm_to_ppb(tx.tolerance);
  s.tai_offset_s = tx.tai;
  s.tick_us = tx.tick;
  const int64_t sub_second_ns = nano ? int64_t{tx.time.tv_usec} : int64_t{tx.time.tv_usec} * 1000;
  s.time = UtcTime::from_unix_ns(int64_t{tx.time.tv_sec} * 1000000000 + sub_second_ns);
  return s;
}

Result<KernelTimeState> read_kernel_time_state() {
  ::timex tx{};
  tx.modes = 0;  // read only: any mode bit would change the clock
  const int clock_state = ::adjtimex(&tx);
  if (clock_state == -1) return Error::from_errno("adjtimex(modes=0)");
  return decode_timex(tx, clock_state);
}

}  // namespace taid::clock
