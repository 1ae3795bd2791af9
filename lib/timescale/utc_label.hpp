// UTC calendar labels ("2016-12-31T23:59:60Z") and UTC ⇄ TAI conversion with a leap table.
//
// A UtcLabel names a UTC second as a clock on the wall shows it, so 23:59:60 exists on a day
// that ends with an inserted leap second, and 23:59:59 does not exist on a day whose last second
// was deleted. POSIX time (UtcTime) cannot name 23:59:60; TAI (TaiTime, as CLOCK_TAI counts) names
// every second once. With M the POSIX midnight after a leap and o the offset before it:
//   insertion: 23:59:59 → TAI M − 1 + o; 23:59:60 → TAI M + o; 00:00:00 → TAI M + o + 1 (= M + o′);
//   deletion:  23:59:58 → TAI M − 2 + o; 00:00:00 → TAI M + o − 1 (= M + o′), the next second.
// Before 1972-01-01 UTC was not an integer number of seconds from TAI: rejected.
// After the table's expiry the last known offset is used; LeapTable::covers says if it is vouched.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/result.hpp"
#include "core/time.hpp"
#include "timescale/leap_table.hpp"

namespace taid::timescale {

struct UtcLabel {
  int64_t year = 1970;
  int month = 1;   // 1..12
  int day = 1;     // 1..31
  int hour = 0;    // 0..23
  int minute = 0;  // 0..59
  int second = 0;  // 0..60 (60 only at 23:59)
  int64_t nanosecond = 0;
  friend bool operator==(const UtcLabel&, const UtcLabel&) = default;
};

// "YYYY-MM-DDTHH:MM:SS[.fraction]Z": four-digit year, 1 to 9 fraction digits, Z required; the
// calendar is checked (2015-02-29 is rejected) and second 60 is accepted only at 23:59.
Result<UtcLabel> parse_utc_label(std::string_view text);
// "2016-12-31T23:59:60Z", or "…:60.123456789Z" (nine digits) when nanosecond ≠ 0.
std::string to_string(const UtcLabel& label);

// No leap logic: the POSIX instant of a label (23:59:60 lands on the next midnight) and back.
UtcTime posix_from_label(const UtcLabel& label);
UtcLabel utc_label_from_posix(UtcTime time);

// TAI of a label. Errors: a label out of range, before the table's first entry (1972), 23:59:60 on
// a day without an inserted leap second, 23:59:59 on a day whose last second was deleted.
Result<TaiTime> tai_from_utc(const UtcLabel& label, const LeapTable& table);
// The label of a TAI instant: 23:59:60.x during an inserted second. Error before the first entry.
Result<UtcLabel> utc_from_tai(TaiTime time, const LeapTable& table);

}  // namespace taid::timescale
