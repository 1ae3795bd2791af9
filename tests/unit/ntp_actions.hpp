// Helpers shared by the exchange tests: pick the actions of one kind out of what the exchange
// returned, and make a server's reply to a request.
#pragma once

#include <gtest/gtest.h>

#include <variant>
#include <vector>

#include "core/time.hpp"
#include "ntp/exchange.hpp"
#include "ntp/packet.hpp"

namespace taid::ntp {

// Every action of type T, in order.
template <typename T>
std::vector<T> all_of(const Actions& actions) {
  std::vector<T> out;
  for (const Action& a : actions)
    if (const T* t = std::get_if<T>(&a)) out.push_back(*t);
  return out;
}

// The one action of type T; a test failure (and a default T) when there is not exactly one.
template <typename T>
T only(const Actions& actions) {
  auto v = all_of<T>(actions);
  EXPECT_EQ(v.size(), 1U);
  return v.empty() ? T{} : v.front();
}

// A server reply to `request`, received at T2 and sent at T3 (server clock): stratum 2, a valid
// header, the request's cookie echoed.
inline Packet reply_to(const Packet& request, UtcTime t2, UtcTime t3) {
  Packet r;
  r.mode = Mode::server;
  r.stratum = 2;
  r.poll = request.poll;
  r.precision = -20;
  r.reference_id = 0x7f000001;
  r.reference_time = NtpTimestamp::from_utc(t2 - Duration::from_s(10));
  r.origin_time = request.transmit_time;
  r.receive_time = NtpTimestamp::from_utc(t2);
  r.transmit_time = NtpTimestamp::from_utc(t3);
  return r;
}

}  // namespace taid::ntp
