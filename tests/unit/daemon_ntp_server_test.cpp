// Tests for daemon/ntp_server on loopback (no privilege): real sockets, real kernel stamps.
//
// The server binds 127.0.0.1 on a port the kernel picks; a client socket sends requests built
// with lib/ntp's codec and checks what comes back: T2/T3 from this host's clock (the server
// and the client read the same clock, so the offset is the loopback's asymmetry only), the kernel
// stamps counted, interleaved replies carrying the kernel TX stamp of the previous reply, drops
// counted by reason while good clients keep being served, two workers sharing one port.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "core/fd.hpp"
#include "core/time.hpp"
#include "daemon/ntp_server.hpp"
#include "ntp/packet.hpp"
#include "server/access.hpp"

namespace taid::daemon {
namespace {

server::ServerClockState local_clock() {
  server::ServerClockState clock;
  clock.leap = ntp::Leap::none;
  clock.stratum = 10;
  clock.precision_log2 = -20;
  clock.reference_id = 0x7F7F0101;
  clock.root_delay = NtpShort::from_raw(0x10);
  clock.root_dispersion = NtpShort::from_raw(0x20);
  clock.reference_time = NtpTimestamp::from_utc(realtime_now() - Duration::from_s(1));
  return clock;
}

NtpServerSettings loopback_settings(int workers = 1) {
  NtpServerSettings settings;
  settings.bind_addresses = {"127.0.0.1"};
  settings.port = 0;  // the kernel's choice, shared by every worker's socket
  settings.workers = workers;
  settings.stamp_policy = net::StampPolicy::kernel;
  auto rule = server::parse_access_rule("allow", "127.0.0.0/8");
  EXPECT_TRUE(rule.ok());
  if (rule) settings.responder.access.add(*rule);
  return settings;
}

uint16_t port_of(const NtpServer& server) {
  const std::string listening = server.stats().listening.at(0);  // "127.0.0.1:PORT"
  return static_cast<uint16_t>(std::stoi(listening.substr(listening.rfind(':') + 1)));
}

class Client {
 public:
  explicit Client(uint16_t port) : fd_(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)) {
    EXPECT_TRUE(fd_.valid());
    sockaddr_in server{};
    server.sin_family = AF_INET;
    server.sin_port = htons(port);
    server.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::connect(fd_.get(), reinterpret_cast<sockaddr*>(&server), sizeof server), 0);
  }
  void send(const std::vector<uint8_t>& bytes) {
    ASSERT_EQ(::send(fd_.get(), bytes.data(), bytes.size(), 0),
              static_cast<ssize_t>(bytes.size()));
  }
  // The next datagram within `timeout`, or nothing.
  std::optional<std::vector<uint8_t>> receive(std::chrono::milliseconds timeout) {
    pollfd p{fd_.get(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return std::nullopt;
    std::vector<uint8_t> buffer(2048);
    const ssize_t n = ::recv(fd_.get(), buffer.data(), buffer.size(), 0);
    if (n < 0) return std::nullopt;
    buffer.resize(static_cast<std::size_t>(n));
    return buffer;
  }

 private:
  Fd fd_;
};

ntp::Packet request_with(NtpTimestamp transmit) {
  ntp::Packet p;
  p.mode = ntp::Mode::client;
  p.version = 4;
  p.poll = 6;
  p.transmit_time = transmit;
  return p;
}

TEST(NtpServer, AnswersWithTheHostClockAndKernelStamps) {
  auto server = NtpServer::open(loopback_settings(), local_clock());
  ASSERT_TRUE(server.ok()) << server.error().message();
  Client client(port_of(**server));
  for (int i = 0; i < 5; ++i) {
    const UtcTime t1 = realtime_now();
    const NtpTimestamp cookie = NtpTimestamp::from_utc(t1);
    client.send(ntp::encode(request_with(cookie)));
    const auto bytes = client.receive(std::chrono::seconds(2));
    const UtcTime t4 = realtime_now();
    ASSERT_TRUE(bytes.has_value());
    ASSERT_EQ(bytes->size(), ntp::kHeaderSize);  // never larger than the request
    const auto reply = ntp::decode(*bytes);
    ASSERT_TRUE(reply.ok());
    EXPECT_EQ(reply->mode, ntp::Mode::server);
    EXPECT_EQ(reply->stratum, 10);
    EXPECT_EQ(reply->reference_id, 0x7F7F0101U);
    EXPECT_EQ(reply->root_delay.raw(), 0x10U);
    EXPECT_EQ(reply->root_dispersion.raw(), 0x20U);
    EXPECT_EQ(reply->origin_time, cookie);
    const UtcTime t2 = reply->receive_time.to_utc(t1);
    const UtcTime t3 = reply->transmit_time.to_utc(t1);
    // One clock: T1 <= T2 <= T3 <= T4 (NTP's 2^-32 s resolution aside).
    EXPECT_LE((t1 - t2).ns(), 1);
    EXPECT_LE(t2, t3);
    EXPECT_LE((t3 - t4).ns(), 1);
  }
  const NtpServerStats stats = (*server)->stats();
  EXPECT_EQ(stats.responder.received, 5U);
  EXPECT_EQ(stats.responder.replied, 5U);
  EXPECT_EQ(stats.rx_kernel_stamps, 5U) << "SO_TIMESTAMPING gave no RX stamp on loopback";
}

// RFC 9769: the client echoes the previous reply's T2 in origin; the server answers with the
// kernel TX stamp of that reply, which is later than the T3 it wrote and before the client
// received it. Kernel TX stamps are asked only for replies to requests whose origin is set (an
// interleaving client's): a basic client's reply costs no stamp.
TEST(NtpServer, InterleavedRepliesCarryTheKernelTxStampOfThePreviousReply) {
  auto server = NtpServer::open(loopback_settings(), local_clock());
  ASSERT_TRUE(server.ok()) << server.error().message();
  Client client(port_of(**server));

  client.send(ntp::encode(request_with(NtpTimestamp::from_utc(realtime_now()))));
  ASSERT_TRUE(client.receive(std::chrono::seconds(2)).has_value());
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ((*server)->stats().tx_stamps, 0U) << "a reply to an origin-0 request was stamped";

  // A client already in an exchange (origin set, not one of our T2s): basic reply, stamped.
  ntp::Packet first_request = request_with(NtpTimestamp::from_utc(realtime_now()));
  first_request.origin_time = NtpTimestamp::from_raw(0x1234);
  client.send(ntp::encode(first_request));
  const auto first_bytes = client.receive(std::chrono::seconds(2));
  const UtcTime first_t4 = realtime_now();
  ASSERT_TRUE(first_bytes.has_value());
  const auto first = ntp::decode(*first_bytes);
  ASSERT_TRUE(first.ok());
  // The kernel's TX stamp comes back on the server's error queue; give the worker a moment.
  for (int i = 0; i < 100 && (*server)->stats().tx_stamps == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_EQ((*server)->stats().tx_stamps, 1U);

  ntp::Packet second = request_with(NtpTimestamp::from_utc(realtime_now()));
  second.origin_time = first->receive_time;                     // the server's T2
  second.receive_time = NtpTimestamp::from_utc(first_t4);       // our T4 of the first reply
  client.send(ntp::encode(second));
  const auto second_bytes = client.receive(std::chrono::seconds(2));
  ASSERT_TRUE(second_bytes.has_value());
  const auto reply = ntp::decode(*second_bytes);
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(reply->origin_time, second.receive_time);  // RFC 9769: our T4 echoed
  const UtcTime pivot = first_t4;
  const UtcTime kernel_tx = reply->transmit_time.to_utc(pivot);
  EXPECT_GE(kernel_tx, first->transmit_time.to_utc(pivot)) << "the TX stamp is before the T3";
  EXPECT_LE(kernel_tx, first_t4) << "the TX stamp is after the client received the reply";
  EXPECT_EQ((*server)->stats().responder.interleaved, 1U);
}

TEST(NtpServer, BadPacketsAreCountedByReasonAndGoodClientsStillServed) {
  auto server = NtpServer::open(loopback_settings(2), local_clock());
  ASSERT_TRUE(server.ok()) << server.error().message();
  EXPECT_EQ((*server)->stats().workers, 2);
  const uint16_t port = port_of(**server);
  Client bad(port);
  Client good(port);

  bad.send(std::vector<uint8_t>(20, 0x23));  // truncated
  ntp::Packet v5 = request_with(NtpTimestamp::from_raw(1));
  auto v5_bytes = ntp::encode(v5);
  v5_bytes[0] = static_cast<uint8_t>((5 << 3) | 3);  // version 5
  bad.send(v5_bytes);
  ntp::Packet control = request_with(NtpTimestamp::from_raw(2));
  control.mode = ntp::Mode::control;  // mode 6: no answer, ever
  bad.send(ntp::encode(control));
  ntp::Packet private_mode = request_with(NtpTimestamp::from_raw(3));
  private_mode.mode = ntp::Mode::private_use;
  bad.send(ntp::encode(private_mode));
  bad.send(std::vector<uint8_t>(1500, 0x23));  // oversized: longer than any request answered

  for (int i = 0; i < 3; ++i) {
    const NtpTimestamp cookie = NtpTimestamp::from_utc(realtime_now());
    good.send(ntp::encode(request_with(cookie)));
    const auto reply = good.receive(std::chrono::seconds(2));
    ASSERT_TRUE(reply.has_value());
    EXPECT_EQ(ntp::decode(*reply)->origin_time, cookie);
  }
  EXPECT_FALSE(bad.receive(std::chrono::milliseconds(200)).has_value());
  const NtpServerStats stats = (*server)->stats();
  const auto dropped = [&](server::Drop reason) {
    return stats.responder.dropped[static_cast<std::size_t>(reason)];
  };
  EXPECT_EQ(dropped(server::Drop::too_short), 1U);
  EXPECT_EQ(dropped(server::Drop::bad_version), 1U);
  EXPECT_EQ(dropped(server::Drop::not_client_mode), 2U);
  EXPECT_EQ(stats.oversized, 1U);
  EXPECT_EQ(stats.responder.replied, 3U);
}

TEST(NtpServer, ClockStateChangesReachTheReplies) {
  auto server = NtpServer::open(loopback_settings(), local_clock());
  ASSERT_TRUE(server.ok()) << server.error().message();
  server::ServerClockState unsynchronized;  // LI=3, stratum 16
  (*server)->set_clock(unsynchronized);
  Client client(port_of(**server));
  client.send(ntp::encode(request_with(NtpTimestamp::from_utc(realtime_now()))));
  const auto bytes = client.receive(std::chrono::seconds(2));
  ASSERT_TRUE(bytes.has_value());
  const auto reply = ntp::decode(*bytes);
  EXPECT_EQ(reply->leap, ntp::Leap::unsynchronized);
  EXPECT_EQ(reply->stratum, 16);
}

TEST(NtpServer, BindErrorsNameTheAddress) {
  NtpServerSettings settings = loopback_settings();
  settings.bind_addresses = {"192.0.2.77"};  // TEST-NET-1: not on this host
  auto server = NtpServer::open(settings, local_clock());
  ASSERT_FALSE(server.ok());
  EXPECT_NE(server.error().message().find("bind 192.0.2.77:0"), std::string::npos)
      << server.error().message();
}

}  // namespace
}  // namespace taid::daemon
