// Leap-second table: leap-seconds.list and TZif parsers (sans-IO), lookups and the expiry warning.
#include "timescale/leap_table.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <system_error>

#include "core/time.hpp"
#include "timescale/utc_label.hpp"

namespace taid::timescale {
namespace {

// Lines longer than this are not leap-seconds.list lines (the longest real one is ~110 bytes);
// the cap keeps error messages short when a wrong file is given.
constexpr std::size_t kQuoteMax = 40;
// NTP seconds we accept: up to year ~2172 (era 0 ends in 2036 but the list is era-free text).
constexpr int64_t kMaxNtpSeconds = int64_t{1} << 33;
constexpr int32_t kMaxOffsetS = 1000;
constexpr int64_t kWarnBeforeExpiryS = 28 * kSecondsPerDay;

using HashWords = std::array<uint32_t, 5>;

std::string quote(std::string_view s) {
  if (s.size() > kQuoteMax) return "'" + std::string(s.substr(0, kQuoteMax)) + "...'";
  return "'" + std::string(s) + "'";
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

// The next whitespace-separated token of `rest`, removed from it.
std::string_view next_token(std::string_view& rest) {
  rest = trim(rest);
  std::size_t end = 0;
  while (end < rest.size() && !is_space(rest[end])) ++end;
  std::string_view token = rest.substr(0, end);
  rest.remove_prefix(end);
  return token;
}

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// A decimal number of NTP seconds (digits only, as the hash reads it).
std::optional<int64_t> parse_ntp_seconds(std::string_view token) {
  if (!all_digits(token)) return std::nullopt;
  int64_t value = 0;
  const auto [end, ec] = std::from_chars(token.data(), token.data() + token.size(), value);
  if (ec != std::errc{} || end != token.data() + token.size() || value > kMaxNtpSeconds)
    return std::nullopt;
  return value;
}

// TAI − UTC: an optional sign then digits (no real list has a sign; the hash skips it, as ntpd's).
std::optional<int32_t> parse_offset(std::string_view token) {
  std::string_view digits = token;
  if (!digits.empty() && (digits.front() == '+' || digits.front() == '-')) digits.remove_prefix(1);
  if (!all_digits(digits)) return std::nullopt;
  int32_t value = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (ec != std::errc{} || end != digits.data() + digits.size()) return std::nullopt;
  return token.front() == '-' ? -value : value;
}

std::string hex_words(const HashWords& words) {
  std::string out;
  for (uint32_t w : words) {
    char buf[10];
    std::snprintf(buf, sizeof buf, "%s%08x", out.empty() ? "" : " ", w);
    out += buf;
  }
  return out;
}

// The '#h' line's five words; leading zeros may be dropped, so each is 1..8 hex digits.
std::optional<HashWords> parse_hash_words(std::string_view rest) {
  HashWords words{};
  for (uint32_t& w : words) {
    const std::string_view token = next_token(rest);
    if (token.empty() || token.size() > 8) return std::nullopt;
    const auto [end, ec] = std::from_chars(token.data(), token.data() + token.size(), w, 16);
    if (ec != std::errc{} || end != token.data() + token.size()) return std::nullopt;
  }
  if (!trim(rest).empty()) return std::nullopt;
  return words;
}

std::optional<HashWords> sha1_words(std::string_view data) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int md_len = 0;
  if (EVP_Digest(data.data(), data.size(), md.data(), &md_len, EVP_sha1(), nullptr) != 1 ||
      md_len != 20)
    return std::nullopt;
  HashWords words{};
  for (std::size_t i = 0; i < words.size(); ++i) {
    words[i] = (uint32_t{md[4 * i]} << 24) | (uint32_t{md[4 * i + 1]} << 16) |
               (uint32_t{md[4 * i + 2]} << 8) | uint32_t{md[4 * i + 3]};
  }
  return words;
}

std::string digits_of(std::string_view token) {
  std::string out;
  for (char c : token)
    if (c >= '0' && c <= '9') out += c;
  return out;
}

std::string line_error(const std::string& path, int line, const std::string& what) {
  return path + ":" + std::to_string(line) + ": " + what;
}

std::string date_of(int64_t utc_s) {
  std::string label = to_string(utc_label_from_posix(UtcTime::from_unix_ns(utc_s * 1000000000)));
  return label.substr(0, label.find('T'));
}

// Big-endian fixed-width reads for TZif.
class ByteReader {
 public:
  explicit ByteReader(std::string_view bytes) : bytes_(bytes) {}
  bool has(std::size_t n) const { return bytes_.size() - pos_ >= n; }
  std::size_t pos() const { return pos_; }
  void skip(std::size_t n) { pos_ += n; }
  uint64_t be(std::size_t n) {
    uint64_t v = 0;
    for (std::size_t i = 0; i < n; ++i) v = (v << 8) | static_cast<unsigned char>(bytes_[pos_ + i]);
    pos_ += n;
    return v;
  }
  std::string_view take(std::size_t n) {
    std::string_view s = bytes_.substr(pos_, n);
    pos_ += n;
    return s;
  }

 private:
  std::string_view bytes_;
  std::size_t pos_ = 0;
};

struct TzifHeader {
  char version = 0;
  uint32_t isutcnt = 0, isstdcnt = 0, leapcnt = 0, timecnt = 0, typecnt = 0, charcnt = 0;
  // Bytes of the data block after the header, with `time_size`-byte times.
  uint64_t data_size(uint64_t time_size) const {
    return uint64_t{timecnt} * time_size + timecnt + uint64_t{typecnt} * 6 + charcnt +
           uint64_t{leapcnt} * (time_size + 4) + isstdcnt + isutcnt;
  }
};

std::optional<TzifHeader> read_tzif_header(ByteReader& in) {
  if (!in.has(44) || in.take(4) != "TZif") return std::nullopt;
  TzifHeader h;
  h.version = in.take(1)[0];
  in.skip(15);
  h.isutcnt = static_cast<uint32_t>(in.be(4));
  h.isstdcnt = static_cast<uint32_t>(in.be(4));
  h.leapcnt = static_cast<uint32_t>(in.be(4));
  h.timecnt = static_cast<uint32_t>(in.be(4));
  h.typecnt = static_cast<uint32_t>(in.be(4));
  h.charcnt = static_cast<uint32_t>(in.be(4));
  return h;
}

}  // namespace

std::optional<int32_t> LeapTable::offset_at(int64_t utc_s) const {
  // The last entry at or before utc_s.
  auto after = std::upper_bound(entries.begin(), entries.end(), utc_s,
                                [](int64_t t, const LeapEntry& e) { return t < e.utc_s; });
  if (after == entries.begin()) return std::nullopt;
  return std::prev(after)->tai_offset_s;
}

int LeapTable::leap_at_end_of_day(int64_t utc_s) const {
  const int64_t next_midnight = (floor_div(utc_s, kSecondsPerDay) + 1) * kSecondsPerDay;
  auto it = std::lower_bound(entries.begin(), entries.end(), next_midnight,
                             [](const LeapEntry& e, int64_t t) { return e.utc_s < t; });
  if (it == entries.end() || it == entries.begin() || it->utc_s != next_midnight) return 0;
  return it->tai_offset_s > std::prev(it)->tai_offset_s ? 1 : -1;
}

bool LeapTable::covers(int64_t utc_s) const {
  if (entries.empty() || utc_s < entries.front().utc_s) return false;
  return !expires_utc_s || utc_s < *expires_utc_s;
}

int64_t LeapTable::last_entry_utc_s() const { return entries.back().utc_s; }

Result<LeapTable> parse_leap_seconds_list(std::string_view text, const std::string& path) {
  LeapTable table;
  table.origin = "leap-seconds.list " + path;
  std::optional<HashWords> file_hash;
  std::string updated_digits, expires_digits, data_digits;
  int expires_line = 0, updated_line = 0, hash_line = 0;

  int line_no = 0;
  while (!text.empty()) {
    ++line_no;
    const std::size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    line = trim(line);
    if (line.empty()) continue;

    if (line.starts_with("#$") || line.starts_with("#@")) {
      const bool is_update = line[1] == '$';
      int& seen = is_update ? updated_line : expires_line;
      if (seen != 0) {
        return Error::plain(line_error(path, line_no,
                                       "second '" + std::string(line.substr(0, 2)) +
                                           "' line (first on line " + std::to_string(seen) + ")"));
      }
      std::string_view rest = line.substr(2);
      const std::string_view token = next_token(rest);
      const std::optional<int64_t> ntp = parse_ntp_seconds(token);
      if (!ntp || !trim(rest).empty()) {
        return Error::plain(line_error(
            path, line_no,
            "expected '" + std::string(line.substr(0, 2)) + " NTP-SECONDS', got " + quote(line)));
      }
      seen = line_no;
      (is_update ? updated_digits : expires_digits) = std::string(token);
      (is_update ? table.updated_utc_s : table.expires_utc_s) = *ntp - kNtpUnixEpochDelta;
      continue;
    }
    if (line.starts_with("#h")) {
      if (hash_line != 0) {
        return Error::plain(line_error(
            path, line_no, "second '#h' line (first on line " + std::to_string(hash_line) + ")"));
      }
      file_hash = parse_hash_words(line.substr(2));
      if (!file_hash) {
        return Error::plain(
            line_error(path, line_no, "expected '#h' and five hex words, got " + quote(line)));
      }
      hash_line = line_no;
      continue;
    }
    if (line.front() == '#') continue;  // a comment

    // A data line: NTP-SECONDS TAI-UTC [# comment].
    std::string_view rest = line.substr(0, line.find('#'));
    const std::string_view time_token = next_token(rest);
    const std::string_view offset_token = next_token(rest);
    const std::optional<int64_t> ntp = parse_ntp_seconds(time_token);
    const std::optional<int32_t> offset = parse_offset(offset_token);
    if (!ntp || !offset || !trim(rest).empty()) {
      return Error::plain(line_error(
          path, line_no, "expected 'NTP-SECONDS TAI-UTC [# comment]', got " + quote(line)));
    }
    // TAI − UTC was 10 s in 1972 and moves by one a leap second: a huge value is a broken file
    // (and would overflow nanosecond arithmetic downstream).
    if (std::abs(*offset) > kMaxOffsetS) {
      return Error::plain(
          line_error(path, line_no, "TAI-UTC " + std::string(offset_token) + " out of range"));
    }
    const int64_t utc_s = *ntp - kNtpUnixEpochDelta;
    if (floor_div(utc_s, kSecondsPerDay) * kSecondsPerDay != utc_s) {
      return Error::plain(
          line_error(path, line_no, std::string(time_token) + " is not at a UTC midnight"));
    }
    if (!table.entries.empty()) {
      const LeapEntry& prev = table.entries.back();
      if (utc_s <= prev.utc_s) {
        return Error::plain(
            line_error(path, line_no, std::string(time_token) + " is not after the line before"));
      }
      if (std::abs(int64_t{*offset} - prev.tai_offset_s) != 1) {
        return Error::plain(line_error(path, line_no,
                                       "TAI-UTC " + std::to_string(*offset) + " after " +
                                           std::to_string(prev.tai_offset_s) +
                                           ": a leap second changes it by exactly one"));
      }
    }
    table.entries.push_back({utc_s, *offset});
    data_digits += digits_of(time_token);
    data_digits += digits_of(offset_token);
  }

  if (table.entries.empty()) return Error::plain(path + ": no leap second entries");
  if (expires_line == 0) return Error::plain(path + ": no '#@' expiry line");
  if (!file_hash) return Error::plain(path + ": no '#h' hash line");
  const std::optional<HashWords> content_hash =
      sha1_words(updated_digits + expires_digits + data_digits);
  if (!content_hash) return Error::plain(path + ": SHA-1 unavailable (OpenSSL EVP_Digest failed)");
  if (*content_hash != *file_hash) {
    return Error::plain(path + ": hash mismatch: file says " + hex_words(*file_hash) +
                        ", content hashes to " + hex_words(*content_hash));
  }
  return table;
}

Result<LeapTable> parse_tzif_leaps(std::string_view bytes, const std::string& path) {
  auto bad = [&path](const std::string& what) { return Error::plain(path + ": " + what); };
  ByteReader in(bytes);
  std::optional<TzifHeader> header = read_tzif_header(in);
  if (!header) return bad("not a TZif file (no 'TZif' header)");
  int64_t time_size = 4;
  if (header->version != '\0') {
    // v2+: skip the v1 block and use the second header's 64-bit block (it holds every record).
    const uint64_t v1_size = header->data_size(4);
    if (!in.has(v1_size)) return bad("truncated TZif v1 data");
    in.skip(v1_size);
    header = read_tzif_header(in);
    if (!header) return bad("no second TZif header in a version 2+ file");
    time_size = 8;
  }
  const TzifHeader& h = *header;
  if (!in.has(h.data_size(static_cast<uint64_t>(time_size)))) return bad("truncated TZif data");
  if (h.leapcnt == 0) return bad("no leap second records (not a right/ zone?)");
  in.skip(uint64_t{h.timecnt} * static_cast<uint64_t>(time_size) + h.timecnt +
          uint64_t{h.typecnt} * 6 + h.charcnt);

  LeapTable table;
  table.origin = "leapsectz " + path;
  int64_t prev_correction = 0;
  int64_t prev_occurrence = std::numeric_limits<int64_t>::min();
  for (uint32_t i = 0; i < h.leapcnt; ++i) {
    const uint64_t raw = in.be(static_cast<std::size_t>(time_size));
    const int64_t occurrence =
        time_size == 4 ? int64_t{static_cast<int32_t>(raw)} : static_cast<int64_t>(raw);
    const int64_t correction = static_cast<int32_t>(in.be(4));
    const std::string which = "leap record " + std::to_string(i + 1);
    if (occurrence <= prev_occurrence) return bad(which + ": occurrence not after the previous");
    if (occurrence < 0 || occurrence > kMaxNtpSeconds || std::abs(correction) > kMaxOffsetS)
      return bad(which + ": out of range");
    prev_occurrence = occurrence;
    // A v4 file may end with a record repeating the correction: the table's expiry.
    if (i + 1 == h.leapcnt && i > 0 && correction == prev_correction && h.version >= '4') {
      table.expires_utc_s = occurrence - correction;
      break;
    }
    int64_t midnight = 0;
    if (i == 0 && std::abs(correction) != 1) {
      // Truncated at the start (zic -r): the change is unknown, so round to the nearest midnight
      // (occurrence − correction is M − 1 for an insertion and M for a deletion).
      midnight =
          floor_div(occurrence - correction + kSecondsPerDay / 2, kSecondsPerDay) * kSecondsPerDay;
    } else {
      const int64_t step = correction - prev_correction;
      if (step != 1 && step != -1)
        return bad(which + ": correction " + std::to_string(correction) + " after " +
                   std::to_string(prev_correction) + " is not one leap second");
      // Insertion: occurrence = M + previous correction; deletion: M − 1 + previous correction.
      midnight = occurrence - prev_correction + (step < 0 ? 1 : 0);
      if (floor_div(midnight, kSecondsPerDay) * kSecondsPerDay != midnight)
        return bad(which + ": occurrence " + std::to_string(occurrence) +
                   " is not a leap second at a UTC midnight");
      // The table starts 1972-01-01 at 10 s, as leap-seconds.list does.
      if (i == 0) table.entries.push_back({63072000, 10});
    }
    if (!table.entries.empty() && midnight <= table.entries.back().utc_s)
      return bad(which + ": not after the previous leap second");
    table.entries.push_back({midnight, static_cast<int32_t>(10 + correction)});
    prev_correction = correction;
  }
  return table;
}

std::optional<std::string> expiry_warning(const LeapTable& table, int64_t now_utc_s) {
  if (!table.expires_utc_s) return std::nullopt;
  const int64_t expires = *table.expires_utc_s;
  if (now_utc_s >= expires) return table.origin + " expired on " + date_of(expires);
  const int64_t left_s = expires - now_utc_s;
  if (left_s > kWarnBeforeExpiryS) return std::nullopt;
  const int64_t days = (left_s + kSecondsPerDay - 1) / kSecondsPerDay;  // "in 1 day" for an hour
  return table.origin + " expires on " + date_of(expires) + " (in " + std::to_string(days) +
         (days == 1 ? " day)" : " days)");
}

}  // namespace taid::timescale
