// The server's answer to one datagram: checks, access, rate, then a basic, interleaved or KoD reply
// reply.
#include "server/responder.hpp"

#include <algorithm>
#include <cassert>

namespace taid::server {
namespace {

constexpr std::size_t kOriginOffset = 24;
constexpr std::size_t kTransmitOffset = 40;
constexpr uint8_t kClientMode = 3;

void store_u64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (56 - 8 * i));
}

uint64_t load_u64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return v;
}

NtpTimestamp next(NtpTimestamp t) { return NtpTimestamp::from_raw(t.raw() + 1); }

void encode_into(const ntp::Packet& packet, Reply& reply) {
  const std::vector<uint8_t> wire = ntp::encode(packet);
  assert(wire.size() == kMaxReply);
  std::copy(wire.begin(), wire.end(), reply.bytes.begin());
  reply.size = wire.size();
}

}  // namespace

std::string_view to_string(Drop reason) {
  switch (reason) {
    case Drop::too_short:
      return "too_short";
    case Drop::malformed:
      return "malformed";
    case Drop::bad_version:
      return "bad_version";
    case Drop::not_client_mode:
      return "not_client_mode";
    case Drop::zero_transmit:
      return "zero_transmit";
    case Drop::authenticated:
      return "authenticated";
    case Drop::denied:
      return "denied";
    case Drop::rate_limited:
      return "rate_limited";
  }
  return "unknown";
}

Responder::Responder(ResponderSettings settings)
    : settings_(std::move(settings)), interleave_(settings_.interleave_entries) {
  if (settings_.rate_limit) {
    rate_limiter_.emplace(*settings_.rate_limit, settings_.rate_limit_entries,
                          settings_.random_seed);
  }
}

namespace {
// RFC 8915's field types: Unique Identifier, NTS Cookie, Cookie Placeholder, Authenticator.
bool is_nts_field(uint16_t type) {
  return type == 0x0104 || type == 0x0204 || type == 0x0304 || type == 0x0404;
}
}  // namespace

std::variant<Reply, Drop> Responder::respond(const Request& request,
                                             const ServerClockState& clock) {
  ++stats_.received;
  const auto dropped = [this](Drop reason) -> std::variant<Reply, Drop> {
    ++stats_.dropped[static_cast<std::size_t>(reason)];
    return reason;
  };
  const std::span<const uint8_t> bytes = request.bytes;
  // Who asks first, as chrony does: a denied client learns nothing, whatever it sends.
  if (!settings_.access.allows(request.client.address)) return dropped(Drop::denied);
  if (bytes.size() < ntp::kHeaderSize) return dropped(Drop::too_short);
  // Version and mode from the first byte, before the codec (which refuses version 0 and mode 0
  // as malformed): the counters should say why.
  const int version = (bytes[0] >> 3) & 0x7;
  if (version == 0 || version > 4) return dropped(Drop::bad_version);
  if ((bytes[0] & 0x7) != kClientMode) return dropped(Drop::not_client_mode);
  const auto decoded = ntp::decode(bytes);
  if (!decoded) return dropped(Drop::malformed);
  const ntp::Packet& in = *decoded;
  if (in.transmit_time.is_zero()) return dropped(Drop::zero_transmit);
  // A MAC or NTS fields ask for an authenticated answer, which we cannot give (no keys): none
  // at all rather than one the client must reject. Any other extension field is ignored, as
  // RFC 7822 says and chrony does: the answer is the bare header.
  if (!in.mac.empty()) return dropped(Drop::authenticated);
  for (const ntp::ExtensionField& field : in.extensions) {
    if (is_nts_field(field.type)) return dropped(Drop::authenticated);
  }

  // chrony: the poll field tells a client polling faster than the rate limit to slow down.
  int poll = in.poll;
  RateDecision decision = RateDecision::allow;
  if (rate_limiter_) {
    decision = request.over_limit_elsewhere
                   ? rate_limiter_->decide_over_limit()
                   : rate_limiter_->decide(request.client.address, request.monotonic_ns);
    poll = std::max(poll, rate_limiter_->settings().interval_log2);
  }
  if (decision == RateDecision::drop) return dropped(Drop::rate_limited);

  Reply reply;
  ntp::Packet out;
  out.version = in.version;
  out.mode = ntp::Mode::server;
  out.poll = static_cast<int8_t>(poll);

  if (decision == RateDecision::kiss_of_death) {
    // As ntpd (RFC 5905's reference implementation) sends it: the request's own fields back,
    // every timestamp the client's transmit, so a KoD tells nothing about our clock and needs no
    // T3. (chrony fills in its real receive and transmit stamps; its clients only check the
    // origin, the leap, stratum 0 and the code.)
    out.leap = ntp::Leap::unsynchronized;
    out.stratum = 0;
    out.precision = in.precision;
    out.root_delay = in.root_delay;
    out.root_dispersion = in.root_dispersion;
    out.reference_id = ntp::kiss_code("RATE");
    out.reference_time = in.reference_time;
    out.origin_time = in.transmit_time;
    out.receive_time = in.transmit_time;
    out.transmit_time = in.transmit_time;
    encode_into(out, reply);
    reply.kiss_of_death = true;
    reply.receive_time = NtpTimestamp{};  // nothing to report a TX stamp under
    ++stats_.replied;
    ++stats_.kiss_of_death;
    return reply;
  }

  out.leap = clock.leap;
  out.stratum = clock.stratum;
  out.precision = clock.precision_log2;
  out.root_delay = clock.root_delay;
  out.root_dispersion = clock.root_dispersion;
  out.reference_id = clock.reference_id;
  out.reference_time = clock.reference_time;

  // Interleaved (RFC 9769 §3, chrony's NCR_ProcessRxUnknown): an NTPv4 request whose origin is
  // the receive stamp of one of our earlier replies, with its receive and transmit fields
  // different (a basic client leaves receive zero or equal), gets that reply's transmit stamp;
  // its origin field then echoes the request's receive field, which is how the client knows.
  std::optional<NtpTimestamp> previous_tx;
  if (in.version == 4 && !in.origin_time.is_zero() && in.receive_time != in.transmit_time) {
    previous_tx = interleave_.transmit_of(in.origin_time);
  }

  // T2 as sent: unique in the table (the key the client will echo), and never equal to the
  // origin or transmit field of the same reply (chrony avoids both, so a client can tell the
  // modes apart). One 2^-32 s unit per bump.
  NtpTimestamp t2 = request.receive_time;
  const NtpTimestamp origin = previous_tx ? in.receive_time : in.transmit_time;
  while (t2.is_zero() || interleave_.contains(t2) || t2 == origin ||
         (previous_tx && t2 == *previous_tx)) {
    t2 = next(t2);
  }
  out.origin_time = origin;
  out.receive_time = t2;
  if (previous_tx) {
    out.transmit_time = *previous_tx;
    interleave_.disable(in.origin_time);
  }
  interleave_.insert(t2);

  encode_into(out, reply);
  reply.interleaved = previous_tx.has_value();
  reply.needs_transmit = !previous_tx.has_value();
  reply.receive_time = t2;
  ++stats_.replied;
  if (reply.interleaved) ++stats_.interleaved;
  return reply;
}

void Responder::patch_transmit(Reply& reply, NtpTimestamp transmit_time) {
  if (!reply.needs_transmit || reply.size < kMaxReply) return;
  const NtpTimestamp origin = NtpTimestamp::from_raw(load_u64(&reply.bytes[kOriginOffset]));
  // Never equal to the receive or origin field (chrony: lets the client detect the mode).
  while (transmit_time.is_zero() || transmit_time == reply.receive_time ||
         transmit_time == origin) {
    transmit_time = next(transmit_time);
  }
  store_u64(&reply.bytes[kTransmitOffset], transmit_time.raw());
  reply.needs_transmit = false;
  interleave_.set_transmit(reply.receive_time, transmit_time);
}

void Responder::on_transmit_stamp(NtpTimestamp receive_time, NtpTimestamp transmit_time) {
  // A TX stamp more than a second away from its own reply's RX stamp is not that reply's (a
  // late report after the clock was stepped): keep what there is (chrony's MAX_TX_DELAY).
  const Duration delay = transmit_time - receive_time;
  if (delay < -Duration::from_s(1) || delay > Duration::from_s(1)) return;
  interleave_.set_transmit(receive_time, transmit_time);
}

}  // namespace taid::server
