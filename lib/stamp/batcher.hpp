// Batcher: collects sign requests, then seals them under one Ed25519 signature (sans-IO).
//
// The daemon adds the requests that arrive within its batch window, reserves serials from the
// SerialStore, reads the time and bound once, and calls seal(): one signature over the Merkle
// root, one token per request with its path and consecutive serials, in the order added.
#pragma once

#include <cstdint>
#include <vector>

#include "core/result.hpp"
#include "stamp/crypto.hpp"
#include "stamp/token.hpp"

namespace taid::stamp {

inline constexpr std::size_t kMaxBatchRequests = 65536;  // 16 levels of path

struct SignRequest {
  HashAlgorithm algorithm = HashAlgorithm::sha256;
  Bytes digest;
  Bytes nonce;
  std::uint64_t request_id = 0;  // the caller's, echoed in the IssuedToken
};

// The time the batch is signed at, read once for the whole batch.
struct BatchTime {
  std::int64_t tai_ns = 0;
  std::uint64_t bound_ns = 0;  // > 0
  Leap leap = Leap::none;
  SyncStatus status = SyncStatus::synchronized;
};

struct IssuedToken {
  std::uint64_t request_id = 0;
  std::uint64_t serial = 0;
  Bytes token;  // encode_token's bytes, what goes back to the client
};

class Batcher {
 public:
  explicit Batcher(std::size_t max_requests = kMaxBatchRequests);

  // Refuses a request check_request() refuses, or one beyond max_requests (seal first).
  Result<void> add(SignRequest request);
  std::size_t pending() const { return requests_.size(); }
  bool full() const { return requests_.size() >= max_requests_; }

  // Signs the pending requests (serials first_serial, first_serial + 1, ...) and empties the
  // batcher. Nothing pending: no signature, an empty list. Refuses a zero or over-2^63 bound and
  // serials that would wrap; the requests then stay pending.
  Result<std::vector<IssuedToken>> seal(const BatchTime& time, std::uint64_t first_serial,
                                        const SigningKey& key);

 private:
  std::size_t max_requests_;
  std::vector<SignRequest> requests_;
};

}  // namespace taid::stamp
