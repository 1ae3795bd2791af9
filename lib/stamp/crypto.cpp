// SHA-256/512 and Ed25519 through OpenSSL EVP; no cryptography of our own.
#include "stamp/crypto.hpp"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <algorithm>
#include <cstdlib>

namespace taid::stamp {
namespace {

template <std::size_t N>
std::array<std::uint8_t, N> digest(const EVP_MD* md, ByteView data) {
  std::array<std::uint8_t, N> out{};
  unsigned int len = 0;
  // EVP_Digest fails only on allocation failure or a broken OpenSSL: that is fatal, not input.
  if (EVP_Digest(data.data(), data.size(), out.data(), &len, md, nullptr) != 1 || len != N) {
    std::abort();
  }
  return out;
}

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;

std::string bio_text(BIO* bio) {
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio, &data);
  return len > 0 ? std::string(data, static_cast<std::size_t>(len)) : std::string();
}

Result<RawPublicKey> raw_public(EVP_PKEY* pkey) {
  if (EVP_PKEY_get_id(pkey) != EVP_PKEY_ED25519) return Error::plain("key is not Ed25519");
  RawPublicKey raw{};
  std::size_t len = raw.size();
  if (EVP_PKEY_get_raw_public_key(pkey, raw.data(), &len) != 1 || len != raw.size()) {
    return Error::plain("cannot read the raw Ed25519 public key");
  }
  return raw;
}

}  // namespace

// SHA-256 is the Merkle tree's hash, two per token on the signing path. EVP_Digest() with
// EVP_sha256() makes a context and looks the algorithm up in the provider on every call; an
// EVP_MD fetched once and one context per thread, reused, leave only the hashing.
Hash32 sha256_parts(std::initializer_list<ByteView> parts) {
  static const EVP_MD* const md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  thread_local const MdCtxPtr ctx(EVP_MD_CTX_new());
  Hash32 out{};
  unsigned int len = 0;
  bool ok = md != nullptr && ctx && EVP_DigestInit_ex(ctx.get(), md, nullptr) == 1;
  for (const ByteView part : parts)
    ok = ok && EVP_DigestUpdate(ctx.get(), part.data(), part.size()) == 1;
  // Fails only on allocation failure or a broken OpenSSL: that is fatal, not input.
  if (!ok || EVP_DigestFinal_ex(ctx.get(), out.data(), &len) != 1 || len != out.size()) {
    std::abort();
  }
  return out;
}

Hash32 sha256(ByteView data) { return sha256_parts({data}); }
std::array<std::uint8_t, 64> sha512(ByteView data) { return digest<64>(EVP_sha512(), data); }

std::string to_hex(ByteView bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (const std::uint8_t b : bytes) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 0xf]);
  }
  return out;
}

Result<Bytes> from_hex(std::string_view hex) {
  if (hex.size() % 2 != 0) return Error::plain("hex: odd number of digits");
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  Bytes out;
  out.reserve(hex.size() / 2);
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    const int hi = nibble(hex[i]);
    const int lo = nibble(hex[i + 1]);
    if (hi < 0 || lo < 0) return Error::plain("hex: not a hex digit");
    out.push_back(static_cast<std::uint8_t>(hi << 4 | lo));
  }
  return out;
}

Result<PublicKey> PublicKey::from_raw(ByteView raw) {
  if (raw.size() != 32) return Error::plain("Ed25519 public key: not 32 bytes");
  RawPublicKey key{};
  std::copy(raw.begin(), raw.end(), key.begin());
  return PublicKey(key);
}

Result<PublicKey> PublicKey::from_pem(std::string_view pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return Error::plain("out of memory");
  PkeyPtr pkey(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  if (!pkey) return Error::plain("not a PEM public key");
  auto raw = raw_public(pkey.get());
  if (!raw) return raw.error();
  return PublicKey(*raw);
}

Result<PublicKey> PublicKey::parse(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ' || text.back() == '\r')) {
    text.remove_suffix(1);
  }
  while (!text.empty() && (text.front() == '\n' || text.front() == ' ')) text.remove_prefix(1);
  if (text.starts_with("-----BEGIN")) return from_pem(text);
  if (text.size() != 64) return Error::plain("public key: neither PEM nor 64 hex digits");
  auto raw = from_hex(text);
  if (!raw) return Error::plain("public key: " + raw.error().context);
  return from_raw(*raw);
}

std::string PublicKey::pem() const {
  PkeyPtr pkey(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, raw_.data(), raw_.size()));
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!pkey || !bio || PEM_write_bio_PUBKEY(bio.get(), pkey.get()) != 1) std::abort();
  return bio_text(bio.get());
}

KeyId PublicKey::key_id() const {
  const Hash32 h = sha256(raw_);
  KeyId id{};
  std::copy_n(h.begin(), id.size(), id.begin());
  return id;
}

bool PublicKey::verify(ByteView message, const Signature& signature) const {
  PkeyPtr pkey(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, raw_.data(), raw_.size()));
  if (!pkey) return false;  // OpenSSL refuses some encodings outright
  MdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, pkey.get()) != 1) {
    return false;
  }
  return EVP_DigestVerify(ctx.get(), signature.data(), signature.size(), message.data(),
                          message.size()) == 1;
}

void SigningKey::Free::operator()(void* pkey) const {
  EVP_PKEY_free(static_cast<EVP_PKEY*>(pkey));
}

SigningKey::~SigningKey() = default;

Result<SigningKey> SigningKey::adopt(void* pkey) {
  PkeyPtr owned(static_cast<EVP_PKEY*>(pkey));
  auto raw = raw_public(owned.get());
  if (!raw) return raw.error();
  return SigningKey(owned.release(), PublicKey(*raw));
}

Result<SigningKey> SigningKey::generate() {
  EVP_PKEY* pkey = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  if (pkey == nullptr) return Error::plain("Ed25519 key generation failed");
  return adopt(pkey);
}

Result<SigningKey> SigningKey::from_seed(ByteView seed) {
  if (seed.size() != 32) return Error::plain("Ed25519 seed: not 32 bytes");
  EVP_PKEY* pkey =
      EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, seed.data(), seed.size());
  if (pkey == nullptr) return Error::plain("Ed25519 key from seed failed");
  return adopt(pkey);
}

Result<SigningKey> SigningKey::from_pem(std::string_view pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return Error::plain("out of memory");
  // An empty passphrase callback: an encrypted key fails here instead of prompting on a tty.
  auto no_passphrase = [](char*, int, int, void*) { return 0; };
  EVP_PKEY* pkey = PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr);
  if (pkey == nullptr) return Error::plain("not an unencrypted PEM private key");
  return adopt(pkey);
}

std::string SigningKey::pem() const {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), static_cast<EVP_PKEY*>(pkey_.get()), nullptr,
                                       nullptr, 0, nullptr, nullptr) != 1) {
    std::abort();
  }
  return bio_text(bio.get());
}

Signature SigningKey::sign(ByteView message) const {
  Signature sig{};
  std::size_t len = sig.size();
  MdCtxPtr ctx(EVP_MD_CTX_new());
  // Ed25519 takes the whole message in one call and no digest (RFC 8032 "pure" mode).
  if (!ctx ||
      EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr,
                         static_cast<EVP_PKEY*>(pkey_.get())) != 1 ||
      EVP_DigestSign(ctx.get(), sig.data(), &len, message.data(), message.size()) != 1 ||
      len != sig.size()) {
    std::abort();
  }
  return sig;
}

}  // namespace taid::stamp
