// Fixed-capacity ring of reply stamps with a linear-probing index keyed by the receive stamp.
#include "server/interleave_table.hpp"

#include <algorithm>
#include <bit>
#include <cassert>

namespace taid::server {

InterleaveTable::InterleaveTable(std::size_t capacity) : ring_(std::max<std::size_t>(capacity, 1)) {
  // At most half full, so probes stay short.
  const std::size_t index_size = std::bit_ceil(2 * ring_.size());
  index_.assign(index_size, kEmpty);
  index_bits_ = std::countr_zero(index_size);
}

std::size_t InterleaveTable::home(NtpTimestamp key) const {
  // Fibonacci hashing; the index is at least 2 slots, so the shift is below 64.
  return static_cast<std::size_t>((key.raw() * 0x9e3779b97f4a7c15ULL) >> (64 - index_bits_));
}

std::size_t InterleaveTable::find(NtpTimestamp key) const {
  const std::size_t mask = index_.size() - 1;
  for (std::size_t i = home(key);; i = (i + 1) & mask) {
    if (index_[i] == kEmpty) return index_.size();
    if (ring_[index_[i] - 1].receive_time == key) return i;
  }
}

void InterleaveTable::erase_index(std::size_t position) {
  // Backward-shift deletion: no tombstones, so lookups never slow down with churn.
  assert(position < index_.size() && "every ring entry is indexed");
  const std::size_t mask = index_.size() - 1;
  std::size_t hole = position;
  index_[hole] = kEmpty;
  for (std::size_t j = (hole + 1) & mask; index_[j] != kEmpty; j = (j + 1) & mask) {
    const std::size_t k = home(ring_[index_[j] - 1].receive_time);
    if (((j - k) & mask) >= ((j - hole) & mask)) {
      index_[hole] = index_[j];
      index_[j] = kEmpty;
      hole = j;
    }
  }
}

bool InterleaveTable::contains(NtpTimestamp receive_time) const {
  return find(receive_time) != index_.size();
}

void InterleaveTable::insert(NtpTimestamp receive_time) {
  if (receive_time.is_zero() || contains(receive_time)) return;
  if (size_ == ring_.size()) {
    erase_index(find(ring_[next_].receive_time));  // the oldest
  } else {
    ++size_;
  }
  ring_[next_] = Entry{receive_time, NtpTimestamp{}, false, false};
  const std::size_t mask = index_.size() - 1;
  std::size_t i = home(receive_time);
  while (index_[i] != kEmpty) i = (i + 1) & mask;
  index_[i] = static_cast<uint32_t>(next_ + 1);
  next_ = (next_ + 1) % ring_.size();
}

void InterleaveTable::set_transmit(NtpTimestamp receive_time, NtpTimestamp transmit_time) {
  const std::size_t i = find(receive_time);
  if (i == index_.size()) return;
  Entry& e = ring_[index_[i] - 1];
  e.transmit_time = transmit_time;
  e.has_transmit = true;
}

std::optional<NtpTimestamp> InterleaveTable::transmit_of(NtpTimestamp receive_time) const {
  const std::size_t i = find(receive_time);
  if (i == index_.size()) return std::nullopt;
  const Entry& e = ring_[index_[i] - 1];
  if (!e.has_transmit || e.disabled) return std::nullopt;
  return e.transmit_time;
}

void InterleaveTable::disable(NtpTimestamp receive_time) {
  const std::size_t i = find(receive_time);
  if (i != index_.size()) ring_[index_[i] - 1].disabled = true;
}

}  // namespace taid::server
