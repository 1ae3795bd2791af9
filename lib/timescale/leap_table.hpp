// The leap-second table: TAI − UTC by date, from leap-seconds.list (IERS/NIST/tzdata) or TZif.
//
// Times are POSIX seconds (UTC as CLOCK_REALTIME counts it, no leap seconds: every day has 86400).
// An entry {utc_s, tai_offset_s} says: from the UTC midnight utc_s on, TAI − UTC = tai_offset_s.
// An entry whose offset is one more than the previous one is a leap second inserted at the end of
// the day before utc_s (that day has 23:59:60); one less, a leap second deleted (no 23:59:59).
//
// Sources:
//  - leap-seconds.list: data lines "NTP-SECONDS TAI-UTC # comment" (seconds since 1900), '#$' last
//    update, '#@' expiry, '#h' SHA-1 of the content. The hash covers the digits of the '#$' number,
//    the '#@' number and each data line's two numbers, concatenated in that order without spaces or
//    signs (IERS README; ntpd's leapsec_validate hashes the digits the same way). Its five words
//    may drop leading zeros, so they are compared as five 32-bit numbers. Checked against the
//    tzdata copy: `grep`+`awk`+`sha1sum` reproduce its '#h' (tests/data/leap/README).
//  - TZif (leapsectz right/UTC, tzfile(5)): leap records (occurrence, correction), correction being
//    the leap seconds since 1972 (TAI − UTC = 10 + correction) and occurrence the leap's instant on
//    the "right" scale (POSIX + leaps so far, as zic writes it): M + previous correction for an
//    insertion at midnight M, M − 1 + previous correction for a deletion. The table gets the
//    1972-01-01 entry (offset 10) in front, so right/UTC and leap-seconds.list give the same
//    entries. TZif has no expiry (a v4 file may mark one with a last record that repeats the
//    correction; that is used).
//
// Coverage: the table vouches for an instant from its first entry up to its expiry ('#@'), since a
// leap second not yet announced when the list was written may come after it. A TZif table without
// expiry is trusted for every later instant, as chrony trusts leapsectz: the tz database says the
// same thing without a date; callers that want more can tell by `origin`.
//
// Parsing is sans-IO (text or bytes in, table or error out); read_* read the file (leap_file.cpp).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"

namespace taid::timescale {

inline constexpr int64_t kSecondsPerDay = 86400;

struct LeapEntry {
  int64_t utc_s = 0;         // a POSIX UTC midnight
  int32_t tai_offset_s = 0;  // TAI − UTC from utc_s on
  friend bool operator==(const LeapEntry&, const LeapEntry&) = default;
};

struct LeapTable {
  std::vector<LeapEntry> entries;        // ascending, never empty from the parsers
  std::optional<int64_t> expires_utc_s;  // '#@' as POSIX s (TZif: nullopt unless v4 marks one)
  std::optional<int64_t> updated_utc_s;  // '#$' as POSIX s
  std::string origin;                    // "leap-seconds.list PATH" or "leapsectz PATH"

  // TAI − UTC in force at POSIX second utc_s; nullopt before the first entry. After the expiry
  // it is the last known offset: ask covers() whether the table vouches for it.
  std::optional<int32_t> offset_at(int64_t utc_s) const;
  // The leap second at the end of the UTC day containing utc_s: +1 inserted (that day ends with
  // 23:59:60), −1 deleted (it ends at 23:59:58), 0 none or unknown (past the table's expiry).
  int leap_at_end_of_day(int64_t utc_s) const;
  // The table speaks for this instant: at or after the first entry and before the expiry
  // (no expiry: TZif, trusted onwards; see above).
  bool covers(int64_t utc_s) const;
  // utc_s of the last entry (the last leap second's following midnight). Precondition: entries
  // not empty.
  int64_t last_entry_utc_s() const;
};

// Errors (Error::plain): a corrupt line "PATH:LINE: <what>"; "PATH: no '#h' hash line";
// "PATH: hash mismatch: file says <5 words>, content hashes to <5 words>";
// "PATH: no '#@' expiry line"; "PATH: no leap second entries".
Result<LeapTable> parse_leap_seconds_list(std::string_view text, const std::string& path);
// Reads PATH (at most 1 MiB); a read error names the path and errno.
Result<LeapTable> read_leap_seconds_list(const std::string& path);

// TZif leap records from the file's bytes (v1 32-bit, or the v2+ 64-bit block when present).
Result<LeapTable> parse_tzif_leaps(std::string_view bytes, const std::string& path);
// Reads PATH (e.g. /usr/share/zoneinfo/right/UTC) and parses it as above.
Result<LeapTable> read_tzif_leaps(const std::string& path);

// "ORIGIN expired on 2026-06-28" when now ≥ expiry; "ORIGIN expires on 2026-06-28 (in N days)"
// when it expires within 28 days; nullopt otherwise or without an expiry.
std::optional<std::string> expiry_warning(const LeapTable& table, int64_t now_utc_s);

}  // namespace taid::timescale
