// Token v1 encoding, strict decoding and the verification a relying party runs.
#include "stamp/token.hpp"

#include <algorithm>
#include <limits>

#include "core/strcat.hpp"
#include "stamp/merkle.hpp"

namespace taid::stamp {
namespace {

void put_u8(Bytes& out, std::uint8_t v) { out.push_back(v); }
void put_be(Bytes& out, std::uint64_t v, int width) {
  for (int i = width - 1; i >= 0; --i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
void put_bytes(Bytes& out, ByteView b) { out.insert(out.end(), b.begin(), b.end()); }

// A cursor over the token that names the field it could not read.
class Reader {
 public:
  explicit Reader(ByteView bytes) : bytes_(bytes) {}
  std::size_t left() const { return bytes_.size() - pos_; }

  Result<ByteView> take(std::size_t n, const char* field) {
    if (left() < n) return Error::plain(strcat("malformed: ", field, ": token ends early"));
    ByteView out = bytes_.subspan(pos_, n);
    pos_ += n;
    return out;
  }
  Result<std::uint64_t> be(int width, const char* field) {
    auto b = take(static_cast<std::size_t>(width), field);
    if (!b) return b.error();
    std::uint64_t v = 0;
    for (const std::uint8_t x : *b) v = v << 8 | x;
    return v;
  }

 private:
  ByteView bytes_;
  std::size_t pos_ = 0;
};

Error malformed(std::string what) { return Error::plain("malformed: " + std::move(what)); }

}  // namespace

std::size_t digest_length(HashAlgorithm algorithm) {
  switch (algorithm) {
    case HashAlgorithm::sha256: return 32;
    case HashAlgorithm::sha512: return 64;
  }
  return 0;
}

std::string_view algorithm_name(HashAlgorithm algorithm) {
  switch (algorithm) {
    case HashAlgorithm::sha256: return "sha256";
    case HashAlgorithm::sha512: return "sha512";
  }
  return "unknown";
}

Result<HashAlgorithm> algorithm_from_name(std::string_view name) {
  if (name == "sha256") return HashAlgorithm::sha256;
  if (name == "sha512") return HashAlgorithm::sha512;
  return Error::plain(strcat("unknown hash algorithm '", name, "' (sha256 or sha512)"));
}

std::string_view leap_name(Leap leap) {
  switch (leap) {
    case Leap::none: return "none";
    case Leap::insert: return "insert";
    case Leap::remove: return "delete";
  }
  return "unknown";
}

std::string_view status_name(SyncStatus status) {
  switch (status) {
    case SyncStatus::synchronized: return "synchronized";
    case SyncStatus::measured: return "measured";
    case SyncStatus::holdover: return "holdover";
  }
  return "unknown";
}

Result<void> check_request(HashAlgorithm algorithm, ByteView digest, ByteView nonce) {
  const std::size_t want = digest_length(algorithm);
  if (want == 0) return Error::plain("unknown hash algorithm");
  if (digest.size() != want) {
    return Error::plain(strcat(algorithm_name(algorithm), " digest must be ", want,
                               " bytes, not ", digest.size()));
  }
  if (nonce.size() > kMaxNonceBytes) {
    return Error::plain(strcat("nonce longer than ", kMaxNonceBytes, " bytes"));
  }
  return {};
}

Bytes encode_leaf(const Leaf& leaf) {
  Bytes out;
  out.reserve(8 + 3 + leaf.digest.size() + leaf.nonce.size());
  put_be(out, leaf.serial, 8);
  put_u8(out, static_cast<std::uint8_t>(leaf.algorithm));
  put_u8(out, static_cast<std::uint8_t>(leaf.digest.size()));
  put_bytes(out, leaf.digest);
  put_u8(out, static_cast<std::uint8_t>(leaf.nonce.size()));
  put_bytes(out, leaf.nonce);
  return out;
}

Bytes encode_signed_part(const BatchHeader& header) {
  Bytes out;
  out.reserve(kSignedBytes);
  put_bytes(out, ByteView(reinterpret_cast<const std::uint8_t*>(kTokenDomain.data()),
                          kTokenDomain.size()));
  put_u8(out, kTokenVersion);
  put_bytes(out, header.key_id);
  put_be(out, static_cast<std::uint64_t>(header.tai_ns), 8);
  put_be(out, header.bound_ns, 8);
  put_u8(out, static_cast<std::uint8_t>(header.leap));
  put_u8(out, static_cast<std::uint8_t>(header.status));
  put_be(out, header.leaf_count, 4);
  put_bytes(out, header.root);
  return out;
}

Bytes encode_token(const Token& token) {
  return encode_token(encode_signed_part(token.header), encode_leaf(token.leaf),
                      token.leaf_index, token.path, token.signature);
}

Bytes encode_token(ByteView signed_part, ByteView leaf_bytes, std::uint32_t leaf_index,
                   std::span<const Hash32> path, const Signature& signature) {
  Bytes out;
  out.reserve(signed_part.size() + leaf_bytes.size() + 5 + path.size() * 32 + signature.size());
  put_bytes(out, signed_part);
  put_bytes(out, leaf_bytes);
  put_be(out, leaf_index, 4);
  put_u8(out, static_cast<std::uint8_t>(path.size()));
  for (const Hash32& h : path) put_bytes(out, h);
  put_bytes(out, signature);
  return out;
}

Result<Token> decode_token(ByteView bytes) {
  Reader in(bytes);
  Token t;
  auto domain = in.take(kTokenDomain.size(), "domain");
  if (!domain) return domain.error();
  if (!std::equal(domain->begin(), domain->end(), kTokenDomain.begin(), kTokenDomain.end(),
                  [](std::uint8_t a, char b) { return a == static_cast<std::uint8_t>(b); })) {
    return malformed("domain: not \"taid timestamp token v1\\0\"");
  }
  auto version = in.be(1, "version");
  if (!version) return version.error();
  if (*version != kTokenVersion) return malformed(strcat("version: ", *version, " is not 1"));
  t.version = static_cast<std::uint8_t>(*version);

  auto key_id = in.take(8, "key id");
  if (!key_id) return key_id.error();
  std::copy(key_id->begin(), key_id->end(), t.header.key_id.begin());
  auto tai = in.be(8, "tai_ns");
  if (!tai) return tai.error();
  t.header.tai_ns = static_cast<std::int64_t>(*tai);
  auto bound = in.be(8, "bound_ns");
  if (!bound) return bound.error();
  if (*bound == 0 || *bound > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
    return malformed("bound_ns: must be 1 .. 2^63-1");
  }
  t.header.bound_ns = *bound;
  auto leap = in.be(1, "leap");
  if (!leap) return leap.error();
  if (*leap > 2) return malformed(strcat("leap: unknown value ", *leap));
  t.header.leap = static_cast<Leap>(*leap);
  auto status = in.be(1, "status");
  if (!status) return status.error();
  if (*status < 1 || *status > 3) return malformed(strcat("status: unknown value ", *status));
  t.header.status = static_cast<SyncStatus>(*status);
  auto count = in.be(4, "leaf_count");
  if (!count) return count.error();
  if (*count == 0) return malformed("leaf_count: 0");
  t.header.leaf_count = static_cast<std::uint32_t>(*count);
  auto root = in.take(32, "root");
  if (!root) return root.error();
  std::copy(root->begin(), root->end(), t.header.root.begin());

  auto serial = in.be(8, "serial");
  if (!serial) return serial.error();
  t.leaf.serial = *serial;
  auto alg = in.be(1, "algorithm");
  if (!alg) return alg.error();
  t.leaf.algorithm = static_cast<HashAlgorithm>(*alg);
  const std::size_t want = digest_length(t.leaf.algorithm);
  if (want == 0) return malformed(strcat("algorithm: unknown value ", *alg));
  auto digest_len = in.be(1, "digest length");
  if (!digest_len) return digest_len.error();
  if (*digest_len != want) {
    return malformed(strcat("digest length: ", *digest_len, " for ",
                            algorithm_name(t.leaf.algorithm), ", which is ", want));
  }
  auto digest = in.take(want, "digest");
  if (!digest) return digest.error();
  t.leaf.digest.assign(digest->begin(), digest->end());
  auto nonce_len = in.be(1, "nonce length");
  if (!nonce_len) return nonce_len.error();
  if (*nonce_len > kMaxNonceBytes) {
    return malformed(strcat("nonce length: ", *nonce_len, " > ", kMaxNonceBytes));
  }
  auto nonce = in.take(*nonce_len, "nonce");
  if (!nonce) return nonce.error();
  t.leaf.nonce.assign(nonce->begin(), nonce->end());

  auto index = in.be(4, "leaf_index");
  if (!index) return index.error();
  if (*index >= t.header.leaf_count) {
    return malformed(strcat("leaf_index: ", *index, " not below leaf_count ", *count));
  }
  t.leaf_index = static_cast<std::uint32_t>(*index);
  auto path_len = in.be(1, "path length");
  if (!path_len) return path_len.error();
  if (*path_len > kMaxPathLength) return malformed(strcat("path length: ", *path_len, " > 32"));
  t.path.resize(*path_len);
  for (Hash32& h : t.path) {
    auto node = in.take(32, "path");
    if (!node) return node.error();
    std::copy(node->begin(), node->end(), h.begin());
  }
  auto sig = in.take(kSignatureBytes, "signature");
  if (!sig) return sig.error();
  std::copy(sig->begin(), sig->end(), t.signature.begin());
  if (in.left() != 0) return malformed(strcat(in.left(), " bytes after the signature"));
  return t;
}

Result<Token> verify_token(ByteView bytes, HashAlgorithm algorithm, ByteView digest,
                           const PublicKey& key) {
  auto decoded = decode_token(bytes);
  if (!decoded) return decoded.error();
  const Token& t = *decoded;
  if (t.header.key_id != key.key_id()) {
    return Error::plain(strcat("key: token names key ", to_hex(t.header.key_id), ", this key is ",
                               to_hex(key.key_id())));
  }
  const Hash32 leaf = merkle_leaf_hash(encode_leaf(t.leaf));
  const auto root = merkle_root_from_path(leaf, t.leaf_index, t.header.leaf_count, t.path);
  if (!root) {
    return Error::plain(strcat("merkle: a path of ", t.path.size(), " does not fit leaf ",
                               t.leaf_index, " of ", t.header.leaf_count));
  }
  if (*root != t.header.root) return Error::plain("merkle: the path does not lead to the root");
  // The signed part is the token's own first kSignedBytes: no re-encoding can differ from it.
  if (!key.verify(bytes.first(kSignedBytes), t.signature)) {
    return Error::plain("signature: Ed25519 signature does not verify with this key");
  }
  if (t.leaf.algorithm != algorithm) {
    return Error::plain(strcat("algorithm: token is ", algorithm_name(t.leaf.algorithm),
                               ", expected ", algorithm_name(algorithm)));
  }
  if (!std::equal(t.leaf.digest.begin(), t.leaf.digest.end(), digest.begin(), digest.end())) {
    return Error::plain("digest: the token is for another digest");
  }
  return decoded;
}

}  // namespace taid::stamp
