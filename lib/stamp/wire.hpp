// The signing socket's framing and messages (sans-IO): what the daemon and clients exchange.
//
// Every message is a frame: u32 big-endian body length, then the body (docs/TOKEN.md).
//   request body: u8 version 1 | u8 algorithm | u8 digest_len | digest | u8 nonce_len | nonce
//   reply body:   u8 code | payload (code 0: the token; otherwise a UTF-8 error text)
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "stamp/crypto.hpp"
#include "stamp/token.hpp"

namespace taid::stamp {

inline constexpr std::uint8_t kWireVersion = 1;
inline constexpr std::size_t kMaxRequestBody = 3 + 64 + 1 + kMaxNonceBytes;  // 132
// A token is at most 1319 bytes; an error text is cut to fit too.
inline constexpr std::size_t kMaxReplyBody = 2048;

enum class ReplyCode : std::uint8_t {
  ok = 0,
  malformed = 1,        // bad frame, version or lengths
  bad_digest = 2,       // unknown algorithm, or a digest length that does not fit it
  unsynchronized = 3,   // taid is not synchronized
  tai_unvouched = 4,    // the TAI − UTC offset is not vouched for
  bound_too_large = 5,  // the error bound exceeds maxsignbound
  not_allowed = 6,      // the caller is not on the allow list (SO_PEERCRED)
  busy = 7,             // too many connections or pending requests
  internal = 8,         // serial or key store failed
};
std::string_view reply_code_name(ReplyCode code);

struct WireRequest {
  HashAlgorithm algorithm = HashAlgorithm::sha256;
  Bytes digest;
  Bytes nonce;
};

// A request body decoded: code ok with the request, or the code and text to reply with.
struct DecodedRequest {
  ReplyCode code = ReplyCode::ok;
  std::string error;
  WireRequest request;
};

struct WireReply {
  ReplyCode code = ReplyCode::ok;
  Bytes payload;  // the token when ok, else the error text's bytes
};

// body → u32 length ‖ body.
Bytes frame(ByteView body);
Bytes encode_request_body(const WireRequest& request);
DecodedRequest decode_request_body(ByteView body);
Bytes encode_reply_body(ReplyCode code, ByteView payload);
Bytes encode_error_reply_body(ReplyCode code, std::string_view text);
Result<WireReply> decode_reply_body(ByteView body);

// Reassembles frames from a byte stream in pieces of any size.
class FrameDecoder {
 public:
  explicit FrameDecoder(std::size_t max_body) : max_body_(max_body) {}
  void feed(ByteView bytes);
  // The next complete body, or nothing yet. Once a frame announces more than max_body bytes,
  // oversized() is true for good and nothing more comes out: reply malformed and close.
  std::optional<Bytes> next();
  bool oversized() const { return oversized_; }
  std::size_t buffered() const { return buffer_.size() - start_; }

 private:
  std::size_t max_body_;
  // Bytes before start_ are consumed: frames are taken by moving start_, and the buffer is
  // compacted once per feed, not once per frame (many pipelined frames arrive in one read).
  Bytes buffer_;
  std::size_t start_ = 0;
  bool oversized_ = false;
};

}  // namespace taid::stamp
