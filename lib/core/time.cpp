// Conversions between the time types: NTP 32.32 <-> nanoseconds, eras, formatting.
#include "core/time.hpp"

#include <cmath>
#include <cstdio>

namespace taid {
namespace {

// 128-bit intermediates keep ns <-> 2^-32 s scaling exact; __extension__ marks the GNU type.
__extension__ typedef __int128 i128;
__extension__ typedef unsigned __int128 u128;

constexpr int64_t kNsPerS = 1000000000;
constexpr i128 kEraSeconds = static_cast<i128>(1) << 32;

// floor(a / b) for b > 0.

// Nanoseconds [0, 1e9) to a 32-bit fraction, nearest; 999999999.9 ns cannot round up to 2^32
// because 2^32 > 1e9 makes each nanosecond more than four fraction steps wide.
uint32_t ns_to_fraction(int64_t ns) {
  return static_cast<uint32_t>(((static_cast<u128>(ns) << 32) + kNsPerS / 2) / kNsPerS);
}
int64_t fraction_to_ns(uint32_t f) {
  return static_cast<int64_t>((static_cast<u128>(f) * kNsPerS + (1ULL << 31)) >> 32);
}

}  // namespace

Duration Duration::from_seconds(double s) { return Duration(std::llround(s * 1e9)); }

Duration Duration::from_log2_s(int log2) {
  // 2^33 s is the largest power of two that fits in int64 nanoseconds; saturate above it.
  if (log2 > 33) return Duration(INT64_MAX);
  if (log2 >= 0) return Duration(kNsPerS << log2);
  return Duration(std::llround(std::ldexp(1e9, log2)));
}

std::string Duration::to_string() const {
  char buf[48];
  const double a = std::fabs(seconds());
  const char* sign = ns_ < 0 ? "-" : "+";
  if (a >= 1.0)
    std::snprintf(buf, sizeof buf, "%s%.6fs", sign, a);
  else if (a >= 1e-3)
    std::snprintf(buf, sizeof buf, "%s%.3fms", sign, a * 1e3);
  else if (a >= 1e-6)
    std::snprintf(buf, sizeof buf, "%s%.3fus", sign, a * 1e6);
  else
    std::snprintf(buf, sizeof buf, "%s%lldns", sign, static_cast<long long>(ns_ < 0 ? -ns_ : ns_));
  return buf;
}

timespec UtcTime::to_timespec() const {
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(floor_div(ns_, kNsPerS));
  ts.tv_nsec = static_cast<long>(ns_ - static_cast<int64_t>(ts.tv_sec) * kNsPerS);
  return ts;
}

std::string UtcTime::to_string() const {
  const timespec ts = to_timespec();
  tm t{};
  gmtime_r(&ts.tv_sec, &t);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%09ldZ", t.tm_year + 1900,
                t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, ts.tv_nsec);
  return buf;
}

NtpDate ntp_date_from_utc(UtcTime t) {
  const int64_t unix_s = floor_div(t.unix_ns(), kNsPerS);
  const int64_t ns = t.unix_ns() - unix_s * kNsPerS;
  const int64_t ntp_s = unix_s + kNtpUnixEpochDelta;  // seconds since 1900 (may be negative)
  NtpDate d;
  d.era = static_cast<int32_t>(floor_div(ntp_s, static_cast<int64_t>(kEraSeconds)));
  d.seconds = static_cast<uint32_t>(ntp_s - static_cast<int64_t>(d.era) *
                                                static_cast<int64_t>(kEraSeconds));
  d.fraction = ns_to_fraction(ns);
  return d;
}

UtcTime utc_from_ntp_date(NtpDate d) {
  const int64_t ntp_s = static_cast<int64_t>(d.era) * static_cast<int64_t>(kEraSeconds) + d.seconds;
  return UtcTime::from_unix_ns((ntp_s - kNtpUnixEpochDelta) * kNsPerS + fraction_to_ns(d.fraction));
}

NtpTimestamp NtpTimestamp::from_utc(UtcTime t) {
  const NtpDate d = ntp_date_from_utc(t);
  return from_parts(d.seconds, d.fraction);
}

UtcTime NtpTimestamp::to_utc(UtcTime pivot) const {
  // Place the timestamp in the pivot's era, then move by one era if that lands closer.
  const NtpTimestamp p = from_utc(pivot);
  return pivot + (*this - p);
}

Duration NtpTimestamp::operator-(NtpTimestamp other) const {
  const auto diff = static_cast<int64_t>(raw_ - other.raw_);  // modulo 2^64, then signed
  // diff is in units of 2^-32 s; scale to ns with rounding to nearest (ties away from zero).
  const i128 scaled = static_cast<i128>(diff) * kNsPerS;
  const i128 half = static_cast<i128>(1) << 31;
  const i128 ns = scaled >= 0 ? (scaled + half) >> 32 : -((-scaled + half) >> 32);
  return Duration::from_ns(static_cast<int64_t>(ns));
}

NtpShort NtpShort::from_duration(Duration d) {
  if (d.ns() <= 0) return NtpShort(0);
  const i128 raw = ((static_cast<i128>(d.ns()) << 16) + kNsPerS / 2) / kNsPerS;
  return NtpShort(raw > 0xffffffff ? 0xffffffffU : static_cast<uint32_t>(raw));
}

Duration NtpShort::to_duration() const {
  return Duration::from_ns(
      static_cast<int64_t>((static_cast<uint64_t>(raw_) * kNsPerS + (1U << 15)) >> 16));
}

UtcTime realtime_now() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return UtcTime::from_timespec(ts);
}

TaiTime tai_now() {
  timespec ts{};
  clock_gettime(CLOCK_TAI, &ts);
  return TaiTime::from_tai_ns(static_cast<int64_t>(ts.tv_sec) * kNsPerS + ts.tv_nsec);
}

}  // namespace taid
