// The drift file (`driftfile PATH`): the clock's frequency correction kept across restarts, in
// chrony's format, so a chrony drift file and ours can replace each other.
//
// Format: one line "FREQUENCY_PPM SKEW_PPM" ("%20.6f %20.6f\n" when written, as chrony writes
// it), the skew optional when reading. The number in the file has chrony's sign: the rate at
// which the uncorrected clock gains time, i.e. the negation of the correction applied to it.
// DriftFile.frequency_ppm has ClockDriver's sign (kernel timex.freq: positive makes the clock run
// faster), so read and write negate: a clock that gains 12 ppm is slowed by frequency_ppm = -12,
// and the file says "12.000000".
//
// Limits: |frequency| <= 500 ppm (chrony's default maxdrift; beyond it the file is refused, on
// reading and on writing), 0 <= skew <= 1e6 ppm.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "core/result.hpp"

namespace taid::daemon {

struct DriftFile {
  double frequency_ppm = 0;        // correction, ClockDriver's sign (the file's, negated)
  std::optional<double> skew_ppm;  // the estimate's error bound; absent in older files
};

inline constexpr double kMaxDriftFrequencyPpm = 500;
inline constexpr double kMaxDriftSkewPpm = 1e6;

// What the daemon logs when read_drift_file() finds no file (the first start).
inline constexpr std::string_view kNoDriftFileYet = "no drift file yet";

// The drift file at `path`; nullopt when there is none yet (ENOENT: a first start, not an
// error). Errors read "PATH:LINE: what", e.g. "PATH:1: frequency: not a number",
// "PATH:1: frequency: 812 ppm is out of range ±500 ppm", "PATH:1: empty file",
// "PATH:2: trailing garbage: 'x'"; or "PATH: open: strerror" for a file that cannot be read.
Result<std::optional<DriftFile>> read_drift_file(const std::string& path);

// Replaces the drift file atomically: a temporary file in the same directory (so the rename
// cannot cross file systems), written, fsynced, given the old file's permissions (0644 for a
// new one), renamed over `path`, then the directory fsynced so the rename survives a crash.
// On any failure before the rename the old file is untouched and the temporary file removed.
// A frequency or skew out of the limits above is refused: a file we could not read back.
// Every error names `path`.
Result<void> write_drift_file(const std::string& path, double frequency_ppm, double skew_ppm);

}  // namespace taid::daemon
