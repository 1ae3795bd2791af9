// Receive → transmit stamps of recent replies, for interleaved replies (RFC 9769), bounded.
//
// chrony's server keeps, per reply, the receive timestamp it sent (T2, as on the wire) and the
// transmit time of that reply: first the daemon's own reading, then the kernel's TX stamp when the
// error queue reports it. A client in interleaved mode echoes T2 as its next request's origin, and
// the server answers with that reply's transmit stamp. Keyed by T2 and not by client address, so
// a client that opens a fresh port (or NAT mapping) per request still gets interleaved replies,
// and a spoofed address cannot claim another's entries without knowing their T2.
//
// A ring of fixed capacity (the oldest entry goes when a new one comes) with an open-addressing
// index into it; no allocation after construction. Keys are unique: the responder bumps a T2 that
// is already present by one 2^-32 s unit before inserting it (as chrony avoids equal stamps).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "core/time.hpp"

namespace taid::server {

class InterleaveTable {
 public:
  explicit InterleaveTable(std::size_t capacity);

  bool contains(NtpTimestamp receive_time) const;
  // A new reply's T2 (not zero, not present), with no transmit stamp yet; evicts the oldest
  // entry when full. Ignored when zero or already present.
  void insert(NtpTimestamp receive_time);
  // The transmit stamp of the reply that carried `receive_time`; a later call replaces an
  // earlier one (the kernel's TX stamp replaces the user-space T3). Ignored when unknown.
  void set_transmit(NtpTimestamp receive_time, NtpTimestamp transmit_time);
  // The transmit stamp to put in an interleaved reply: none when the entry is gone, has no
  // transmit stamp yet, or already served an interleaved reply (chrony answers one interleaved
  // reply per saved stamp, so a replayed request cannot be answered twice with it).
  std::optional<NtpTimestamp> transmit_of(NtpTimestamp receive_time) const;
  // After an interleaved reply used this entry.
  void disable(NtpTimestamp receive_time);

  std::size_t size() const { return size_; }
  std::size_t capacity() const { return ring_.size(); }

 private:
  struct Entry {
    NtpTimestamp receive_time;
    NtpTimestamp transmit_time;
    bool has_transmit = false;
    bool disabled = false;
  };
  static constexpr uint32_t kEmpty = 0;  // index_ holds ring position + 1

  std::size_t home(NtpTimestamp key) const;
  // Position in index_ of the key, or index_.size() when absent.
  std::size_t find(NtpTimestamp key) const;
  void erase_index(std::size_t position);

  std::vector<Entry> ring_;
  std::vector<uint32_t> index_;
  int index_bits_ = 1;
  std::size_t next_ = 0;  // ring position of the next insert (the oldest entry once full)
  std::size_t size_ = 0;
};

}  // namespace taid::server
