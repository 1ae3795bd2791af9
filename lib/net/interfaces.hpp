// Network interfaces: which one a server's replies arrive on, names and indexes.
#pragma once

#include <boost/asio/ip/udp.hpp>

#include <string>
#include <vector>

#include "core/result.hpp"

namespace taid::net {

// The interface holding the local address a connected UDP socket to `server` would use (routing
// picks that address; no packet is sent). 0 when it cannot be told. This is the route's source
// address, not its output device: for a server on one of this host's own addresses it names the
// interface with that address rather than `lo`.
int interface_towards(const boost::asio::ip::udp::endpoint& server);

// "eth0" for its index, "ifN" when the index names no interface (any more).
std::string interface_name(int ifindex);

// The names of all interfaces in the calling thread's network namespace, for "hwtimestamp *".
Result<std::vector<std::string>> interface_names();

}  // namespace taid::net
