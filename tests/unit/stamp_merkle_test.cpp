// Merkle batching: roots equal RFC 9162's recursive MTH, every path verifies, wrong ones do not.
#include <gtest/gtest.h>

#include <bit>

#include "stamp/merkle.hpp"

namespace taid::stamp {
namespace {

// RFC 9162 §2.1.1 as written: split at the largest power of two below n.
Hash32 mth(std::span<const Hash32> leaves) {
  if (leaves.size() == 1) return leaves[0];
  const std::size_t k = std::bit_floor(leaves.size() - 1);
  return merkle_node_hash(mth(leaves.first(k)), mth(leaves.subspan(k)));
}

std::vector<Hash32> leaves(std::size_t n) {
  std::vector<Hash32> out;
  for (std::size_t i = 0; i < n; ++i) {
    const Bytes b{static_cast<std::uint8_t>(i), static_cast<std::uint8_t>(i >> 8)};
    out.push_back(merkle_leaf_hash(b));
  }
  return out;
}

TEST(StampMerkle, PrefixedHashesHaveKnownValues) {
  // RFC 6962's hash of the empty leaf: SHA-256(0x00).
  EXPECT_EQ(to_hex(merkle_leaf_hash({})),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d");
  // SHA-256 of 0x01 followed by 64 zero bytes.
  Bytes node(65, 0);
  node[0] = 1;
  EXPECT_EQ(merkle_node_hash(Hash32{}, Hash32{}), sha256(node));
}

TEST(StampMerkle, RootIsRfc9162TreeHashAndEveryPathVerifies) {
  for (std::size_t n = 1; n <= 70; ++n) {
    const auto l = leaves(n);
    const MerkleTree tree(l);
    ASSERT_EQ(tree.root(), mth(l)) << "n=" << n;
    const std::size_t height = n == 1 ? 0 : std::bit_width(n - 1);
    for (std::size_t i = 0; i < n; ++i) {
      const auto path = tree.path(i);
      EXPECT_LE(path.size(), height);
      const auto root = merkle_root_from_path(l[i], i, n, path);
      ASSERT_TRUE(root.has_value()) << "n=" << n << " i=" << i;
      EXPECT_EQ(*root, tree.root()) << "n=" << n << " i=" << i;
    }
  }
}

TEST(StampMerkle, WrongIndexCountPathOrLeafDoesNotReachTheRoot) {
  const auto l = leaves(5);
  const MerkleTree tree(l);
  const auto path3 = tree.path(3);  // leaf 3 of 5: two siblings, then carried past the last
  ASSERT_EQ(path3.size(), 3u);
  // Every other index claims leaf 3's path: no root, or another root.
  for (std::uint64_t i = 0; i < 5; ++i) {
    if (i == 3) continue;
    const auto r = merkle_root_from_path(l[3], i, 5, path3);
    EXPECT_TRUE(!r || *r != tree.root()) << i;
  }
  EXPECT_FALSE(merkle_root_from_path(l[3], 5, 5, path3));  // index out of range
  EXPECT_FALSE(merkle_root_from_path(l[3], 3, 0, path3));
  auto shorter = path3;
  shorter.pop_back();
  EXPECT_FALSE(merkle_root_from_path(l[3], 3, 5, shorter));
  auto longer = path3;
  longer.push_back(Hash32{});
  EXPECT_FALSE(merkle_root_from_path(l[3], 3, 5, longer));
  EXPECT_NE(*merkle_root_from_path(l[2], 3, 5, path3), tree.root());
  // Leaf 4 of 5 is carried up twice: its one sibling is the root of leaves 0..3.
  const auto path4 = tree.path(4);
  ASSERT_EQ(path4.size(), 1u);
  EXPECT_EQ(path4[0], mth(std::span(l).first(4)));
  // A single leaf is its own root, with an empty path.
  const MerkleTree one(leaves(1));
  EXPECT_EQ(one.root(), leaves(1)[0]);
  EXPECT_TRUE(one.path(0).empty());
  EXPECT_EQ(*merkle_root_from_path(leaves(1)[0], 0, 1, {}), one.root());
}

}  // namespace
}  // namespace taid::stamp
