// write_file_atomically: temporary file, final mode, fsync, rename (file_write.hpp).
#include "core/file_write.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "core/strcat.hpp"

namespace taid {

Result<void> write_file_atomically(const std::string& path, std::string_view data, mode_t mode) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return Error::from_errno(strcat(tmp, ": open"));
  const bool ok = ::fchmod(fd, mode) == 0 &&
                  ::write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size()) &&
                  ::fsync(fd) == 0;
  const int saved = errno;
  ::close(fd);
  if (!ok) {
    ::unlink(tmp.c_str());
    return Error{saved, strcat(tmp, ": write")};
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const Error e = Error::from_errno(strcat(path, ": rename"));
    ::unlink(tmp.c_str());
    return e;
  }
  return {};
}

}  // namespace taid
