// Logging facade implementation: serialised writes to stderr.
#include "core/log.hpp"

#include <cstdio>
#include <mutex>

#include "core/time.hpp"

namespace taid {
namespace {
LogLevel g_min_level = LogLevel::info;
std::mutex g_mutex;

const char* level_name(LogLevel l) {
  switch (l) {
    case LogLevel::debug:
      return "DEBUG";
    case LogLevel::info:
      return "INFO";
    case LogLevel::warning:
      return "WARN";
    case LogLevel::error:
      return "ERROR";
  }
  return "?";
}
}  // namespace

void set_log_level(LogLevel min_level) { g_min_level = min_level; }

void log(LogLevel level, std::string_view message) {
  if (level < g_min_level) return;
  const std::string stamp = realtime_now().to_string();
  std::lock_guard lock(g_mutex);
  std::fprintf(stderr, "%.23sZ %-5s %.*s\n", stamp.c_str(), level_name(level),
               static_cast<int>(message.size()), message.data());
  std::fflush(stderr);
}

}  // namespace taid
