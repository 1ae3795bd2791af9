// ShmClockWriter: publishes taid's error bound as the shared-memory record of
// include/taid/taid_clock.h (one writer, any number of read-only readers, a seqlock between).
//
// Path: the daemon's config gives it; TAID_CLOCK_DEFAULT_PATH is /dev/shm/taid-clock. The file
// is a regular file of sizeof(taid_clock_record) bytes, mode 0644, owned by the daemon.
//
// Lifecycle, decided so long-lived readers survive a daemon restart and never fault:
//  - open() reuses an existing file in place when it is ours (regular, our euid, not writable by
//    group/others, the right size, magic and version): readers that have it mapped go on
//    reading, and the sequence continues from the value found. Anything else on the path (a
//    file of another version or size, someone else's file, a symlink) is replaced by rename()
//    of a fresh file, never truncated: truncating a mapped file would SIGBUS its readers.
//  - The destructor does not unlink. It publishes status unknown with void_after 0, so every
//    reader sees "unknown" at once, and a restarted daemon picks the same inode up again.
//  - A writer killed mid-publish leaves seq odd: readers report TORN until the next open().
//  - One writer per file: open() takes an exclusive flock and fails, naming the path, while
//    another writer (a second taid) holds it.
#pragma once

#include <taid/taid_clock.h>

#include <cstdint>
#include <string>

#include "core/fd.hpp"
#include "core/result.hpp"

namespace taid::publish {

enum class ClockStatus : uint32_t {
  unknown = TAID_CLOCK_UNKNOWN,
  synchronized = TAID_CLOCK_SYNCHRONIZED,
  free_running = TAID_CLOCK_FREE_RUNNING,
  disrupted = TAID_CLOCK_DISRUPTED,
};

// One publication. All instants on CLOCK_MONOTONIC (ns), as clock_gettime gives them.
struct ClockRecordValues {
  int64_t as_of_mono_ns = 0;   // when bound_ns held (the update, or the moment it was computed)
  int64_t bound_ns = 0;        // |offset| + root delay/2 + root dispersion at as_of, >= 0
  uint32_t max_drift_ppb = 0;  // maxclockerror (+ skew) in ppb: the bound's growth per second
  int32_t tai_offset_s = 0;    // the kernel's TAI − UTC
  bool tai_vouched = false;    // taid vouches for tai_offset_s (its leap table says so)
  ClockStatus status = ClockStatus::unknown;
  // The writer's promise to publish again before this instant; readers call the record stale
  // after it. The daemon publishes at every update and on a heartbeat (kHeartbeatNs), each time
  // with void_after = now + kValidityNs.
  int64_t void_after_mono_ns = 0;
};

// The record's drift from maxclockerror (ppm, chrony's directive) plus the frequency's
// uncertainty (skew, ppb): rounded up, and NaN or beyond the readers' limit (1e9 ppb, which
// they reject) capped just below it, so a nonsense input can only widen the interval.
uint32_t max_drift_ppb(double max_clock_error_ppm, double skew_ppb);

// Suggested cadence for the daemon: republish every second; a record not refreshed within 10 s
// (the daemon died or hung) turns stale for readers.
inline constexpr int64_t kHeartbeatNs = 1'000'000'000;
inline constexpr int64_t kValidityNs = 10'000'000'000;

class ShmClockWriter {
 public:
  // Creates or takes over the record at path (see the lifecycle above) and publishes status
  // unknown. Errors name the path and the step that failed.
  static Result<ShmClockWriter> open(const std::string& path);

  ShmClockWriter(ShmClockWriter&& other) noexcept;
  ShmClockWriter& operator=(ShmClockWriter&& other) noexcept;
  ShmClockWriter(const ShmClockWriter&) = delete;
  ShmClockWriter& operator=(const ShmClockWriter&) = delete;
  ~ShmClockWriter();

  // Writes one record under the seqlock. Not thread-safe: one thread publishes.
  void publish(const ClockRecordValues& values);

  const std::string& path() const { return path_; }
  // The sequence after the last publication (even), for tests and diagnostics.
  uint64_t sequence() const;

 private:
  ShmClockWriter(std::string path, Fd fd, taid_clock_record* record);
  void close();

  std::string path_;
  Fd fd_;  // holds the flock that keeps a second writer out
  taid_clock_record* record_ = nullptr;
  uint64_t publications_ = 0;
  uint64_t boot_id_[2] = {0, 0};
};

}  // namespace taid::publish
