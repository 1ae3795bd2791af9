// The daemon's configuration: a chrony.conf-syntax file parsed once into a Config value.
//
// Directives (chrony's names and meanings; names and options match case-insensitively as in
// chrony):
//   server NAME [iburst] [minpoll N] [maxpoll N] [port N]
//   pool NAME [iburst] [minpoll N] [maxpoll N] [port N] [maxsources N]
//   bindcmdaddress PATH   control socket, an absolute path
//   driftfile PATH        an absolute path
// minpoll/maxpoll are log2 seconds in 4..17, port 1..65535, maxsources 1..16. A line whose first
// non-blank character is # ! ; or % is a comment (as in chrony, not after other text). A config
// with no server or pool is valid: the daemon then only serves its control socket.
//
// Where chrony quietly repairs, we refuse: an unknown option, a repeated option, a repeated
// bindcmdaddress/driftfile, or minpoll > maxpoll when both are written are errors. When only one
// of minpoll/maxpoll is written and it crosses the other's default, the default follows it
// (chrony does the same), so "server x minpoll 12" means minpoll 12, maxpoll 12.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace taid::daemon {

// One server or pool line.
struct SourceDirective {
  std::string name;  // host name or address as written
  bool pool = false;
  bool iburst = false;
  int minpoll = 6;  // log2 seconds
  int maxpoll = 10;  // log2 seconds
  uint16_t port = 123;
  int max_sources = 4;  // pool only: how many of its addresses to use
  std::string origin;  // "file:line", for messages about this source
};

struct Config {
  std::vector<SourceDirective> sources;  // in file order
  std::string bindcmdaddress = "/run/taid/taid.sock";
  std::string driftfile;  // empty: no drift file
};

// A fatal configuration error; what() reads "file:line: message".
class ConfigError : public std::runtime_error {
public:
  using runtime_error::runtime_error;
};

// Parses config text; file_name is used only in messages and origins. Throws ConfigError.
Config parse_config(std::string_view text, std::string_view file_name);

// Reads and parses the file at path. An unreadable file throws "path: cannot read: <strerror>".
Config load_config(const std::string& path);

}  // namespace taid::daemon
