// libFuzzer target: the token decoder and verifier, and the signing socket's request codec, on
// arbitrary bytes. The first byte picks the target (even: a token, odd: a stream of request
// frames); the rest is the input. A token that decodes re-encodes to exactly its bytes (one
// encoding per token) and verification never accepts what does not decode; a request body that
// decodes re-encodes to exactly its bytes; frames fed in two pieces give the same bodies.
// Seeds (corpus/token_fuzz): the vectors of tests/data/stamp/vectors.json (tokens and a request).
#include <cstdint>
#include <cstdlib>

#include "stamp/token.hpp"
#include "stamp/wire.hpp"

namespace {

using namespace taid::stamp;

const PublicKey& test_key() {
  // RFC 8032 TEST 1, the key of the seed tokens: mutations of them reach the signature check.
  static const PublicKey key(RawPublicKey{
      0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64, 0x07, 0x3a,
      0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68, 0xf7, 0x07, 0x51, 0x1a});
  return key;
}

void fuzz_token(ByteView in) {
  const auto decoded = decode_token(in);
  if (decoded) {
    const Bytes again = encode_token(*decoded);
    if (again.size() != in.size() || !std::equal(again.begin(), again.end(), in.begin())) {
      std::abort();
    }
  }
  const HashAlgorithm alg = decoded ? decoded->leaf.algorithm : HashAlgorithm::sha256;
  const Bytes digest = decoded ? decoded->leaf.digest : Bytes(32);
  const auto verified = verify_token(in, alg, digest, test_key());
  if (verified && !decoded) std::abort();
  if (!verified && verified.error().context.empty()) std::abort();
}

void fuzz_requests(ByteView in) {
  FrameDecoder whole(kMaxRequestBody);
  FrameDecoder halves(kMaxRequestBody);
  whole.feed(in);
  halves.feed(in.first(in.size() / 2));
  std::vector<Bytes> a;
  std::vector<Bytes> b;
  while (auto body = whole.next()) a.push_back(*body);
  while (auto body = halves.next()) b.push_back(*body);
  halves.feed(in.subspan(in.size() / 2));
  while (auto body = halves.next()) b.push_back(*body);
  if (a != b || whole.oversized() != halves.oversized()) std::abort();
  for (const Bytes& body : a) {
    const DecodedRequest d = decode_request_body(body);
    if (d.code != ReplyCode::ok) {
      if (d.error.empty()) std::abort();
      continue;
    }
    if (encode_request_body(d.request) != body) std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const ByteView in(data + 1, size - 1);
  if (data[0] % 2 == 0) {
    fuzz_token(in);
  } else {
    fuzz_requests(in);
  }
  return 0;
}
