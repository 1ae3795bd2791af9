// Serial store: a ceiling reserved ahead on disk, written durably before it is used.
#include "stamp/serial_store.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <limits>
#include <string_view>

#include "core/fd.hpp"
#include "core/strcat.hpp"

namespace taid::stamp {
namespace {

constexpr std::string_view kPrefix = "taid serial ceiling ";

std::string directory_of(const std::string& path) {
  const auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

Result<SerialStore> SerialStore::open(std::string path, std::uint64_t block) {
  if (block == 0) block = 1;
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return SerialStore(std::move(path), block, 1);
    return Error::from_errno(strcat("serial file ", path));
  }
  char buf[128];
  ssize_t n;
  do {
    n = ::read(fd.get(), buf, sizeof buf);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return Error::from_errno(strcat("read serial file ", path));
  std::string_view text(buf, static_cast<std::size_t>(n));
  std::uint64_t ceiling = 0;
  const bool framed = text.starts_with(kPrefix) && text.ends_with('\n');
  if (framed) {
    text.remove_prefix(kPrefix.size());
    text.remove_suffix(1);
  }
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), ceiling);
  if (!framed || ec != std::errc() || end != text.data() + text.size() || ceiling == 0) {
    return Error::plain(strcat("serial file ", path, ": not \"", kPrefix,
                               "N\"; refusing to start over (serials could repeat)"));
  }
  return SerialStore(std::move(path), block, ceiling);
}

Result<std::uint64_t> SerialStore::reserve(std::uint64_t count) {
  constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();
  if (count > kMax - next_ || next_ + count > kMax - block_) {
    return Error::plain("serial numbers exhausted");
  }
  if (next_ + count > ceiling_) {
    if (auto ok = persist(next_ + count + block_); !ok) return ok.error();
  }
  const std::uint64_t first = next_;
  next_ += count;
  return first;
}

Result<void> SerialStore::persist(std::uint64_t ceiling) {
  const std::string temp = path_ + ".tmp";
  Fd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd) return Error::from_errno(strcat("create ", temp));
  const std::string text = strcat(kPrefix, ceiling, "\n");
  if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    return Error::from_errno(strcat("write ", temp));
  }
  if (::fsync(fd.get()) != 0) return Error::from_errno(strcat("fsync ", temp));
  fd.reset();
  if (::rename(temp.c_str(), path_.c_str()) != 0) {
    return Error::from_errno(strcat("rename ", temp, " to ", path_));
  }
  // Until the directory is synced the rename may be lost; hand out nothing above the old ceiling
  // before it is.
  const std::string dir = directory_of(path_);
  Fd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir_fd || ::fsync(dir_fd.get()) != 0) return Error::from_errno(strcat("fsync ", dir));
  ceiling_ = ceiling;
  return {};
}

}  // namespace taid::stamp
