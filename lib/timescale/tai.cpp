// TAI → UTC with the kernel's TAI offset; the leap-second rules are documented in tai.hpp.
#include "timescale/tai.hpp"

#include <sys/timex.h>

#include <cstdlib>

namespace taid::timescale {
namespace {

constexpr int64_t kNsPerS = 1000000000;
constexpr int64_t kSecondsPerDay = 86400;

// Floor division, so instants before 1970 land on the right day too.
int64_t floor_div(int64_t a, int64_t b) {
  const int64_t q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

Duration offset_duration(int32_t offset_s) { return Duration::from_s(offset_s); }

}  // namespace

Result<int32_t> KernelTaiOffset::tai_offset_s() {
  ::timex tx{};
  tx.modes = 0;  // read only: any mode bit would change the clock
  if (::adjtimex(&tx) == -1) return Error::from_errno("reading the TAI offset (adjtimex)");
  return static_cast<int32_t>(tx.tai);
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

Result<UtcTime> utc_from_tai(TaiTime stamp, TaiOffsetSource& source) {
  const Result<int32_t> first = source.tai_offset_s();
  if (!first) return first.error();
  const Result<int32_t> second = source.tai_offset_s();
  if (!second) return second.error();
  const int32_t o1 = *first;
  const int32_t o2 = *second;

  int32_t applied = o1;
  if (o1 != o2 && std::abs(int64_t{o2} - int64_t{o1}) == 1) {
    applied = stamp < leap_change_instant(stamp, o1, o2) ? o1 : o2;
  }
  // Not a leap (o1 == o2, or a step set at an unknown instant after the stamp): o1.
  return stamp.to_utc(offset_duration(applied));
}

}  // namespace taid::timescale
