// UdpRequest on real loopback sockets: what reaches the exchange and what the socket layer drops.
// Datagrams from anyone but the server never arrive (the socket is connected); datagrams that
// cannot be an NTP reply (shorter than its header, larger than the buffer) are counted, not
// handed on.
#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <optional>
#include <vector>

#include <gtest/gtest.h>

#include "core/fd.hpp"
#include "net/udp_client.hpp"
#include "tests/support/skip.hpp"

namespace taid::net {
namespace {

namespace asio = boost::asio;
using udp = asio::ip::udp;

// A plain UDP socket bound to `address` (port chosen by the kernel).
class Peer {
 public:
  explicit Peer(const char* address) : fd_(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)) {
    const timeval timeout{2, 0};  // bounds the test if a datagram never comes
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    udp::endpoint bind_to(asio::ip::make_address(address), 0);
    if (::bind(fd_.get(), bind_to.data(), static_cast<socklen_t>(bind_to.size())) != 0) return;
    socklen_t length = static_cast<socklen_t>(endpoint_.capacity());
    ::getsockname(fd_.get(), endpoint_.data(), &length);
    bound_ = true;
  }
  bool bound() const { return bound_; }
  const udp::endpoint& endpoint() const { return endpoint_; }

  // Waits for one datagram; returns who sent it.
  std::optional<udp::endpoint> receive() {
    std::array<uint8_t, 2048> data{};
    udp::endpoint from;
    socklen_t length = static_cast<socklen_t>(from.capacity());
    if (::recvfrom(fd_.get(), data.data(), data.size(), 0, from.data(), &length) < 0)
      return std::nullopt;
    return from;
  }
  bool send_to(const udp::endpoint& to, const std::vector<uint8_t>& bytes) {
    return ::sendto(fd_.get(), bytes.data(), bytes.size(), 0, to.data(),
                    static_cast<socklen_t>(to.size())) == static_cast<ssize_t>(bytes.size());
  }

 private:
  Fd fd_;
  udp::endpoint endpoint_;
  bool bound_ = false;
};

struct Seen {
  std::vector<std::vector<uint8_t>> replies;
};

// Runs `io` for `how_long`: long enough for loopback datagrams to be read.
void run_for(asio::io_context& io, std::chrono::milliseconds how_long) {
  const auto end = std::chrono::steady_clock::now() + how_long;
  while (std::chrono::steady_clock::now() < end) io.run_one_for(std::chrono::milliseconds(10));
}

class UdpRequestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!server_.bound()) TAID_SKIP_OR_FAIL("cannot bind a UDP socket on 127.0.0.1");
    auto opened = UdpRequest::open(io_, server_.endpoint(), RxPrecision{},
                                   [this](std::span<const uint8_t> bytes, const RxStamps&) {
                                     seen_.replies.emplace_back(bytes.begin(), bytes.end());
                                   });
    ASSERT_TRUE(opened) << opened.error().message();
    request_ = std::move(opened.value());
    request_->count_drops_in(drops_);
    ASSERT_TRUE(request_->send(std::vector<uint8_t>(48, 0x23)));
    client_ = server_.receive();
    ASSERT_TRUE(client_) << "the request did not arrive";
  }

  asio::io_context io_;
  Peer server_{"127.0.0.1"};
  Seen seen_;
  DroppedDatagrams drops_;
  std::unique_ptr<UdpRequest> request_;
  std::optional<udp::endpoint> client_;  // the request's address and ephemeral port
};

TEST_F(UdpRequestTest, DatagramsFromAnotherAddressOrPortNeverReachTheCaller) {
  // Same address, other port; other address (all of 127/8 is loopback), same and other port.
  Peer same_address("127.0.0.1");
  Peer other_address("127.0.0.2");
  ASSERT_TRUE(same_address.bound() && other_address.bound());
  const std::vector<uint8_t> forged(48, 0x66);
  EXPECT_TRUE(same_address.send_to(*client_, forged));
  EXPECT_TRUE(other_address.send_to(*client_, forged));
  run_for(io_, std::chrono::milliseconds(200));
  EXPECT_TRUE(seen_.replies.empty()) << "a datagram from a stranger reached the exchange";

  // The request is still open: the server's own reply comes through, once.
  const std::vector<uint8_t> reply(48, 0x24);
  ASSERT_TRUE(server_.send_to(*client_, reply));
  run_for(io_, std::chrono::milliseconds(200));
  ASSERT_EQ(seen_.replies.size(), 1u);
  EXPECT_EQ(seen_.replies[0], reply);
  EXPECT_EQ(drops_.short_datagrams + drops_.oversized_datagrams, 0u);
}

TEST_F(UdpRequestTest, TruncatedAndOversizedDatagramsAreDroppedAndCounted) {
  ASSERT_TRUE(server_.send_to(*client_, std::vector<uint8_t>(20, 0x24)));    // a cut-off header
  ASSERT_TRUE(server_.send_to(*client_, std::vector<uint8_t>(0)));           // empty
  ASSERT_TRUE(server_.send_to(*client_, std::vector<uint8_t>(47, 0x24)));    // one byte short
  ASSERT_TRUE(server_.send_to(*client_, std::vector<uint8_t>(1500, 0x24)));  // above the buffer
  const std::vector<uint8_t> reply(48, 0x24);
  ASSERT_TRUE(server_.send_to(*client_, reply));
  run_for(io_, std::chrono::milliseconds(200));
  EXPECT_EQ(drops_.short_datagrams, 3u);
  EXPECT_EQ(drops_.oversized_datagrams, 1u);
  ASSERT_EQ(seen_.replies.size(), 1u) << "only the whole header may reach the exchange";
  EXPECT_EQ(seen_.replies[0], reply);
}

}  // namespace
}  // namespace taid::net
