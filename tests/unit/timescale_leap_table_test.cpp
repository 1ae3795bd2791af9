// Tests for the leap table (leap-seconds.list with its SHA-1, TZif right/UTC), its lookups and
// expiry warning, and UTC ⇄ TAI conversion at every leap second, 23:59:60 and a deletion.
// Expected instants come from libc's timegm/gmtime_r, not from the code under test.
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "core/result.hpp"
#include "core/time.hpp"
#include "timescale/leap_table.hpp"
#include "timescale/utc_label.hpp"

namespace taid::timescale {
namespace {

constexpr int64_t kNs = 1000000000;
const std::string kDataDir = TAID_LEAP_DATA_DIR;
const std::string kRealList = kDataDir + "/leap-seconds.list";
const std::string kNegativeList = kDataDir + "/negative-leap.list";

// POSIX seconds of a UTC date-time, by libc.
int64_t posix(int year, int month, int day, int hour = 0, int minute = 0, int second = 0) {
  std::tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  return static_cast<int64_t>(timegm(&tm));
}

// The label of a POSIX second, by libc.
UtcLabel libc_label(int64_t s, int64_t ns = 0) {
  const time_t t = static_cast<time_t>(s);
  std::tm tm{};
  gmtime_r(&t, &tm);
  return {tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ns};
}

TaiTime tai_s(int64_t s, int64_t ns = 0) { return TaiTime::from_tai_ns(s * kNs + ns); }

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::string replace_once(std::string text, const std::string& from, const std::string& to) {
  const std::size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) text.replace(at, from.size(), to);
  return text;
}

// Every TAI − UTC change since 1972, as the IERS publishes them (Bulletin C): the midnight it
// starts and the offset from then on.
struct Published {
  int year, month;
  int32_t offset_s;
};
const std::vector<Published> kPublished = {
    {1972, 1, 10}, {1972, 7, 11}, {1973, 1, 12}, {1974, 1, 13}, {1975, 1, 14}, {1976, 1, 15},
    {1977, 1, 16}, {1978, 1, 17}, {1979, 1, 18}, {1980, 1, 19}, {1981, 7, 20}, {1982, 7, 21},
    {1983, 7, 22}, {1985, 7, 23}, {1988, 1, 24}, {1990, 1, 25}, {1991, 1, 26}, {1992, 7, 27},
    {1993, 7, 28}, {1994, 7, 29}, {1996, 1, 30}, {1997, 7, 31}, {1999, 1, 32}, {2006, 1, 33},
    {2009, 1, 34}, {2012, 7, 35}, {2015, 7, 36}, {2017, 1, 37}};

std::vector<LeapEntry> published_entries() {
  std::vector<LeapEntry> out;
  for (const Published& p : kPublished) out.push_back({posix(p.year, p.month, 1), p.offset_s});
  return out;
}

LeapTable real_table() {
  Result<LeapTable> table = read_leap_seconds_list(kRealList);
  EXPECT_TRUE(table.ok()) << table.error().message();
  return table.ok() ? *table : LeapTable{};
}

LeapTable negative_table() {
  Result<LeapTable> table = read_leap_seconds_list(kNegativeList);
  EXPECT_TRUE(table.ok()) << table.error().message();
  return table.ok() ? *table : LeapTable{};
}

// ---- leap-seconds.list ----

TEST(LeapSecondsList, RealListParsesAndItsHashVerifies) {
  Result<LeapTable> table = read_leap_seconds_list(kRealList);
  ASSERT_TRUE(table.ok()) << table.error().message();
  EXPECT_EQ(table->entries.size(), 28u);
  EXPECT_EQ(table->entries, published_entries());
  EXPECT_EQ(table->entries.front(), (LeapEntry{63072000, 10}));   // 1972-01-01
  EXPECT_EQ(table->entries.back(), (LeapEntry{1483228800, 37}));  // 2017-01-01
  // '#@' 3991593600 and '#$' 3960835200 are NTP seconds: minus 2208988800.
  EXPECT_EQ(table->expires_utc_s, std::optional<int64_t>(posix(2026, 6, 28)));
  EXPECT_EQ(table->expires_utc_s, std::optional<int64_t>(3991593600 - 2208988800));
  EXPECT_EQ(table->updated_utc_s, std::optional<int64_t>(3960835200 - 2208988800));
  EXPECT_EQ(table->origin, "leap-seconds.list " + kRealList);
  EXPECT_EQ(table->last_entry_utc_s(), posix(2017, 1, 1));
}

TEST(LeapSecondsList, OffsetAtEveryEntryAndTheSecondBefore) {
  const LeapTable table = real_table();
  ASSERT_EQ(table.entries.size(), kPublished.size());
  EXPECT_EQ(table.offset_at(posix(1972, 1, 1)), std::optional<int32_t>(10));
  EXPECT_EQ(table.offset_at(posix(1972, 1, 1) - 1), std::nullopt);
  for (std::size_t i = 0; i < kPublished.size(); ++i) {
    const int64_t at = posix(kPublished[i].year, kPublished[i].month, 1);
    SCOPED_TRACE(libc_label(at).year * 100 + kPublished[i].month);
    EXPECT_EQ(table.offset_at(at), std::optional<int32_t>(kPublished[i].offset_s));
    EXPECT_EQ(table.offset_at(at + 86399), std::optional<int32_t>(kPublished[i].offset_s));
    if (i > 0) {
      EXPECT_EQ(table.offset_at(at - 1), std::optional<int32_t>(kPublished[i - 1].offset_s));
      // The day before each change ends with an inserted second, from its first to last second.
      EXPECT_EQ(table.leap_at_end_of_day(at - 1), 1);
      EXPECT_EQ(table.leap_at_end_of_day(at - 86400), 1);
      EXPECT_EQ(table.leap_at_end_of_day(at), 0);
      EXPECT_EQ(table.leap_at_end_of_day(at - 86401), 0);
    }
  }
  EXPECT_EQ(table.offset_at(posix(2026, 12, 1)), std::optional<int32_t>(37));
  EXPECT_EQ(table.leap_at_end_of_day(posix(2016, 12, 31, 12)), 1);
  EXPECT_EQ(table.leap_at_end_of_day(posix(2015, 12, 31, 12)), 0);
  // 1972-01-01 starts the table: it is not a leap second.
  EXPECT_EQ(table.leap_at_end_of_day(posix(1971, 12, 31)), 0);
}

TEST(LeapSecondsList, CoversFromTheFirstEntryUntilTheExpiry) {
  const LeapTable table = real_table();
  EXPECT_FALSE(table.covers(posix(1972, 1, 1) - 1));
  EXPECT_TRUE(table.covers(posix(1972, 1, 1)));
  EXPECT_TRUE(table.covers(posix(2026, 6, 28) - 1));
  EXPECT_FALSE(table.covers(posix(2026, 6, 28)));
  EXPECT_FALSE(table.covers(posix(2026, 12, 1)));
}

TEST(LeapSecondsList, MadeUpNegativeLeapSecond) {
  Result<LeapTable> table = read_leap_seconds_list(kNegativeList);
  ASSERT_TRUE(table.ok()) << table.error().message();
  ASSERT_EQ(table->entries.size(), 29u);
  EXPECT_EQ(table->entries.back(), (LeapEntry{posix(2027, 7, 1), 36}));
  EXPECT_EQ(table->expires_utc_s, std::optional<int64_t>(posix(2028, 6, 28)));
  EXPECT_EQ(table->leap_at_end_of_day(posix(2027, 6, 30, 23, 59, 58)), -1);
  EXPECT_EQ(table->offset_at(posix(2027, 7, 1) - 1), std::optional<int32_t>(37));
  EXPECT_EQ(table->offset_at(posix(2027, 7, 1)), std::optional<int32_t>(36));
}

TEST(LeapSecondsList, HashWordsMayDropLeadingZeros) {
  // SHA-1 of "3961612800" "3991593600" "227206080010" "228778560011" (by sha1sum):
  // c5bb1253 56f4b49e 79b264c7 fbe410e9 0aed0f5d; the last word is written without its zero.
  const std::string text =
      "#$\t3961612800\n#@\t3991593600\n2272060800 10 # 1 Jan 1972\n"
      "2287785600 11 # 1 Jul 1972\n#h\tc5bb1253 56f4b49e 79b264c7 fbe410e9 aed0f5d\n";
  Result<LeapTable> table = parse_leap_seconds_list(text, "mini.list");
  ASSERT_TRUE(table.ok()) << table.error().message();
  EXPECT_EQ(table->entries.size(), 2u);
}

TEST(LeapSecondsList, CorruptLineNamesTheFileAndLine) {
  const std::string path = kDataDir + "/corrupt.list";
  Result<LeapTable> table = read_leap_seconds_list(path);
  ASSERT_FALSE(table.ok());
  EXPECT_EQ(table.error().message(), path +
                                         ":88: expected 'NTP-SECONDS TAI-UTC [# comment]', got "
                                         "'23O3683200      12      # 1 Jan 1973'");
}

TEST(LeapSecondsList, OffsetsMustMoveByOneAndTimesIncreaseAtMidnight) {
  const std::string real = slurp(kRealList);
  ASSERT_FALSE(real.empty());
  struct Case {
    std::string from, to, message;
  };
  const std::vector<Case> cases = {
      {"2303683200      12", "2303683200      14",
       "x.list:88: TAI-UTC 14 after 11: a leap second changes it by exactly one"},
      {"2303683200      12", "2303683200      11",
       "x.list:88: TAI-UTC 11 after 11: a leap second changes it by exactly one"},
      {"2303683200      12", "2287785600      12",
       "x.list:88: 2287785600 is not after the line before"},
      {"2303683200      12", "2303683201      12",
       "x.list:88: 2303683201 is not at a UTC midnight"},
      {"2303683200      12", "2303683200      12 extra",
       "x.list:88: expected 'NTP-SECONDS TAI-UTC [# comment]', got '2303683200      12 extra      "
       "# 1 Jan "
       "19...'"},
      {"2303683200      12", "2303683200      1001", "x.list:88: TAI-UTC 1001 out of range"},
      {"#@\t3991593600", "#@\t39915936OO",
       "x.list:71: expected '#@ NTP-SECONDS', got '#@\t39915936OO'"},
      {"#h\t49db2447 571e5e1b", "#h\t49db2447 571e5e1g",
       "x.list:120: expected '#h' and five hex words, got '#h\t49db2447 571e5e1g 2f002a53 9c8da8e4 "
       "3...'"},
  };
  for (const Case& c : cases) {
    Result<LeapTable> table = parse_leap_seconds_list(replace_once(real, c.from, c.to), "x.list");
    ASSERT_FALSE(table.ok()) << c.to;
    EXPECT_EQ(table.error().message(), c.message);
  }
}

TEST(LeapSecondsList, MissingHashLine) {
  const std::string text =
      replace_once(slurp(kRealList), "#h\t49db2447 571e5e1b 2f002a53 9c8da8e4 39b8e49e", "#");
  Result<LeapTable> table = parse_leap_seconds_list(text, "x.list");
  ASSERT_FALSE(table.ok());
  EXPECT_EQ(table.error().message(), "x.list: no '#h' hash line");
}

TEST(LeapSecondsList, MissingExpiryLine) {
  const std::string text = replace_once(slurp(kRealList), "#@\t3991593600", "#");
  Result<LeapTable> table = parse_leap_seconds_list(text, "x.list");
  ASSERT_FALSE(table.ok());
  EXPECT_EQ(table.error().message(), "x.list: no '#@' expiry line");
}

TEST(LeapSecondsList, HashMismatchWhenOneDigitChanges) {
  const std::string real = slurp(kRealList);
  // A changed hash word: the content still hashes to the real words.
  Result<LeapTable> bad_word =
      parse_leap_seconds_list(replace_once(real, "#h\t49db2447", "#h\t49db2448"), "x.list");
  ASSERT_FALSE(bad_word.ok());
  EXPECT_EQ(bad_word.error().message(),
            "x.list: hash mismatch: file says 49db2448 571e5e1b 2f002a53 9c8da8e4 39b8e49e, "
            "content hashes to 49db2447 571e5e1b 2f002a53 9c8da8e4 39b8e49e");
  // A changed expiry, a changed update date, a changed leap date (still a valid midnight).
  for (const auto& [from, to] : std::vector<std::pair<std::string, std::string>>{
           {"#@\t3991593600", "#@\t3991593601"},
           {"#$\t3960835200", "#$\t3960835201"},
           {"3692217600      37", "3692304000      37"}}) {
    Result<LeapTable> table = parse_leap_seconds_list(replace_once(real, from, to), "x.list");
    ASSERT_FALSE(table.ok()) << to;
    EXPECT_EQ(table.error().message().rfind(
                  "x.list: hash mismatch: file says 49db2447 571e5e1b 2f002a53 9c8da8e4 39b8e49e, "
                  "content hashes to ",
                  0),
              0u)
        << table.error().message();
  }
  // Comments are not hashed: changing one keeps the list valid.
  EXPECT_TRUE(
      parse_leap_seconds_list(replace_once(real, "# 1 Jan 2017", "# 2 Jan 2017"), "x.list").ok());
}

TEST(LeapSecondsList, EmptyAndUnreadable) {
  Result<LeapTable> empty = parse_leap_seconds_list("", "empty.list");
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.error().message(), "empty.list: no leap second entries");
  const std::string missing = kDataDir + "/no-such.list";
  Result<LeapTable> unreadable = read_leap_seconds_list(missing);
  ASSERT_FALSE(unreadable.ok());
  EXPECT_EQ(unreadable.error().errno_value, ENOENT);
  EXPECT_EQ(unreadable.error().message(), "reading " + missing + ": No such file or directory");
}

TEST(LeapSecondsList, ExpiryWarning) {
  const LeapTable table = real_table();
  const int64_t expires = posix(2026, 6, 28);
  const std::string origin = "leap-seconds.list " + kRealList;
  EXPECT_EQ(expiry_warning(table, posix(2026, 12, 1)), origin + " expired on 2026-06-28");
  EXPECT_EQ(expiry_warning(table, expires), origin + " expired on 2026-06-28");
  EXPECT_EQ(expiry_warning(table, expires - 10 * 86400),
            origin + " expires on 2026-06-28 (in 10 days)");
  EXPECT_EQ(expiry_warning(table, expires - 28 * 86400),
            origin + " expires on 2026-06-28 (in 28 days)");
  EXPECT_EQ(expiry_warning(table, expires - 3600), origin + " expires on 2026-06-28 (in 1 day)");
  EXPECT_EQ(expiry_warning(table, expires - 28 * 86400 - 1), std::nullopt);
  EXPECT_EQ(expiry_warning(table, posix(2026, 1, 1)), std::nullopt);
}

// ---- TZif ----

TEST(Tzif, RightUtcGivesTheSameEntriesAsTheList) {
  const std::string path = kDataDir + "/right-UTC";
  Result<LeapTable> table = read_tzif_leaps(path);
  ASSERT_TRUE(table.ok()) << table.error().message();
  EXPECT_EQ(table->entries, published_entries());
  EXPECT_EQ(table->entries, real_table().entries);
  EXPECT_EQ(table->expires_utc_s, std::nullopt);
  EXPECT_EQ(table->origin, "leapsectz " + path);
  EXPECT_EQ(expiry_warning(*table, posix(2030, 1, 1)), std::nullopt);
  EXPECT_TRUE(table->covers(posix(2030, 1, 1)));  // no expiry: trusted onwards, as chrony does
  EXPECT_FALSE(table->covers(posix(1971, 12, 31)));
}

TEST(Tzif, ZicNegativeLeapMatchesTheMadeUpList) {
  Result<LeapTable> table = read_tzif_leaps(kDataDir + "/right-negative-leap");
  ASSERT_TRUE(table.ok()) << table.error().message();
  EXPECT_EQ(table->entries, negative_table().entries);
  EXPECT_EQ(table->entries.back(), (LeapEntry{posix(2027, 7, 1), 36}));
}

std::string be(uint64_t v, int bytes) {
  std::string out;
  for (int i = bytes - 1; i >= 0; --i) out += static_cast<char>((v >> (8 * i)) & 0xff);
  return out;
}

// A TZif file with one time type "UTC", no transitions, and the given leap records.
std::string tzif(char version, const std::vector<std::pair<int64_t, int32_t>>& leaps) {
  auto block = [](char v, const std::vector<std::pair<int64_t, int32_t>>& records, int time_size) {
    std::string out = "TZif" + std::string(1, v) + std::string(15, '\0');
    for (uint32_t count : {0u, 0u, static_cast<uint32_t>(records.size()), 0u, 1u, 4u})
      out += be(count, 4);
    out += be(0, 4) + std::string("\0\0", 2) + std::string("UTC\0", 4);
    for (const auto& [occurrence, correction] : records)
      out += be(static_cast<uint64_t>(occurrence), time_size) +
             be(static_cast<uint32_t>(correction), 4);
    return out;
  };
  if (version == '\0') return block(version, leaps, 4);
  return block(version, {}, 4) + block(version, leaps, 8) + "\n\n";
}

TEST(Tzif, VersionOneAndVersionFourExpiry) {
  // 1972-07-01 insertion (occurrence M + 0), 1973-01-01 insertion (M + 1).
  const std::vector<std::pair<int64_t, int32_t>> two = {{78796800, 1}, {94694401, 2}};
  Result<LeapTable> v1 = parse_tzif_leaps(tzif('\0', two), "v1");
  ASSERT_TRUE(v1.ok()) << v1.error().message();
  EXPECT_EQ(v1->entries, (std::vector<LeapEntry>{{63072000, 10}, {78796800, 11}, {94694400, 12}}));
  // v4: a last record repeating the correction is the expiry, at POSIX occurrence − correction.
  auto with_expiry = two;
  with_expiry.push_back({posix(1973, 6, 28) + 2, 2});
  Result<LeapTable> v4 = parse_tzif_leaps(tzif('4', with_expiry), "v4");
  ASSERT_TRUE(v4.ok()) << v4.error().message();
  EXPECT_EQ(v4->entries.size(), 3u);
  EXPECT_EQ(v4->expires_utc_s, std::optional<int64_t>(posix(1973, 6, 28)));
  // The same record in a v2 file is a correction that did not change: an error.
  Result<LeapTable> v2 = parse_tzif_leaps(tzif('2', with_expiry), "v2");
  ASSERT_FALSE(v2.ok());
  EXPECT_EQ(v2.error().message(), "v2: leap record 3: correction 2 after 2 is not one leap second");
}

TEST(Tzif, BadFiles) {
  auto message = [](const std::string& bytes) {
    Result<LeapTable> table = parse_tzif_leaps(bytes, "f");
    return table.ok() ? std::string("ok") : table.error().message();
  };
  EXPECT_EQ(message("not a tzif"), "f: not a TZif file (no 'TZif' header)");
  EXPECT_EQ(message(tzif('2', {})), "f: no leap second records (not a right/ zone?)");
  const std::string real = slurp(kDataDir + "/right-UTC");
  ASSERT_GT(real.size(), 400u);
  EXPECT_EQ(message(real.substr(0, 400)), "f: truncated TZif data");
  EXPECT_EQ(message(real.substr(0, 100)), "f: truncated TZif v1 data");
  EXPECT_EQ(message(tzif('2', {{78796801, 1}})),
            "f: leap record 1: occurrence 78796801 is not a leap second at a UTC midnight");
  EXPECT_EQ(message(tzif('2', {{94694401, 2}, {78796800, 1}})),
            "f: leap record 2: occurrence not after the previous");
}

// ---- UTC labels and conversions ----

TEST(UtcLabel, ParseAndPrint) {
  Result<UtcLabel> leap = parse_utc_label("2016-12-31T23:59:60Z");
  ASSERT_TRUE(leap.ok()) << leap.error().message();
  EXPECT_EQ(*leap, (UtcLabel{2016, 12, 31, 23, 59, 60, 0}));
  EXPECT_EQ(to_string(*leap), "2016-12-31T23:59:60Z");
  Result<UtcLabel> frac = parse_utc_label("2016-12-31T23:59:60.5Z");
  ASSERT_TRUE(frac.ok());
  EXPECT_EQ(frac->nanosecond, 500000000);
  EXPECT_EQ(to_string(*frac), "2016-12-31T23:59:60.500000000Z");
  Result<UtcLabel> nine = parse_utc_label("1972-01-01T00:00:00.000000001Z");
  ASSERT_TRUE(nine.ok());
  EXPECT_EQ(nine->nanosecond, 1);
  EXPECT_TRUE(parse_utc_label("2016-02-29T00:00:00Z").ok());
  for (const char* bad :
       {"2016-12-31T23:59:60", "2016-12-31 23:59:60Z", "2015-02-29T00:00:00Z",
        "2016-12-31T24:00:00Z", "2016-12-31T23:58:60Z", "2016-12-31T23:59:61Z",
        "2016-12-31T23:59:59.1234567890Z", "2016-12-31T23:59:59.Z", "2016-13-01T00:00:00Z",
        "2016-12-31T23:59:59Zjunk", "16-12-31T23:59:59Z", ""}) {
    EXPECT_FALSE(parse_utc_label(bad).ok()) << bad;
  }
  EXPECT_EQ(parse_utc_label("2015-02-29T00:00:00Z").error().message(),
            "2015-02-29T00:00:00Z: no such day");
}

TEST(UtcLabel, PosixWithoutLeapLogic) {
  for (int64_t s : {int64_t{0}, int64_t{63072000}, posix(2016, 12, 31, 23, 59, 59),
                    posix(2000, 2, 29, 12, 34, 56), int64_t{-1}, posix(2100, 3, 1)}) {
    EXPECT_EQ(utc_label_from_posix(UtcTime::from_unix_ns(s * kNs + 7)), libc_label(s, 7));
    EXPECT_EQ(posix_from_label(libc_label(s, 7)), UtcTime::from_unix_ns(s * kNs + 7));
  }
}

TEST(Conversion, First1972AndBefore) {
  const LeapTable table = real_table();
  Result<TaiTime> first = tai_from_utc(*parse_utc_label("1972-01-01T00:00:00Z"), table);
  ASSERT_TRUE(first.ok()) << first.error().message();
  EXPECT_EQ(*first, tai_s(63072000 + 10));
  Result<UtcLabel> back = utc_from_tai(tai_s(63072000 + 10), table);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(to_string(*back), "1972-01-01T00:00:00Z");
  EXPECT_FALSE(tai_from_utc(*parse_utc_label("1971-12-31T23:59:59Z"), table).ok());
  EXPECT_FALSE(utc_from_tai(tai_s(63072000 + 10, -1), table).ok());
}

TEST(Conversion, LeapSecond2016AsClockTaiCountsIt) {
  const LeapTable table = real_table();
  constexpr int64_t kM = 1483228800;  // 2017-01-01T00:00:00Z
  const std::vector<std::pair<std::string, int64_t>> expected = {{"2016-12-31T23:59:59Z", kM + 35},
                                                                 {"2016-12-31T23:59:60Z", kM + 36},
                                                                 {"2017-01-01T00:00:00Z", kM + 37}};
  for (const auto& [label, tai] : expected) {
    Result<TaiTime> got = tai_from_utc(*parse_utc_label(label), table);
    ASSERT_TRUE(got.ok()) << got.error().message();
    EXPECT_EQ(*got, tai_s(tai)) << label;
    Result<UtcLabel> back = utc_from_tai(tai_s(tai), table);
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(to_string(*back), label);
  }
  Result<UtcLabel> mid = utc_from_tai(tai_s(kM + 36, 999999999), table);
  ASSERT_TRUE(mid.ok());
  EXPECT_EQ(to_string(*mid), "2016-12-31T23:59:60.999999999Z");
  EXPECT_EQ(*tai_from_utc(*mid, table), tai_s(kM + 36, 999999999));
  // No leap second at the end of 2015 or of 2016-12-30.
  Result<TaiTime> none = tai_from_utc(*parse_utc_label("2015-12-31T23:59:60Z"), table);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().message(),
            "2015-12-31T23:59:60Z: no leap second was inserted at the end of 2015-12-31");
  EXPECT_FALSE(tai_from_utc(*parse_utc_label("2016-12-30T23:59:60Z"), table).ok());
}

TEST(Conversion, EveryLeapSecondOfTheRealTable) {
  const LeapTable table = real_table();
  for (std::size_t i = 1; i < kPublished.size(); ++i) {
    const int64_t m = posix(kPublished[i].year, kPublished[i].month, 1);
    const int32_t before = kPublished[i - 1].offset_s;
    UtcLabel last = libc_label(m - 1);  // 23:59:59 of the day that ends with the leap
    ASSERT_EQ(last.second, 59);
    UtcLabel leap = last;
    leap.second = 60;
    const UtcLabel next = libc_label(m);
    SCOPED_TRACE(to_string(leap));
    EXPECT_EQ(*tai_from_utc(last, table), tai_s(m - 1 + before));
    EXPECT_EQ(*tai_from_utc(leap, table), tai_s(m + before));
    EXPECT_EQ(*tai_from_utc(next, table), tai_s(m + kPublished[i].offset_s));
    EXPECT_EQ(*utc_from_tai(tai_s(m - 1 + before), table), last);
    EXPECT_EQ(*utc_from_tai(tai_s(m + before, 250000000), table),
              (UtcLabel{leap.year, leap.month, leap.day, 23, 59, 60, 250000000}));
    EXPECT_EQ(*utc_from_tai(tai_s(m + before + 1), table), next);
  }
}

TEST(Conversion, NegativeLeapSecondOfTheMadeUpTable) {
  const LeapTable table = negative_table();
  const int64_t m = posix(2027, 7, 1);
  EXPECT_EQ(*tai_from_utc(*parse_utc_label("2027-06-30T23:59:58Z"), table), tai_s(m - 2 + 37));
  // 23:59:59 does not exist; the next second is 00:00:00 at offset 36.
  Result<TaiTime> deleted = tai_from_utc(*parse_utc_label("2027-06-30T23:59:59Z"), table);
  ASSERT_FALSE(deleted.ok());
  EXPECT_EQ(deleted.error().message(),
            "2027-06-30T23:59:59Z: 23:59:59 was deleted (a negative leap second) on 2027-06-30");
  EXPECT_FALSE(tai_from_utc(*parse_utc_label("2027-06-30T23:59:60Z"), table).ok());
  EXPECT_EQ(*tai_from_utc(*parse_utc_label("2027-07-01T00:00:00Z"), table), tai_s(m + 36));
  EXPECT_EQ(m + 36, m - 2 + 37 + 1);  // TAI runs on: one second later
  EXPECT_EQ(to_string(*utc_from_tai(tai_s(m - 2 + 37, 999999999), table)),
            "2027-06-30T23:59:58.999999999Z");
  EXPECT_EQ(to_string(*utc_from_tai(tai_s(m + 36), table)), "2027-07-01T00:00:00Z");
  // The insertion before it still works in this table.
  EXPECT_EQ(*tai_from_utc(*parse_utc_label("2016-12-31T23:59:60Z"), table), tai_s(1483228800 + 36));
}

// Every TAI second near every change, and a sweep over the years: TAI → label → TAI is the
// identity and labels only move forward (ISO labels sort as text, :60 after :59).
TEST(Conversion, RoundTripsAndLabelsOnlyMoveForward) {
  for (const LeapTable& table : {real_table(), negative_table()}) {
    ASSERT_FALSE(table.entries.empty());
    std::vector<int64_t> instants;
    for (const LeapEntry& e : table.entries)
      for (int64_t d = -3; d <= 3; ++d) instants.push_back(e.utc_s + e.tai_offset_s + d);
    for (int64_t t = 63072010; t < posix(2030, 1, 1); t += 11 * 3600 + 13) instants.push_back(t);
    std::sort(instants.begin(), instants.end());
    instants.erase(std::unique(instants.begin(), instants.end()), instants.end());
    instants.erase(
        std::remove_if(instants.begin(), instants.end(), [](int64_t t) { return t < 63072010; }),
        instants.end());
    std::string previous;
    for (int64_t t : instants) {
      Result<UtcLabel> label = utc_from_tai(tai_s(t, 123), table);
      ASSERT_TRUE(label.ok()) << t << ": " << label.error().message();
      Result<TaiTime> back = tai_from_utc(*label, table);
      ASSERT_TRUE(back.ok()) << to_string(*label) << ": " << back.error().message();
      EXPECT_EQ(*back, tai_s(t, 123)) << to_string(*label);
      const std::string text = to_string(*label);
      EXPECT_LT(previous, text);
      previous = text;
    }
  }
}

}  // namespace
}  // namespace taid::timescale
