// strcat: builds a message from anything that streams — no I/O, usable in the sans-IO core.
#pragma once

#include <sstream>
#include <string>

namespace taid {

// strcat("poll ", 4, " s") == "poll 4 s".
template <typename... Args>
std::string strcat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}

}  // namespace taid
