// Serial numbers that only ever increase, across restarts and across kill -9 mid-batch.
//
// The file holds a ceiling: "every serial handed out so far is below N". Serials are handed
// out from memory below the ceiling on disk; before crossing it, a new ceiling (next + count +
// block) is written to a temporary file, fsynced, renamed over the old one, and the directory
// fsynced. A restart continues from the ceiling, so a crash loses at most one block of unused
// numbers (gaps are allowed, repeats never) and costs one fsync per `block` serials.
#pragma once

#include <cstdint>
#include <string>

#include "core/result.hpp"

namespace taid::stamp {

class SerialStore {
 public:
  // A missing file starts at serial 1; an unreadable or corrupt one is an error (starting over
  // at 1 could repeat serials). The default block costs one fsync per 65 536 serials (under 2 a
  // second at 100 k tokens/s) and a crash skips at most that many of 2^64 numbers.
  static Result<SerialStore> open(std::string path, std::uint64_t block = 65536);

  // `count` consecutive serials, returning the first; persists a new ceiling first when needed.
  // On a failed write nothing is handed out.
  Result<std::uint64_t> reserve(std::uint64_t count);
  std::uint64_t next() const { return next_; }
  std::uint64_t ceiling() const { return ceiling_; }

 private:
  SerialStore(std::string path, std::uint64_t block, std::uint64_t start)
      : path_(std::move(path)), block_(block), next_(start), ceiling_(start) {}
  Result<void> persist(std::uint64_t ceiling);

  std::string path_;
  std::uint64_t block_;
  std::uint64_t next_;
  std::uint64_t ceiling_;  // what the file says: serials below it may have been issued
};

}  // namespace taid::stamp
