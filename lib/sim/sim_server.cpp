// SimServer: basic-mode replies of a simulated stratum-1 server, through the real codec.
#include "sim/sim_server.hpp"

namespace taid::sim {

UtcTime SimServer::clock_at(int64_t t_ns) const {
  const UtcTime truth = model_.leap_clock == ServerModel::LeapClock::follows
                            ? truth_.utc_at(t_ns)
                            : truth_.start() + Duration::from_ns(t_ns);
  switch (model_.kind) {
    case ServerModel::Kind::truthful:
    case ServerModel::Kind::dying:
      return truth;
    case ServerModel::Kind::lying:
      return truth + model_.offset;
    case ServerModel::Kind::stepping:
      return t_ns >= model_.at.ns() ? truth + model_.offset : truth;
  }
  return truth;
}

ntp::Leap SimServer::leap_at(int64_t t_ns) const {
  const auto leap_of = [](int direction) {
    return direction > 0 ? ntp::Leap::add_second : ntp::Leap::delete_second;
  };
  switch (model_.announce) {
    case ServerModel::LeapAnnounce::none:
      return ntp::Leap::none;
    case ServerModel::LeapAnnounce::truth:
      for (const Truth::Leap& leap : truth_.leaps())
        if (t_ns >= leap.day_start_t_ns && t_ns < leap.done_t_ns) return leap_of(leap.direction);
      return ntp::Leap::none;
    case ServerModel::LeapAnnounce::made_up: {
      // Through the day before the midnight on the server's own clock.
      const UtcTime now = clock_at(t_ns);
      const UtcTime midnight = model_.made_up_leap.midnight;
      if (model_.made_up_leap.direction != 0 && now < midnight &&
          now >= midnight - Duration::from_s(86400))
        return leap_of(model_.made_up_leap.direction);
      return ntp::Leap::none;
    }
  }
  return ntp::Leap::none;
}

std::optional<ServerReply> SimServer::on_request(std::span<const uint8_t> bytes,
                                                 int64_t arrival_ns) {
  ++requests_;
  if (model_.kind == ServerModel::Kind::dying && arrival_ns >= model_.at.ns()) return std::nullopt;
  auto request = ntp::decode(bytes);
  if (!request || request->mode != ntp::Mode::client) return std::nullopt;

  const UtcTime t2 = clock_at(arrival_ns);
  const int64_t sent_ns = arrival_ns + model_.processing.ns();
  // Read from its clock again, as a real server does: across its inserted second T3 may precede T2.
  const UtcTime t3 = clock_at(sent_ns);

  ntp::Packet reply;
  reply.leap = leap_at(arrival_ns);
  reply.version = request->version;
  reply.mode = ntp::Mode::server;
  reply.stratum = model_.stratum;
  reply.poll = request->poll;
  reply.precision = model_.precision_log2;
  reply.root_delay = NtpShort::from_duration(model_.root_delay);
  reply.root_dispersion = NtpShort::from_duration(model_.root_dispersion);
  reply.reference_id = model_.reference_id;
  // The reference clock last set it at the latest whole 16 s of its own clock.
  const int64_t period_ns = 16'000'000'000;
  reply.reference_time =
      NtpTimestamp::from_utc(UtcTime::from_unix_ns(floor_div(t2.unix_ns(), period_ns) * period_ns));
  reply.origin_time = request->transmit_time;  // basic mode: echo the client's transmit field
  reply.receive_time = NtpTimestamp::from_utc(t2);
  reply.transmit_time = NtpTimestamp::from_utc(t3);
  ++replies_;
  return ServerReply{ntp::encode(reply), sent_ns};
}

}  // namespace taid::sim
