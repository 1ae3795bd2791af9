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

  std::vector<Leaf> leaves;
  leaves.reserve(requests_.size());
  std::vector<Hash32> hashes;
  hashes.reserve(requests_.size());
  for (std::size_t i = 0; i < requests_.size(); ++i) {
    SignRequest& r = requests_[i];
    leaves.push_back(Leaf{first_serial + i, r.algorithm, std::move(r.digest), std::move(r.nonce)});
    hashes.push_back(merkle_leaf_hash(encode_leaf(leaves.back())));
  }
  const MerkleTree tree(std::move(hashes));

  Token token;
  token.header = BatchHeader{key.public_key().key_id(), time.tai_ns, time.bound_ns, time.leap,
                             time.status, static_cast<std::uint32_t>(leaves.size()), tree.root()};
  token.signature = key.sign(encode_signed_part(token.header));

  out.reserve(leaves.size());
  for (std::size_t i = 0; i < leaves.size(); ++i) {
    token.leaf = std::move(leaves[i]);
    token.leaf_index = static_cast<std::uint32_t>(i);
    token.path = tree.path(i);
    out.push_back(IssuedToken{requests_[i].request_id, token.leaf.serial, encode_token(token)});
  }
  requests_.clear();
  return out;
}

}  // namespace taid::stamp
