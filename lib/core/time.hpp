// Strong time types: signed durations, UTC and TAI instants, and the NTP on-wire formats.
//
// Units and sign are part of each type. A Duration is signed nanoseconds. UtcTime and TaiTime
// are nanoseconds since 1970-01-01 00:00:00 on their own scale (UTC as POSIX counts it, without
// leap seconds; TAI as CLOCK_TAI counts it) and cannot be mixed without naming the TAI-UTC offset.
// NtpTimestamp is the 64-bit 32.32 wire format, which carries no era: turning it into an instant
// needs a pivot (a nearby instant) to choose the era. NtpDate is the era-aware form (RFC 5905 §6).
#pragma once

#include <compare>
#include <cstdint>
#include <ctime>
#include <string>

namespace taid {

// Signed span of time in nanoseconds. Positive means "later".
class Duration {
 public:
  constexpr Duration() = default;
  static constexpr Duration from_ns(int64_t ns) { return Duration(ns); }
  static constexpr Duration from_us(int64_t us) { return Duration(us * 1000); }
  static constexpr Duration from_ms(int64_t ms) { return Duration(ms * 1000000); }
  static constexpr Duration from_s(int64_t s) { return Duration(s * 1000000000); }
  // Rounds to the nearest nanosecond.
  static Duration from_seconds(double s);
  // 2^log2 seconds, e.g. a poll interval or a precision (log2 may be negative).
  static Duration from_log2_s(int log2);

  constexpr int64_t ns() const { return ns_; }
  constexpr double seconds() const { return static_cast<double>(ns_) * 1e-9; }

  constexpr Duration operator-() const { return Duration(-ns_); }
  constexpr Duration operator+(Duration o) const { return Duration(ns_ + o.ns_); }
  constexpr Duration operator-(Duration o) const { return Duration(ns_ - o.ns_); }
  constexpr Duration& operator+=(Duration o) {
    ns_ += o.ns_;
    return *this;
  }
  constexpr Duration& operator-=(Duration o) {
    ns_ -= o.ns_;
    return *this;
  }
  constexpr Duration operator*(int64_t k) const { return Duration(ns_ * k); }
  // Integer division rounding toward zero (so (a+b)/2 of the offset formula is exact to 1 ns).
  constexpr Duration operator/(int64_t k) const { return Duration(ns_ / k); }
  constexpr auto operator<=>(const Duration&) const = default;
  constexpr Duration abs() const { return Duration(ns_ < 0 ? -ns_ : ns_); }

  // "+1.234567ms" style, for logs and tables.
  std::string to_string() const;

 private:
  constexpr explicit Duration(int64_t ns) : ns_(ns) {}
  int64_t ns_ = 0;
};

// An instant on the UTC scale: nanoseconds since the Unix epoch as CLOCK_REALTIME counts them.
class UtcTime {
 public:
  constexpr UtcTime() = default;
  static constexpr UtcTime from_unix_ns(int64_t ns) { return UtcTime(ns); }
  static constexpr UtcTime from_timespec(const timespec& ts) {
    return UtcTime(static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec);
  }
  constexpr int64_t unix_ns() const { return ns_; }
  timespec to_timespec() const;

  constexpr Duration operator-(UtcTime o) const { return Duration::from_ns(ns_ - o.ns_); }
  constexpr UtcTime operator+(Duration d) const { return UtcTime(ns_ + d.ns()); }
  constexpr UtcTime operator-(Duration d) const { return UtcTime(ns_ - d.ns()); }
  constexpr auto operator<=>(const UtcTime&) const = default;

  // ISO 8601 with nanoseconds, "2026-11-21T23:47:15.123456789Z".
  std::string to_string() const;

 private:
  constexpr explicit UtcTime(int64_t ns) : ns_(ns) {}
  int64_t ns_ = 0;
};

// An instant on the TAI scale: nanoseconds since 1970-01-01 00:00:00 TAI as CLOCK_TAI counts
// them. TAI = UTC + offset, offset being the kernel's TAI offset (37 s since 2017).
class TaiTime {
 public:
  constexpr TaiTime() = default;
  static constexpr TaiTime from_tai_ns(int64_t ns) { return TaiTime(ns); }
  constexpr int64_t tai_ns() const { return ns_; }
  static constexpr TaiTime from_utc(UtcTime utc, Duration tai_minus_utc) {
    return TaiTime(utc.unix_ns() + tai_minus_utc.ns());
  }
  constexpr UtcTime to_utc(Duration tai_minus_utc) const {
    return UtcTime::from_unix_ns(ns_ - tai_minus_utc.ns());
  }
  constexpr Duration operator-(TaiTime o) const { return Duration::from_ns(ns_ - o.ns_); }
  constexpr auto operator<=>(const TaiTime&) const = default;

 private:
  constexpr explicit TaiTime(int64_t ns) : ns_(ns) {}
  int64_t ns_ = 0;
};

// floor(a / b) for b > 0: instants before an epoch land in the right second, day or era.
constexpr int64_t floor_div(int64_t a, int64_t b) { return a / b - ((a % b != 0) && (a < 0)); }

// Seconds from 1900-01-01 (NTP prime epoch, era 0) to 1970-01-01 (Unix epoch).
inline constexpr int64_t kNtpUnixEpochDelta = 2208988800;

// Era-aware NTP date (RFC 5905 §6): era number, 32-bit seconds within the era, 32-bit fraction.
struct NtpDate {
  int32_t era = 0;
  uint32_t seconds = 0;
  uint32_t fraction = 0;  // units of 2^-32 s
  friend constexpr bool operator==(const NtpDate&, const NtpDate&) = default;
};

// The 64-bit on-wire timestamp: seconds (high 32 bits) and fraction (low 32), era not carried.
class NtpTimestamp {
 public:
  constexpr NtpTimestamp() = default;
  static constexpr NtpTimestamp from_raw(uint64_t raw) { return NtpTimestamp(raw); }
  static constexpr NtpTimestamp from_parts(uint32_t s, uint32_t f) {
    return NtpTimestamp((static_cast<uint64_t>(s) << 32) | f);
  }
  // Drops the era; nearest 2^-32 s.
  static NtpTimestamp from_utc(UtcTime t);

  constexpr uint64_t raw() const { return raw_; }
  constexpr uint32_t seconds() const { return static_cast<uint32_t>(raw_ >> 32); }
  constexpr uint32_t fraction() const { return static_cast<uint32_t>(raw_); }
  constexpr bool is_zero() const { return raw_ == 0; }

  // The instant this timestamp names in the era that puts it closest to `pivot` (valid while
  // the true instant lies within ±68 years of the pivot).
  UtcTime to_utc(UtcTime pivot) const;

  // Signed difference this − other, computed modulo 2^64 so it is right across an era
  // boundary as long as the two are within ±68 years. Rounded to the nearest nanosecond.
  Duration operator-(NtpTimestamp other) const;

  constexpr bool operator==(const NtpTimestamp&) const = default;

 private:
  constexpr explicit NtpTimestamp(uint64_t raw) : raw_(raw) {}
  uint64_t raw_ = 0;
};

NtpDate ntp_date_from_utc(UtcTime t);
UtcTime utc_from_ntp_date(NtpDate d);

// NTP short format (16.16 unsigned seconds), used for root delay and root dispersion.
class NtpShort {
 public:
  constexpr NtpShort() = default;
  static constexpr NtpShort from_raw(uint32_t raw) { return NtpShort(raw); }
  // Saturates at 0 and at 65535.99998 s.
  static NtpShort from_duration(Duration d);
  constexpr uint32_t raw() const { return raw_; }
  Duration to_duration() const;
  constexpr bool operator==(const NtpShort&) const = default;

 private:
  constexpr explicit NtpShort(uint32_t raw) : raw_(raw) {}
  uint32_t raw_ = 0;
};

// Clock readings. These are the only place in lib/ that reads a clock, used by the daemon and
// the drivers; the protocol core receives times as values.
UtcTime realtime_now();
TaiTime tai_now();

}  // namespace taid
