// Truth: the simulation's true time scales. True time t (ns since the start) is continuous and
// TAI-like; the true POSIX UTC at t follows the true leap seconds as CLOCK_REALTIME would count
// them on a perfect clock: an inserted second repeats 23:59:59, a deleted one is skipped.
//
// TAI(t) = start + tai_offset_s (the offset in force at the start) + t. The POSIX UTC at t is
// TAI(t) − offset(t), where the offset changes by the leap's direction at the instant the leap
// begins: for an insertion at the midnight M (POSIX s) with offset n before it, at TAI M + n —
// the inserted second 23:59:60 then reads M − 1 again (TAI M + n − (n + 1)); for a deletion, at
// TAI M − 1 + n, where 23:59:59 would have begun, UTC reads M.
//   2016-12-31T23:59:59Z (POSIX M − 1), offset 36 → TAI M + 35
//   2016-12-31T23:59:60Z (POSIX M − 1 again)     → TAI M + 36, offset 37 from here on
//   2017-01-01T00:00:00Z (POSIX M)               → TAI M + 37
#pragma once

#include <cstdint>
#include <vector>

#include "core/time.hpp"

namespace taid::sim {

// A leap second of the truth: at the end of the UTC day that ends at `midnight`.
struct TrueLeap {
  UtcTime midnight;   // POSIX instant of the 00:00:00 after the leap (a whole day)
  int direction = 1;  // +1: 23:59:60 inserted; −1: 23:59:59 deleted
};

class Truth {
 public:
  // A leap at the instant the offset changes.
  struct Leap {
    UtcTime midnight;
    int direction = 1;
    int64_t t_ns = 0;  // true time the offset changes (the inserted second begins)
    int32_t offset_after_s = 0;
    int64_t day_start_t_ns = 0;  // true time of the POSIX midnight 24 h before `midnight`
    int64_t done_t_ns = 0;       // true time the leap is over (the inserted second ended)
  };

  // `start`: the true POSIX UTC at t = 0; `tai_offset_s`: TAI − UTC in force then; `leaps`: the
  // truth's leap seconds (any order; those over before the start are ignored).
  explicit Truth(UtcTime start, int32_t tai_offset_s = 0, std::vector<TrueLeap> leaps = {});

  UtcTime start() const { return start_; }
  // True TAI at t: continuous.
  TaiTime tai_at(int64_t t_ns) const {
    return TaiTime::from_tai_ns(start_.unix_ns() + int64_t{initial_offset_s_} * kNsPerS + t_ns);
  }
  // TAI − UTC in force at t (the new offset from the first instant of an inserted second).
  int32_t tai_offset_at(int64_t t_ns) const;
  // True POSIX UTC at t (repeats the inserted second, skips the deleted one).
  UtcTime utc_at(int64_t t_ns) const {
    return tai_at(t_ns).to_utc(Duration::from_s(tai_offset_at(t_ns)));
  }
  // True time at which the true POSIX UTC first reads `utc` (before a repeat; during a skipped
  // second, the instant the skip happens).
  int64_t t_of_utc(UtcTime utc) const;

  // The leaps after the start, in order.
  const std::vector<Leap>& leaps() const { return leaps_; }
  int32_t initial_tai_offset_s() const { return initial_offset_s_; }

 private:
  static constexpr int64_t kNsPerS = 1000000000;
  UtcTime start_;
  int32_t initial_offset_s_ = 0;
  std::vector<Leap> leaps_;
};

}  // namespace taid::sim
