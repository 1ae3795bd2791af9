// Hashes (SHA-256/512) and Ed25519 keys for the stamp tokens, through OpenSSL's EVP only.
//
// Sans-IO: keys live in memory; PEM goes in and out as strings (key_store.hpp does the file).
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"

namespace taid::stamp {

using Bytes = std::vector<std::uint8_t>;
using ByteView = std::span<const std::uint8_t>;
using Hash32 = std::array<std::uint8_t, 32>;
using KeyId = std::array<std::uint8_t, 8>;
using Signature = std::array<std::uint8_t, 64>;
using RawPublicKey = std::array<std::uint8_t, 32>;

Hash32 sha256(ByteView data);
// SHA-256 over the parts one after the other, without copying them together.
Hash32 sha256_parts(std::initializer_list<ByteView> parts);
std::array<std::uint8_t, 64> sha512(ByteView data);

std::string to_hex(ByteView bytes);
// Lower- or upper-case hex, even length, nothing else.
Result<Bytes> from_hex(std::string_view hex);

// An Ed25519 public key: the raw 32 bytes of RFC 8032.
class PublicKey {
 public:
  explicit PublicKey(const RawPublicKey& raw) : raw_(raw) {}
  static Result<PublicKey> from_raw(ByteView raw);
  // SubjectPublicKeyInfo PEM ("-----BEGIN PUBLIC KEY-----").
  static Result<PublicKey> from_pem(std::string_view pem);
  // Raw hex (64 characters) or PEM, whichever the text is.
  static Result<PublicKey> parse(std::string_view text);

  const RawPublicKey& raw() const { return raw_; }
  std::string hex() const { return to_hex(raw_); }
  std::string pem() const;
  // The first 8 bytes of SHA-256 of the raw key: names the key inside a token.
  KeyId key_id() const;
  bool verify(ByteView message, const Signature& signature) const;

  friend bool operator==(const PublicKey&, const PublicKey&) = default;

 private:
  RawPublicKey raw_;
};

// An Ed25519 private key (move-only; owns an EVP_PKEY).
class SigningKey {
 public:
  static Result<SigningKey> generate();
  // RFC 8032's 32-byte private seed: deterministic keys for test vectors.
  static Result<SigningKey> from_seed(ByteView seed);
  // PKCS#8 PEM ("-----BEGIN PRIVATE KEY-----"), unencrypted; anything but Ed25519 is refused.
  static Result<SigningKey> from_pem(std::string_view pem);

  SigningKey(SigningKey&&) noexcept = default;
  SigningKey& operator=(SigningKey&&) noexcept = default;
  ~SigningKey();

  std::string pem() const;
  const PublicKey& public_key() const { return public_key_; }
  // Ed25519 (pure, no pre-hash): EVP_DigestSign with a NULL digest.
  Signature sign(ByteView message) const;

 private:
  struct Free {
    void operator()(void* pkey) const;
  };
  SigningKey(void* pkey, PublicKey public_key) : pkey_(pkey), public_key_(public_key) {}
  static Result<SigningKey> adopt(void* pkey);
  std::unique_ptr<void, Free> pkey_;
  PublicKey public_key_;
};

}  // namespace taid::stamp
