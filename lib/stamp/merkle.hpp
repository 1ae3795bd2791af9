// The Merkle tree that batches many tokens under one signature (RFC 9162 §2.1 shape, SHA-256).
//
// leaf = SHA-256(0x00 ‖ leaf bytes), node = SHA-256(0x01 ‖ left ‖ right), Roughtime's and RFC
// 6962's prefixes, so a leaf can never pass for a node. Built bottom-up: on a level with an odd
// count the last node is carried up unchanged (never paired with a copy of itself, Bitcoin's
// CVE-2012-2459 mistake); that is exactly RFC 9162's MTH (split at the largest power of two below
// n), so its inclusion-proof check (§2.1.3.2) verifies our paths given the index and leaf count.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "stamp/crypto.hpp"

namespace taid::stamp {

Hash32 merkle_leaf_hash(ByteView leaf_bytes);
Hash32 merkle_node_hash(const Hash32& left, const Hash32& right);

class MerkleTree {
 public:
  // leaves: the leaf hashes, at least one.
  explicit MerkleTree(std::vector<Hash32> leaf_hashes);
  const Hash32& root() const { return levels_.back().front(); }
  std::size_t leaf_count() const { return levels_.front().size(); }
  // Siblings from the leaf up; a level where the node was carried up contributes none.
  std::vector<Hash32> path(std::size_t index) const;

 private:
  std::vector<std::vector<Hash32>> levels_;
};

// RFC 9162 §2.1.3.2: the root that `leaf` and `path` lead to at `index` of a `count`-leaf tree,
// or nothing when the path's length does not fit that position.
std::optional<Hash32> merkle_root_from_path(const Hash32& leaf, std::uint64_t index,
                                            std::uint64_t count, std::span<const Hash32> path);

}  // namespace taid::stamp
