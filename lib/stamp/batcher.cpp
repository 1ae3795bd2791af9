// Batcher: many requests, one Merkle tree, one signature.
#include "stamp/batcher.hpp"

#include <algorithm>
#include <limits>

#include "core/strcat.hpp"
#include "stamp/merkle.hpp"

namespace taid::stamp {

Batcher::Batcher(std::size_t max_requests)
    : max_requests_(std::clamp<std::size_t>(max_requests, 1, kMaxBatchRequests)) {}

Result<void> Batcher::add(SignRequest request) {
  if (auto ok = check_request(request.algorithm, request.digest, request.nonce); !ok) return ok;
  if (full()) return Error::plain(strcat("batch full (", max_requests_, " requests)"));
  requests_.push_back(std::move(request));
  return {};
}

Result<std::vector<IssuedToken>> Batcher::seal(const BatchTime& time, std::uint64_t first_serial,
                                               const SigningKey& key) {
  std::vector<IssuedToken> out;
  if (requests_.empty()) return out;
  if (time.bound_ns == 0 ||
      time.bound_ns > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
    return Error::plain("error bound must be 1 ns .. 2^63-1 ns");
  }
  if (first_serial > std::numeric_limits<std::uint64_t>::max() - requests_.size()) {
    return Error::plain("serials would wrap");
  }

  // Each leaf is encoded once: hashed for the tree, then copied into its token.
  std::vector<Bytes> leaf_bytes;
  leaf_bytes.reserve(requests_.size());
  std::vector<Hash32> hashes;
  hashes.reserve(requests_.size());
  for (std::size_t i = 0; i < requests_.size(); ++i) {
    SignRequest& r = requests_[i];
    leaf_bytes.push_back(
        encode_leaf(Leaf{first_serial + i, r.algorithm, std::move(r.digest), std::move(r.nonce)}));
    hashes.push_back(merkle_leaf_hash(leaf_bytes.back()));
  }
  const MerkleTree tree(std::move(hashes));

  const BatchHeader header{key.public_key().key_id(),
                           time.tai_ns,
                           time.bound_ns,
                           time.leap,
                           time.status,
                           static_cast<std::uint32_t>(requests_.size()),
                           tree.root()};
  // The one signature of the batch.
  const Bytes signed_part = encode_signed_part(header);
  const Signature signature = key.sign(signed_part);

  out.reserve(requests_.size());
  for (std::size_t i = 0; i < requests_.size(); ++i) {
    out.push_back(
        IssuedToken{requests_[i].request_id, first_serial + i,
                    encode_token(signed_part, leaf_bytes[i], static_cast<std::uint32_t>(i),
                                 tree.path(i), signature)});
  }
  requests_.clear();
  return out;
}

}  // namespace taid::stamp
