// Signing-socket framing and message codec.
#include "stamp/wire.hpp"

#include "core/strcat.hpp"

namespace taid::stamp {

std::string_view reply_code_name(ReplyCode code) {
  switch (code) {
    case ReplyCode::ok: return "ok";
    case ReplyCode::malformed: return "malformed";
    case ReplyCode::bad_digest: return "bad-digest";
    case ReplyCode::unsynchronized: return "unsynchronized";
    case ReplyCode::tai_unvouched: return "tai-unvouched";
    case ReplyCode::bound_too_large: return "bound-too-large";
    case ReplyCode::not_allowed: return "not-allowed";
    case ReplyCode::busy: return "busy";
    case ReplyCode::internal: return "internal";
  }
  return "unknown";
}

Bytes frame(ByteView body) {
  Bytes out;
  out.reserve(4 + body.size());
  const auto n = static_cast<std::uint32_t>(body.size());
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<std::uint8_t>(n >> shift));
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

Bytes encode_request_body(const WireRequest& request) {
  Bytes out;
  out.push_back(kWireVersion);
  out.push_back(static_cast<std::uint8_t>(request.algorithm));
  out.push_back(static_cast<std::uint8_t>(request.digest.size()));
  out.insert(out.end(), request.digest.begin(), request.digest.end());
  out.push_back(static_cast<std::uint8_t>(request.nonce.size()));
  out.insert(out.end(), request.nonce.begin(), request.nonce.end());
  return out;
}

DecodedRequest decode_request_body(ByteView body) {
  DecodedRequest out;
  auto fail = [&](ReplyCode code, std::string text) {
    out.code = code;
    out.error = std::move(text);
    return out;
  };
  if (body.size() < 4) return fail(ReplyCode::malformed, "request too short");
  if (body.size() > kMaxRequestBody) return fail(ReplyCode::malformed, "request too long");
  if (body[0] != kWireVersion) {
    return fail(ReplyCode::malformed, strcat("request version ", int{body[0]}, " is not 1"));
  }
  const std::size_t digest_len = body[2];
  if (body.size() < 4 + digest_len) return fail(ReplyCode::malformed, "digest cut short");
  const std::size_t nonce_len = body[3 + digest_len];
  if (body.size() != 4 + digest_len + nonce_len) {
    return fail(ReplyCode::malformed, "nonce length does not match the request's size");
  }
  out.request.algorithm = static_cast<HashAlgorithm>(body[1]);
  out.request.digest.assign(body.begin() + 3, body.begin() + 3 + static_cast<long>(digest_len));
  out.request.nonce.assign(body.begin() + 4 + static_cast<long>(digest_len), body.end());
  if (auto ok = check_request(out.request.algorithm, out.request.digest, out.request.nonce); !ok) {
    const bool nonce = nonce_len > kMaxNonceBytes;
    return fail(nonce ? ReplyCode::malformed : ReplyCode::bad_digest, ok.error().context);
  }
  return out;
}

Bytes encode_reply_body(ReplyCode code, ByteView payload) {
  Bytes out;
  out.reserve(1 + payload.size());
  out.push_back(static_cast<std::uint8_t>(code));
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

Bytes encode_error_reply_body(ReplyCode code, std::string_view text) {
  if (text.size() > kMaxReplyBody - 1) text = text.substr(0, kMaxReplyBody - 1);
  return encode_reply_body(
      code, ByteView(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
}

Result<WireReply> decode_reply_body(ByteView body) {
  if (body.empty()) return Error::plain("empty reply");
  if (body[0] > static_cast<std::uint8_t>(ReplyCode::internal)) {
    return Error::plain(strcat("unknown reply code ", int{body[0]}));
  }
  return WireReply{static_cast<ReplyCode>(body[0]), Bytes(body.begin() + 1, body.end())};
}

void FrameDecoder::feed(ByteView bytes) {
  if (start_ > 0) {
    buffer_.erase(buffer_.begin(), buffer_.begin() + static_cast<long>(start_));
    start_ = 0;
  }
  buffer_.insert(buffer_.end(), bytes.begin(), bytes.end());
}

std::optional<Bytes> FrameDecoder::next() {
  if (oversized_ || buffered() < 4) return std::nullopt;
  const std::uint8_t* p = buffer_.data() + start_;
  const std::size_t n = std::size_t{p[0]} << 24 | std::size_t{p[1]} << 16 |
                        std::size_t{p[2]} << 8 | p[3];
  if (n > max_body_) {
    oversized_ = true;
    buffer_.clear();
    start_ = 0;
    return std::nullopt;
  }
  if (buffered() < 4 + n) return std::nullopt;
  Bytes body(p + 4, p + 4 + n);
  start_ += 4 + n;
  if (start_ == buffer_.size()) {  // all taken: the usual case, and no bytes to move
    buffer_.clear();
    start_ = 0;
  }
  return body;
}

}  // namespace taid::stamp
