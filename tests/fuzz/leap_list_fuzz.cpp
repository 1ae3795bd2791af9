// libFuzzer target: the leap table parsers and UTC labels on arbitrary bytes. The first byte picks
// the parser (even: leap-seconds.list, odd: TZif); the rest is the file. Any input either fails
// with a message or gives a table whose entries are ascending UTC midnights with offsets moving by
// one, whose conversions round-trip TAI → label → TAI; the same bytes as a UTC label either fail
// or print back to a label that parses to the same value.
// Seeds (corpus/leap_list_fuzz): a two-entry list whose '#h' sha1sum computed (see
// tests/data/leap/README), and a TZif with two leap records as the unit test builds it.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "core/time.hpp"
#include "timescale/leap_table.hpp"
#include "timescale/utc_label.hpp"

namespace {

using namespace taid;
using namespace taid::timescale;

void check_table(const LeapTable& table) {
  if (table.entries.empty()) std::abort();
  for (std::size_t i = 0; i < table.entries.size(); ++i) {
    const LeapEntry& e = table.entries[i];
    if (floor_div(e.utc_s, kSecondsPerDay) * kSecondsPerDay != e.utc_s) std::abort();
    if (i == 0) continue;
    const LeapEntry& prev = table.entries[i - 1];
    if (e.utc_s <= prev.utc_s || std::abs(e.tai_offset_s - prev.tai_offset_s) != 1) std::abort();
  }
  // Round trips around every change, where the table lies within TaiTime's range.
  for (const LeapEntry& e : table.entries) {
    if (e.utc_s < 0 || e.utc_s > 7000000000) continue;
    for (int64_t d = -2; d <= 2; ++d) {
      const TaiTime t = TaiTime::from_tai_ns((e.utc_s + e.tai_offset_s + d) * 1000000000 + 5);
      const Result<UtcLabel> label = utc_from_tai(t, table);
      if (!label) continue;  // before the first entry
      const Result<TaiTime> back = tai_from_utc(*label, table);
      if (!back || *back != t) std::abort();
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  const Result<LeapTable> table =
      (data[0] & 1) == 0 ? parse_leap_seconds_list(body, "fuzz") : parse_tzif_leaps(body, "fuzz");
  if (table) {
    check_table(*table);
  } else if (table.error().message().rfind("fuzz", 0) != 0) {
    std::abort();  // every error names the file
  }
  const Result<UtcLabel> label = parse_utc_label(body);
  if (label) {
    const Result<UtcLabel> again = parse_utc_label(to_string(*label));
    if (!again || !(*again == *label)) std::abort();
  }
  return 0;
}
