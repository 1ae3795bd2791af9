// UTC labels and UTC ⇄ TAI conversion across leap seconds (rules in utc_label.hpp).
#include "timescale/utc_label.hpp"

#include <algorithm>
#include <cstdio>
#include <iterator>

namespace taid::timescale {
namespace {

constexpr int64_t kNsPerS = 1000000000;
// TaiTime holds int64 ns since 1970, about ±292 years: labels past 2200 are refused.
constexpr int64_t kMaxYear = 2200;

bool is_leap_year(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

int days_in_month(int64_t y, int m) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && is_leap_year(y) ? 29 : kDays[m - 1];
}

// Days since 1970-01-01 of a proleptic Gregorian date: shift the year to start in March so the
// leap day is last, then count 400-year eras of 146097 days (the civil-calendar algorithm
// Howard Hinnant documents in "chrono-Compatible Low-Level Date Algorithms").
int64_t days_from_civil(int64_t y, int m, int d) {
  y -= m <= 2 ? 1 : 0;
  const int64_t era = floor_div(y, 400);
  const int64_t yoe = y - era * 400;                                    // [0, 399]
  const int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;  // [0, 365]
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;            // [0, 146096]
  return era * 146097 + doe - 719468;
}

struct Civil {
  int64_t year;
  int month, day;
};

Civil civil_from_days(int64_t z) {
  z += 719468;
  const int64_t era = floor_div(z, 146097);
  const int64_t doe = z - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  const int day = static_cast<int>(doy - (153 * mp + 2) / 5 + 1);
  const int month = static_cast<int>(mp < 10 ? mp + 3 : mp - 9);
  return {yoe + era * 400 + (month <= 2 ? 1 : 0), month, day};
}

Result<void> validate(const UtcLabel& l) {
  auto bad = [&l](const char* what) { return Error::plain(to_string(l) + ": " + what); };
  if (l.year < 0 || l.year > 9999) return bad("year out of range");
  if (l.month < 1 || l.month > 12) return bad("month out of range");
  if (l.day < 1 || l.day > days_in_month(l.year, l.month)) return bad("no such day");
  if (l.hour < 0 || l.hour > 23) return bad("hour out of range");
  if (l.minute < 0 || l.minute > 59) return bad("minute out of range");
  if (l.second < 0 || l.second > 60) return bad("second out of range");
  if (l.second == 60 && (l.hour != 23 || l.minute != 59))
    return bad("a leap second is only ever 23:59:60");
  if (l.nanosecond < 0 || l.nanosecond >= kNsPerS) return bad("nanosecond out of range");
  return {};
}

std::string date_string(const UtcLabel& l) {
  const std::string s = to_string(l);
  return s.substr(0, s.find('T'));
}

// Fixed-width digits at text[pos, pos + n).
bool read_digits(std::string_view text, std::size_t pos, std::size_t n, int64_t& out) {
  if (pos + n > text.size()) return false;
  out = 0;
  for (std::size_t i = pos; i < pos + n; ++i) {
    if (text[i] < '0' || text[i] > '9') return false;
    out = out * 10 + (text[i] - '0');
  }
  return true;
}

}  // namespace

Result<UtcLabel> parse_utc_label(std::string_view text) {
  const auto bad = [text](const std::string& what) {
    return Error::plain("'" + std::string(text.substr(0, 64)) + "': " + what);
  };
  const char* kShape = "expected YYYY-MM-DDTHH:MM:SS[.fraction]Z";
  // Positions of the separators in "YYYY-MM-DDTHH:MM:SS".
  if (text.size() < 20 || text[4] != '-' || text[7] != '-' || text[10] != 'T' || text[13] != ':' ||
      text[16] != ':')
    return bad(kShape);
  int64_t year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  if (!read_digits(text, 0, 4, year) || !read_digits(text, 5, 2, month) ||
      !read_digits(text, 8, 2, day) || !read_digits(text, 11, 2, hour) ||
      !read_digits(text, 14, 2, minute) || !read_digits(text, 17, 2, second))
    return bad(kShape);
  std::size_t pos = 19;
  int64_t nanosecond = 0;
  if (text[pos] == '.') {
    ++pos;
    int64_t scale = kNsPerS;
    const std::size_t first = pos;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
      if (pos - first == 9) return bad("more than nine fraction digits");
      scale /= 10;
      nanosecond += (text[pos] - '0') * scale;
      ++pos;
    }
    if (pos == first) return bad(kShape);
  }
  if (pos + 1 != text.size() || text[pos] != 'Z') return bad(kShape + std::string(" (Z required)"));

  UtcLabel label{year,
                 static_cast<int>(month),
                 static_cast<int>(day),
                 static_cast<int>(hour),
                 static_cast<int>(minute),
                 static_cast<int>(second),
                 nanosecond};
  if (Result<void> ok = validate(label); !ok) return ok.error();
  return label;
}

std::string to_string(const UtcLabel& l) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04lld-%02d-%02dT%02d:%02d:%02d", static_cast<long long>(l.year),
                l.month, l.day, l.hour, l.minute, l.second);
  std::string out = buf;
  if (l.nanosecond != 0) {
    std::snprintf(buf, sizeof buf, ".%09lld", static_cast<long long>(l.nanosecond));
    out += buf;
  }
  return out + "Z";
}

UtcTime posix_from_label(const UtcLabel& l) {
  const int64_t s = days_from_civil(l.year, l.month, l.day) * kSecondsPerDay + l.hour * 3600 +
                    l.minute * 60 + l.second;
  return UtcTime::from_unix_ns(s * kNsPerS + l.nanosecond);
}

UtcLabel utc_label_from_posix(UtcTime time) {
  const int64_t s = floor_div(time.unix_ns(), kNsPerS);
  const int64_t days = floor_div(s, kSecondsPerDay);
  const int64_t sec_of_day = s - days * kSecondsPerDay;
  const Civil c = civil_from_days(days);
  return {c.year,
          c.month,
          c.day,
          static_cast<int>(sec_of_day / 3600),
          static_cast<int>(sec_of_day / 60 % 60),
          static_cast<int>(sec_of_day % 60),
          time.unix_ns() - s * kNsPerS};
}

Result<TaiTime> tai_from_utc(const UtcLabel& label, const LeapTable& table) {
  if (Result<void> ok = validate(label); !ok) return ok.error();
  const std::string name = to_string(label);
  if (label.year > kMaxYear) return Error::plain(name + ": past the year 2200");
  if (table.entries.empty()) return Error::plain(name + ": the leap table is empty");
  const int64_t day_s = days_from_civil(label.year, label.month, label.day) * kSecondsPerDay;
  const int64_t sec_of_day = label.hour * 3600 + label.minute * 60 + label.second;
  if (day_s + std::min<int64_t>(sec_of_day, kSecondsPerDay - 1) < table.entries.front().utc_s) {
    return Error::plain(name + ": before the leap table's first entry (" +
                        to_string(utc_label_from_posix(
                            UtcTime::from_unix_ns(table.entries.front().utc_s * kNsPerS))) +
                        "); UTC was not a whole number of seconds from TAI");
  }
  const int leap = table.leap_at_end_of_day(day_s);
  int64_t tai_s = 0;
  if (label.second == 60) {
    if (leap != 1)
      return Error::plain(name + ": no leap second was inserted at the end of " +
                          date_string(label));
    // The inserted second follows 23:59:59 (POSIX M − 1, offset o): TAI M + o.
    tai_s = day_s + kSecondsPerDay + *table.offset_at(day_s);
  } else {
    if (leap == -1 && sec_of_day == kSecondsPerDay - 1)
      return Error::plain(name + ": 23:59:59 was deleted (a negative leap second) on " +
                          date_string(label));
    const int64_t posix_s = day_s + sec_of_day;
    tai_s = posix_s + *table.offset_at(posix_s);
  }
  return TaiTime::from_tai_ns(tai_s * kNsPerS + label.nanosecond);
}

Result<UtcLabel> utc_from_tai(TaiTime time, const LeapTable& table) {
  if (table.entries.empty()) return Error::plain("the leap table is empty");
  const int64_t tai_s = floor_div(time.tai_ns(), kNsPerS);
  const int64_t ns = time.tai_ns() - tai_s * kNsPerS;
  // Each entry starts at TAI utc_s + offset; those instants increase (entries are ≥ a day apart
  // and offsets move by one), so the entry in force is the last one starting at or before tai_s.
  const auto tai_start = [](const LeapEntry& e) { return e.utc_s + e.tai_offset_s; };
  const auto after =
      std::upper_bound(table.entries.begin(), table.entries.end(), tai_s,
                       [&](int64_t t, const LeapEntry& e) { return t < tai_start(e); });
  if (after == table.entries.begin()) {
    return Error::plain("TAI " + std::to_string(tai_s) + " s: before the leap table's first entry");
  }
  const LeapEntry& in_force = *std::prev(after);
  // The second before an insertion's entry starts is the inserted one, 23:59:60.
  if (after != table.entries.end() && after->tai_offset_s == in_force.tai_offset_s + 1 &&
      tai_s == tai_start(*after) - 1) {
    UtcLabel label = utc_label_from_posix(UtcTime::from_unix_ns((after->utc_s - 1) * kNsPerS));
    label.second = 60;
    label.nanosecond = ns;
    return label;
  }
  return utc_label_from_posix(
      UtcTime::from_unix_ns((tai_s - in_force.tai_offset_s) * kNsPerS + ns));
}

}  // namespace taid::timescale
