// The taid timestamp token v1: its canonical encoding, decoding and verification (sans-IO).
//
// Layout (docs/TOKEN.md is the normative description; big-endian, no padding):
//   domain "taid timestamp token v1\0" (24)
//   header: version 1 | key id 8 | tai_ns i64 | bound_ns u64 | leap 1 | status 1 |
//           leaf_count u32 | root 32                         (63)  ← signed with domain
//   leaf:   serial u64 | alg 1 | digest_len 1 | digest | nonce_len 1 | nonce
//   proof:  leaf_index u32 | path_len 1 | path_len × 32
//   signature 64 (Ed25519 over domain ‖ header)
// The batch's fields (time, bound, status, key) sit in the one signed header; each request's
// fields (serial, digest, nonce) sit in its leaf, tied to the signature through the Merkle root.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "core/result.hpp"
#include "stamp/crypto.hpp"

namespace taid::stamp {

inline constexpr std::string_view kTokenDomain{"taid timestamp token v1\0", 24};
inline constexpr std::uint8_t kTokenVersion = 1;
inline constexpr std::size_t kMaxNonceBytes = 64;
inline constexpr std::size_t kMaxPathLength = 32;
inline constexpr std::size_t kSignedBytes = 24 + 63;  // domain + header
inline constexpr std::size_t kSignatureBytes = 64;

enum class HashAlgorithm : std::uint8_t { sha256 = 1, sha512 = 2 };
// 32 for sha256, 64 for sha512, 0 for anything else.
std::size_t digest_length(HashAlgorithm algorithm);
std::string_view algorithm_name(HashAlgorithm algorithm);
Result<HashAlgorithm> algorithm_from_name(std::string_view name);  // "sha256" | "sha512"

// A leap second announced for the end of the current UTC day (NTP's LI without "unknown").
enum class Leap : std::uint8_t { none = 0, insert = 1, remove = 2 };
// How the time was kept when the batch was signed. taid signs only in these states.
enum class SyncStatus : std::uint8_t {
  synchronized = 1,  // taid steers the clock and is synchronized to its sources
  measured = 2,      // -x: the clock is measured, not steered; the bound includes that offset
  holdover = 3,      // sources lost; the bound grew with maximum drift × age and is still signable
};
std::string_view leap_name(Leap leap);
std::string_view status_name(SyncStatus status);

// The fields every token of one batch shares (what the signature covers, with the root).
struct BatchHeader {
  KeyId key_id{};
  std::int64_t tai_ns = 0;    // ns since 1970-01-01 00:00:00 TAI (CLOCK_TAI's epoch)
  std::uint64_t bound_ns = 0; // |true TAI − tai_ns| ≤ bound_ns, > 0
  Leap leap = Leap::none;
  SyncStatus status = SyncStatus::synchronized;
  std::uint32_t leaf_count = 0;
  Hash32 root{};
};

// One request's fields: hashed into its Merkle leaf.
struct Leaf {
  std::uint64_t serial = 0;
  HashAlgorithm algorithm = HashAlgorithm::sha256;
  Bytes digest;
  Bytes nonce;  // 0..kMaxNonceBytes
};

struct Token {
  std::uint8_t version = kTokenVersion;
  BatchHeader header;
  Leaf leaf;
  std::uint32_t leaf_index = 0;
  std::vector<Hash32> path;
  Signature signature{};
};

// The request a client may make: digest length fits the algorithm, nonce within bounds.
Result<void> check_request(HashAlgorithm algorithm, ByteView digest, ByteView nonce);

Bytes encode_leaf(const Leaf& leaf);
// domain ‖ header: the exact bytes the Ed25519 signature covers.
Bytes encode_signed_part(const BatchHeader& header);
Bytes encode_token(const Token& token);
// The same bytes from parts a batch has already encoded: its signed part and signature are
// shared by all its tokens, and each leaf was encoded once to be hashed.
Bytes encode_token(ByteView signed_part, ByteView leaf_bytes, std::uint32_t leaf_index,
                   std::span<const Hash32> path, const Signature& signature);
// Structure only (lengths, ranges, known enum values, no trailing bytes); no cryptography.
// Errors start with "malformed: " and name the field.
Result<Token> decode_token(ByteView bytes);

// Everything a relying party checks, in this order; the first failure is returned, its message
// starting with the stage: "malformed: ", "key: " (key id is not this key's), "merkle: " (the
// path does not lead to the root), "signature: ", "algorithm: ", "digest: " (not the expected).
Result<Token> verify_token(ByteView bytes, HashAlgorithm algorithm, ByteView digest,
                           const PublicKey& key);

}  // namespace taid::stamp
