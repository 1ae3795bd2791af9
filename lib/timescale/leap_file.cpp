// Reads leap-second files for the daemon: the one place in lib/timescale that opens a file.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "core/fd.hpp"
#include "timescale/leap_table.hpp"

namespace taid::timescale {
namespace {

// The real files are a few KiB; anything this large is not one of them.
constexpr std::size_t kMaxFileBytes = 1 << 20;

Result<std::string> read_small_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Error::from_errno("reading " + path);
  Fd owner(fd);
  std::string bytes;
  char buf[8192];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::from_errno("reading " + path);
    }
    if (n == 0) break;
    bytes.append(buf, static_cast<std::size_t>(n));
    if (bytes.size() > kMaxFileBytes)
      return Error::plain("reading " + path + ": larger than 1 MiB, not a leap second file");
  }
  return bytes;
}

}  // namespace

Result<LeapTable> read_leap_seconds_list(const std::string& path) {
  Result<std::string> text = read_small_file(path);
  if (!text) return text.error();
  return parse_leap_seconds_list(*text, path);
}

Result<LeapTable> read_tzif_leaps(const std::string& path) {
  Result<std::string> bytes = read_small_file(path);
  if (!bytes) return bytes.error();
  return parse_tzif_leaps(*bytes, path);
}

}  // namespace taid::timescale
