// TAI → UTC conversion with the kernel's TAI − UTC offset, sound across a leap second.
//
// Sign: offset = TAI − UTC in whole seconds (37 since 2017), so UTC = TAI − offset and
// TAI = UTC + offset. The kernel keeps it (adjtimex `tai`, CLOCK_TAI = CLOCK_REALTIME + offset);
// it is 0 until some daemon sets it, and then CLOCK_TAI simply equals CLOCK_REALTIME.
//
// The leap-second edge. CLOCK_TAI runs on continuously; the kernel changes the offset, and steps
// CLOCK_REALTIME, only at a UTC midnight M (unix seconds, M % 86400 == 0):
//   insertion (offset o → o + 1): at TAI M + o, CLOCK_REALTIME goes back from M to M − 1,
//     so 23:59:59 is repeated (POSIX has no 23:59:60);
//   deletion (offset o → o − 1): at TAI M − 1 + o, CLOCK_REALTIME jumps from M − 1 to M,
//     so 23:59:59 never happens.
// A stamp must be converted with the offset in force *when it was taken*, and a stamp is always
// taken before it is converted (it comes from a packet that has already arrived). So
// utc_from_tai() reads the offset twice, o1 then o2:
//   - o1 == o2: nothing changed while we looked; apply it.
//   - o1 != o2: the offset changed between the two reads. For a leap (|o2 − o1| == 1) the change
//     instant is known exactly (above, with M the UTC midnight nearest the stamp): a stamp before
//     it gets o1, one at or after it gets o2. Since the stamp predates the call, that is o1 in
//     practice; the comparison keeps the function right for any stamp within 12 h of the leap.
//     Any other change (e.g. a daemon setting 0 → 37 at start) happens at an instant we cannot
//     know, later than the first read and thus later than the stamp: apply o1.
// What two reads cannot see: a change between the moment the stamp was taken and the first read.
// That only matters for a stamp taken just before a leap and converted just after it, i.e. the
// time between the packet's arrival and its conversion (microseconds to milliseconds in taid)
// once per leap second; such a stamp comes out 1 s early (insertion) or 1 s late (deletion).
// Convert promptly; a caller that must be exact there can keep a reading taken before the stamp.
#pragma once

#include <cstdint>

#include "core/result.hpp"
#include "core/time.hpp"

namespace taid::timescale {

// Where the TAI − UTC offset comes from: the kernel in the daemon, a fake in tests.
class TaiOffsetSource {
 public:
  virtual ~TaiOffsetSource() = default;
  // TAI − UTC in whole seconds, as in force at the moment of the call.
  virtual Result<int32_t> tai_offset_s() = 0;
};

// The kernel's offset, read with adjtimex(modes = 0): a read, never a change of the clock.
class KernelTaiOffset final : public TaiOffsetSource {
 public:
  Result<int32_t> tai_offset_s() override;
};

// The TAI instant (ns) at which the kernel switches the offset from `from_s` to `to_s` at the
// UTC midnight nearest `near` (see above). Only meaningful for a leap: |to_s − from_s| == 1.
TaiTime leap_change_instant(TaiTime near, int32_t from_s, int32_t to_s);

// The offset to apply to `stamp`, taken before two reads of the offset gave `first_s` then
// `second_s` (rules above). Callers converting many stamps read once before and once after them
// all (the NTP server per batch).
int32_t applied_tai_offset(TaiTime stamp, int32_t first_s, int32_t second_s);

// UTC of a TAI stamp, with the offset read from `source` (twice; rules above).
Result<UtcTime> utc_from_tai(TaiTime stamp, TaiOffsetSource& source);

}  // namespace taid::timescale
