// Key store: the one file the signer reads at start, and writes once when it has none.
#include "stamp/key_store.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "core/fd.hpp"
#include "core/strcat.hpp"

namespace taid::stamp {
namespace {

std::string directory_of(const std::string& path) {
  const auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

Result<void> write_all(int fd, const std::string& text, const std::string& what) {
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error::from_errno(strcat("write ", what));
    done += static_cast<std::size_t>(n);
  }
  return {};
}

}  // namespace

Result<SigningKey> load_signing_key(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return Error::from_errno(strcat("signing key ", path));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return Error::from_errno(strcat("signing key ", path));
  if (!S_ISREG(st.st_mode)) return Error::plain(strcat("signing key ", path, ": not a file"));
  if ((st.st_mode & 077) != 0) {
    return Error::plain(strcat("signing key ", path, ": mode 0", std::oct, (st.st_mode & 0777),
                               " lets others read or write it; refusing it (chmod 600 if no one",
                               " else could have read it, otherwise make a new key)"));
  }
  if (st.st_size > 64 * 1024) return Error::plain(strcat("signing key ", path, ": too large"));
  std::string text(static_cast<std::size_t>(st.st_size), '\0');
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::read(fd.get(), text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error::from_errno(strcat("read signing key ", path));
    if (n == 0) break;
    done += static_cast<std::size_t>(n);
  }
  text.resize(done);
  auto key = SigningKey::from_pem(text);
  if (!key) return Error::plain(strcat("signing key ", path, ": ", key.error().context));
  return key;
}

Result<LoadedKey> load_or_create_signing_key(const std::string& path) {
  if (::access(path.c_str(), F_OK) == 0 || errno != ENOENT) {
    auto key = load_signing_key(path);
    if (!key) return key.error();
    return LoadedKey{std::move(key).value(), false};
  }
  auto key = SigningKey::generate();
  if (!key) return key.error();
  const std::string temp = strcat(path, ".tmp.", ::getpid());
  Fd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd) return Error::from_errno(strcat("create signing key ", temp));
  auto fail = [&](Error e) {
    ::unlink(temp.c_str());
    return e;
  };
  // The umask can only remove bits; fchmod makes 0600 exact whatever it was.
  if (::fchmod(fd.get(), 0600) != 0) return fail(Error::from_errno(strcat("chmod ", temp)));
  if (auto ok = write_all(fd.get(), key->pem(), temp); !ok) return fail(ok.error());
  if (::fsync(fd.get()) != 0) return fail(Error::from_errno(strcat("fsync ", temp)));
  fd.reset();
  // link() never replaces: if another start made the key meanwhile, that key wins and is loaded.
  if (::link(temp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(temp.c_str());
    if (err != EEXIST) return Error{err, strcat("link ", temp, " to ", path)};
    auto existing = load_signing_key(path);
    if (!existing) return existing.error();
    return LoadedKey{std::move(existing).value(), false};
  }
  ::unlink(temp.c_str());
  const std::string dir = directory_of(path);
  Fd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir_fd || ::fsync(dir_fd.get()) != 0) return Error::from_errno(strcat("fsync ", dir));
  return LoadedKey{std::move(key).value(), true};
}

}  // namespace taid::stamp
