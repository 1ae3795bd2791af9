// Interface lookup for the timestamp paths: by route, by index, all of them.
#include "net/interfaces.hpp"

#include <ifaddrs.h>
#include <net/if.h>

#include <cstring>
#include <optional>

#include "core/strcat.hpp"

namespace taid::net {

namespace asio = boost::asio;

namespace {

// The address an interface entry holds, when it is of the family we look for.
std::optional<asio::ip::address> address_of(const ifaddrs& entry) {
  if (entry.ifa_addr == nullptr) return std::nullopt;
  if (entry.ifa_addr->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(entry.ifa_addr);
    return asio::ip::address_v4(ntohl(in->sin_addr.s_addr));
  }
  if (entry.ifa_addr->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(entry.ifa_addr);
    asio::ip::address_v6::bytes_type bytes;
    std::memcpy(bytes.data(), in6->sin6_addr.s6_addr, bytes.size());
    return asio::ip::address_v6(bytes);
  }
  return std::nullopt;
}

}  // namespace

int interface_towards(const asio::ip::udp::endpoint& server) {
  asio::io_context io;
  asio::ip::udp::socket probe(io);
  boost::system::error_code ec;
  probe.open(server.protocol(), ec);
  if (!ec) probe.connect(server, ec);  // UDP connect only routes
  if (ec) return 0;
  const auto local = probe.local_endpoint(ec).address();
  if (ec) return 0;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return 0;
  int index = 0;
  for (const ifaddrs* a = list; a != nullptr && index == 0; a = a->ifa_next) {
    if (address_of(*a) == local) index = static_cast<int>(if_nametoindex(a->ifa_name));
  }
  freeifaddrs(list);
  return index;
}

std::string interface_name(int ifindex) {
  char name[IF_NAMESIZE] = {};
  return if_indextoname(static_cast<unsigned>(ifindex), name) ? name : strcat("if", ifindex);
}

Result<std::vector<std::string>> interface_names() {
  struct if_nameindex* list = ::if_nameindex();
  if (list == nullptr) return Error::from_errno("if_nameindex()");
  std::vector<std::string> names;
  for (const struct if_nameindex* i = list; i->if_index != 0 && i->if_name != nullptr; ++i) {
    names.emplace_back(i->if_name);
  }
  ::if_freenameindex(list);
  return names;
}

}  // namespace taid::net
