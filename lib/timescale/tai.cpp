// TAI → UTC with the kernel's TAI offset; the leap-second rules are documented in tai.hpp.
#include "timescale/tai.hpp"

#include "clock/clock_driver.hpp"

namespace taid::timescale {
namespace {

constexpr int64_t kNsPerS = 1000000000;
constexpr int64_t kSecondsPerDay = 86400;

}  // namespace

Result<int32_t> KernelTaiOffset::tai_offset_s() {
  // The clock library's read-only adjtimex read-out is the one place that asks the kernel.
  auto state = clock::read_kernel_time_state();
  if (!state)
    return Error{state.error().errno_value, "reading the TAI offset: " + state.error().context};
  return state->tai_offset_s;
}

TaiTime leap_change_instant(TaiTime near, int32_t from_s, int32_t to_s) {
  // The UTC midnight nearest the stamp, on the scale before the change.
  const int64_t utc_s = floor_div(near.tai_ns() - int64_t{from_s} * kNsPerS, kNsPerS);
  const int64_t midnight_s = floor_div(utc_s + kSecondsPerDay / 2, kSecondsPerDay) * kSecondsPerDay;
  // Insertion: realtime steps back when it reaches M, i.e. at TAI M + from.
  // Deletion: realtime jumps forward when it reaches M − 1, i.e. at TAI M − 1 + from.
  const int64_t change_s = to_s > from_s ? midnight_s + from_s : midnight_s - 1 + from_s;
  return TaiTime::from_tai_ns(change_s * kNsPerS);
}

int32_t applied_tai_offset(TaiTime stamp, int32_t first_s, int32_t second_s) {
  if (first_s != second_s && std::abs(int64_t{second_s} - int64_t{first_s}) == 1)
    return stamp < leap_change_instant(stamp, first_s, second_s) ? first_s : second_s;
  // Not a leap (equal, or a step set at an unknown instant after the stamp): the first.
  return first_s;
}

Result<UtcTime> utc_from_tai(TaiTime stamp, TaiOffsetSource& source) {
  const Result<int32_t> first = source.tai_offset_s();
  if (!first) return first.error();
  const Result<int32_t> second = source.tai_offset_s();
  if (!second) return second.error();
  return stamp.to_utc(Duration::from_s(applied_tai_offset(stamp, *first, *second)));
}

}  // namespace taid::timescale
