// Unit tests for the interface lookups: the route's device for a server address, names by index.
#include <gtest/gtest.h>
#include <net/if.h>

#include <boost/asio/ip/udp.hpp>

#include "net/interfaces.hpp"

namespace taid::net {
namespace {

namespace asio = boost::asio;

asio::ip::udp::endpoint at(const char* address) { return {asio::ip::make_address(address), 123}; }

// This host's own addresses are routed through lo, which is where an eBPF program sees the
// replies; the kernel's answer, not a guess from the address.
TEST(InterfaceTowards, LoopbackAddressesRouteThroughLo) {
  const int lo = static_cast<int>(if_nametoindex("lo"));
  ASSERT_GT(lo, 0);
  const auto v4 = interface_towards(at("127.0.0.1"));
  ASSERT_TRUE(v4) << v4.error().message();
  EXPECT_EQ(*v4, lo);
  const auto v4_other = interface_towards(at("127.1.2.3"));  // all of 127/8 is local
  ASSERT_TRUE(v4_other) << v4_other.error().message();
  EXPECT_EQ(*v4_other, lo);
  const auto v6 = interface_towards(at("::1"));
  ASSERT_TRUE(v6) << v6.error().message();
  EXPECT_EQ(*v6, lo);
}

TEST(InterfaceTowards, LinkLocalServerUsesItsScope) {
  const int lo = static_cast<int>(if_nametoindex("lo"));
  auto address = asio::ip::make_address_v6("fe80::1");
  address.scope_id(static_cast<unsigned long>(lo));
  const auto found = interface_towards({address, 123});
  ASSERT_TRUE(found) << found.error().message();
  EXPECT_EQ(*found, lo);
}

TEST(InterfaceName, KnownAndUnknownIndex) {
  EXPECT_EQ(interface_name(static_cast<int>(if_nametoindex("lo"))), "lo");
  EXPECT_EQ(interface_name(999999), "if999999");
}

}  // namespace
}  // namespace taid::net
