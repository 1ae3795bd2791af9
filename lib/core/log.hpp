// Logging facade: one line per event to stderr, with a level and a UTC time stamp.
//
// Kept tiny on purpose; the daemon may later route it to syslog/journald without callers
// changing. Use log_info("...") with a ready string; format with taid::strcat or snprintf.
#pragma once

#include <string>
#include <string_view>

#include "core/strcat.hpp"  // callers format messages with it

namespace taid {

enum class LogLevel { debug, info, warning, error };

void set_log_level(LogLevel min_level);
void log(LogLevel level, std::string_view message);
inline void log_debug(std::string_view m) { log(LogLevel::debug, m); }
inline void log_info(std::string_view m) { log(LogLevel::info, m); }
inline void log_warning(std::string_view m) { log(LogLevel::warning, m); }
inline void log_error(std::string_view m) { log(LogLevel::error, m); }

}  // namespace taid
