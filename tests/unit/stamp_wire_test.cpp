// Signing-socket codec: request/reply round trips, refusals with their codes, frame reassembly.
#include <gtest/gtest.h>

#include "stamp/wire.hpp"

namespace taid::stamp {
namespace {

Bytes text_bytes(std::string_view s) { return Bytes(s.begin(), s.end()); }

TEST(StampWire, RequestRoundTripsWithExactBytes) {
  const WireRequest req{HashAlgorithm::sha256, Bytes(32, 0xaa), Bytes{1, 2, 3}};
  const Bytes body = encode_request_body(req);
  ASSERT_EQ(body.size(), 1 + 1 + 1 + 32 + 1 + 3u);
  EXPECT_EQ(to_hex(ByteView(body).first(3)), "010120");
  EXPECT_EQ(to_hex(frame(body)).substr(0, 8), "00000027");
  const DecodedRequest d = decode_request_body(body);
  ASSERT_EQ(d.code, ReplyCode::ok) << d.error;
  EXPECT_EQ(d.request.algorithm, HashAlgorithm::sha256);
  EXPECT_EQ(d.request.digest, req.digest);
  EXPECT_EQ(d.request.nonce, req.nonce);
  // The largest request: SHA-512 and a 64-byte nonce.
  const Bytes big = encode_request_body({HashAlgorithm::sha512, Bytes(64, 1), Bytes(64, 2)});
  EXPECT_EQ(big.size(), kMaxRequestBody);
  EXPECT_EQ(decode_request_body(big).code, ReplyCode::ok);
}

TEST(StampWire, BadRequestsGetTheirCodes) {
  const Bytes good = encode_request_body({HashAlgorithm::sha256, Bytes(32, 0), {}});
  for (std::size_t n = 0; n < good.size(); ++n) {
    EXPECT_EQ(decode_request_body(ByteView(good).first(n)).code, ReplyCode::malformed) << n;
  }
  Bytes longer = good;
  longer.push_back(0);
  EXPECT_EQ(decode_request_body(longer).code, ReplyCode::malformed);
  Bytes version = good;
  version[0] = 2;
  EXPECT_EQ(decode_request_body(version).error, "request version 2 is not 1");
  Bytes alg = good;
  alg[1] = 2;  // sha512 with 32 bytes
  const DecodedRequest d = decode_request_body(alg);
  EXPECT_EQ(d.code, ReplyCode::bad_digest);
  EXPECT_EQ(d.error, "sha512 digest must be 64 bytes, not 32");
  alg[1] = 9;
  EXPECT_EQ(decode_request_body(alg).code, ReplyCode::bad_digest);
  const Bytes long_nonce = encode_request_body({HashAlgorithm::sha256, Bytes(32, 0), Bytes(65)});
  EXPECT_EQ(decode_request_body(long_nonce).code, ReplyCode::malformed);
  EXPECT_EQ(decode_request_body(Bytes(kMaxRequestBody + 1, 1)).error, "request too long");
}

TEST(StampWire, RepliesRoundTrip) {
  const Bytes token{9, 8, 7};
  auto r = decode_reply_body(encode_reply_body(ReplyCode::ok, token));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->code, ReplyCode::ok);
  EXPECT_EQ(r->payload, token);
  r = decode_reply_body(encode_error_reply_body(ReplyCode::unsynchronized, "not synchronized"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->code, ReplyCode::unsynchronized);
  EXPECT_EQ(r->payload, text_bytes("not synchronized"));
  EXPECT_EQ(reply_code_name(ReplyCode::bound_too_large), "bound-too-large");
  EXPECT_FALSE(decode_reply_body({}));
  EXPECT_FALSE(decode_reply_body(Bytes{9}));
  EXPECT_EQ(encode_error_reply_body(ReplyCode::internal, std::string(5000, 'x')).size(),
            kMaxReplyBody);
}

TEST(StampWire, FramesReassembleFromSingleBytesAndOversizeStops) {
  const Bytes a = frame(encode_request_body({HashAlgorithm::sha256, Bytes(32, 1), {}}));
  const Bytes b = frame(encode_request_body({HashAlgorithm::sha512, Bytes(64, 2), Bytes(5)}));
  Bytes stream = a;
  stream.insert(stream.end(), b.begin(), b.end());
  FrameDecoder dec(kMaxRequestBody);
  std::vector<Bytes> bodies;
  for (const std::uint8_t byte : stream) {  // one byte at a time, as a slow client sends
    dec.feed(ByteView(&byte, 1));
    while (auto body = dec.next()) bodies.push_back(*body);
  }
  ASSERT_EQ(bodies.size(), 2u);
  EXPECT_EQ(frame(bodies[0]), a);
  EXPECT_EQ(frame(bodies[1]), b);
  EXPECT_EQ(dec.buffered(), 0u);
  // A frame announcing 133 bytes is refused before they arrive.
  FrameDecoder small(kMaxRequestBody);
  small.feed(Bytes{0, 0, 0, 133});
  EXPECT_FALSE(small.next());
  EXPECT_TRUE(small.oversized());
  small.feed(a);
  EXPECT_FALSE(small.next());
  // An empty frame is a frame (its body then fails as malformed).
  FrameDecoder empty(kMaxRequestBody);
  empty.feed(Bytes{0, 0, 0, 0});
  auto body = empty.next();
  ASSERT_TRUE(body);
  EXPECT_TRUE(body->empty());
  EXPECT_EQ(decode_request_body(*body).code, ReplyCode::malformed);
}

TEST(StampWire, ManyFramesInOneFeedComeOutInOrderWithAPartialOneKept) {
  // What a pipelining client's one send looks like to the server's one read: 3 whole frames and
  // the first 10 bytes of a fourth.
  std::vector<Bytes> frames;
  Bytes stream;
  for (std::uint8_t i = 0; i < 4; ++i) {
    frames.push_back(frame(encode_request_body({HashAlgorithm::sha256, Bytes(32, i), Bytes(i)})));
    stream.insert(stream.end(), frames.back().begin(), frames.back().end());
  }
  const std::size_t cut = 3 * frames[0].size() + 3 + 10;  // frame i is 40 + i bytes
  FrameDecoder dec(kMaxRequestBody);
  dec.feed(ByteView(stream.data(), cut));
  for (std::size_t i = 0; i < 3; ++i) {
    auto body = dec.next();
    ASSERT_TRUE(body) << i;
    EXPECT_EQ(frame(*body), frames[i]);
  }
  EXPECT_FALSE(dec.next());
  EXPECT_EQ(dec.buffered(), 10u);
  dec.feed(ByteView(stream.data() + cut, stream.size() - cut));
  auto last = dec.next();
  ASSERT_TRUE(last);
  EXPECT_EQ(frame(*last), frames[3]);
  EXPECT_EQ(dec.buffered(), 0u);
}

}  // namespace
}  // namespace taid::stamp
