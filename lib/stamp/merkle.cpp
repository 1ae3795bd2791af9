// Merkle tree for token batches: bottom-up build, paths, RFC 9162 path verification.
#include "stamp/merkle.hpp"

#include <algorithm>
#include <cassert>

namespace taid::stamp {

Hash32 merkle_leaf_hash(ByteView leaf_bytes) {
  static constexpr std::uint8_t kLeafPrefix[1] = {0x00};
  return sha256_parts({kLeafPrefix, leaf_bytes});
}

Hash32 merkle_node_hash(const Hash32& left, const Hash32& right) {
  std::array<std::uint8_t, 65> buf{};
  buf[0] = 0x01;
  std::copy(left.begin(), left.end(), buf.begin() + 1);
  std::copy(right.begin(), right.end(), buf.begin() + 33);
  return sha256(buf);
}

MerkleTree::MerkleTree(std::vector<Hash32> leaf_hashes) {
  assert(!leaf_hashes.empty());
  levels_.push_back(std::move(leaf_hashes));
  while (levels_.back().size() > 1) {
    const std::vector<Hash32>& below = levels_.back();
    std::vector<Hash32> up;
    up.reserve((below.size() + 1) / 2);
    for (std::size_t i = 0; i + 1 < below.size(); i += 2) {
      up.push_back(merkle_node_hash(below[i], below[i + 1]));
    }
    if (below.size() % 2 == 1) up.push_back(below.back());  // carried up, not hashed
    levels_.push_back(std::move(up));
  }
}

std::vector<Hash32> MerkleTree::path(std::size_t index) const {
  assert(index < leaf_count());
  std::vector<Hash32> out;
  for (std::size_t level = 0; level + 1 < levels_.size(); ++level) {
    const std::size_t sibling = index ^ 1U;
    if (sibling < levels_[level].size()) out.push_back(levels_[level][sibling]);
    index >>= 1;
  }
  return out;
}

std::optional<Hash32> merkle_root_from_path(const Hash32& leaf, std::uint64_t index,
                                            std::uint64_t count, std::span<const Hash32> path) {
  if (count == 0 || index >= count) return std::nullopt;
  std::uint64_t fn = index;
  std::uint64_t sn = count - 1;
  Hash32 r = leaf;
  for (const Hash32& p : path) {
    if (sn == 0) return std::nullopt;  // path longer than the tree is high
    if ((fn & 1U) == 1U || fn == sn) {
      r = merkle_node_hash(p, r);
      // A right edge node with no sibling on the levels below was carried up: skip them.
      while ((fn & 1U) == 0 && fn != 0) {
        fn >>= 1;
        sn >>= 1;
      }
    } else {
      r = merkle_node_hash(r, p);
    }
    fn >>= 1;
    sn >>= 1;
  }
  if (sn != 0) return std::nullopt;  // path too short
  return r;
}

}  // namespace taid::stamp
