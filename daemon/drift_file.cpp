// The drift file: parse chrony's one-line "FREQUENCY_PPM [SKEW_PPM]" strictly, and replace it
// atomically (temporary file, fsync, rename, fsync of the directory).
#include "daemon/drift_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <string_view>
#include <vector>

#include "core/fd.hpp"
#include "core/strcat.hpp"

namespace taid::daemon {
namespace {

// A drift file is one short line; anything much longer is not one, and is not read whole.
constexpr size_t kMaxFileBytes = 4096;

struct Token {
  std::string_view text;
  int line = 1;
};

std::vector<Token> split_words(std::string_view text) {
  std::vector<Token> tokens;
  int line = 1;
  size_t i = 0;
  while (i < text.size()) {
    const char c = text[i];
    if (c == '\n') ++line;
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f') {
      ++i;
      continue;
    }
    const size_t start = i;
    while (i < text.size() && text[i] != ' ' && text[i] != '\t' && text[i] != '\n' &&
           text[i] != '\r' && text[i] != '\v' && text[i] != '\f') {
      ++i;
    }
    tokens.push_back({text.substr(start, i - start), line});
  }
  return tokens;
}

// The shortest text that reads back as v, without an exponent while it fits ("812", "-500.5",
// "2000000"; "1e+300"), for error messages.
std::string shortest(double v) {
  char buf[64];
  std::to_chars_result r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed);
  if (r.ec != std::errc{}) r = std::to_chars(buf, buf + sizeof buf, v);
  if (r.ec != std::errc{}) return "?";
  return std::string(buf, r.ptr);
}

// The whole token as a number (a leading '+' allowed, as strtod and chrony's sscanf allow), or
// nullopt. NaN counts as not a number; infinities go on to the range check.
std::optional<double> parse_number(std::string_view text) {
  if (text.size() > 1 && text[0] == '+' && text[1] != '-' && text[1] != '+') text.remove_prefix(1);
  double v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || end != text.data() + text.size() || std::isnan(v)) return std::nullopt;
  return v;
}

Result<std::string> read_small_file(const std::string& path, int fd) {
  std::string content;
  char buf[1024];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::from_errno(strcat(path, ": read"));
    }
    if (n == 0) return content;
    content.append(buf, static_cast<size_t>(n));
    if (content.size() > kMaxFileBytes) {
      return Error::plain(strcat(path, ": over ", kMaxFileBytes, " bytes, not a drift file"));
    }
  }
}

Result<void> write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::from_errno("write");
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return {};
}

// The directory part of `path` ("." for a bare name, "/" for a file in the root).
std::string directory_of(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string base_name_of(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace

Result<std::optional<DriftFile>> read_drift_file(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return std::optional<DriftFile>{};  // no drift file yet
    return Error::from_errno(strcat(path, ": open"));
  }
  auto content = read_small_file(path, fd.get());
  if (!content) return content.error();

  const std::vector<Token> tokens = split_words(*content);
  const auto fail = [&](int line, const std::string& what) {
    return Error::plain(strcat(path, ":", line, ": ", what));
  };
  if (tokens.empty()) return fail(1, "empty file");

  DriftFile drift;
  const Token& freq = tokens[0];
  const std::optional<double> file_freq = parse_number(freq.text);
  if (!file_freq) return fail(freq.line, "frequency: not a number");
  if (!(std::fabs(*file_freq) <= kMaxDriftFrequencyPpm)) {
    return fail(freq.line, strcat("frequency: ", shortest(*file_freq), " ppm is out of range ±",
                                  shortest(kMaxDriftFrequencyPpm), " ppm"));
  }
  // The file has chrony's sign (the clock's own gain); the correction is its negation. Adding
  // 0.0 turns -0.0 into 0.0.
  drift.frequency_ppm = -*file_freq + 0.0;

  size_t next = 1;
  if (next < tokens.size() && tokens[next].line == freq.line) {
    const Token& skew = tokens[next++];
    const std::optional<double> v = parse_number(skew.text);
    if (!v) return fail(skew.line, "skew: not a number");
    if (!(*v >= 0 && *v <= kMaxDriftSkewPpm)) {
      return fail(skew.line, strcat("skew: ", shortest(*v), " ppm is out of range 0..",
                                    shortest(kMaxDriftSkewPpm), " ppm"));
    }
    drift.skew_ppm = *v;
  }
  if (next < tokens.size()) {
    return fail(tokens[next].line, strcat("trailing garbage: '", tokens[next].text, "'"));
  }
  return std::optional<DriftFile>{drift};
}

Result<void> write_drift_file(const std::string& path, double frequency_ppm, double skew_ppm) {
  if (!(std::fabs(frequency_ppm) <= kMaxDriftFrequencyPpm)) {
    return Error::plain(strcat(path, ": frequency ", shortest(frequency_ppm),
                               " ppm is out of range ±", shortest(kMaxDriftFrequencyPpm),
                               " ppm, not written"));
  }
  if (!(skew_ppm >= 0 && skew_ppm <= kMaxDriftSkewPpm)) {
    return Error::plain(strcat(path, ": skew ", shortest(skew_ppm), " ppm is out of range 0..",
                               shortest(kMaxDriftSkewPpm), " ppm, not written"));
  }
  char line[64];
  // chrony's layout and sign (see the header); + 0.0 so a zero is never written "-0.000000".
  std::snprintf(line, sizeof line, "%20.6f %20.6f\n", -frequency_ppm + 0.0, skew_ppm);

  const std::string dir = directory_of(path);
  // A hidden name next to the file, so a crash leaves a recognisable ".drift.XXXXXX" behind
  // rather than something in /tmp on another file system, where rename could not go.
  std::string temp = strcat(dir, "/.", base_name_of(path), ".XXXXXX");
  Fd fd(::mkstemp(temp.data()));
  if (!fd) return Error::from_errno(strcat(path, ": create a temporary file in ", dir));

  const auto fail = [&](const std::string& what) {
    const Error e = Error::from_errno(strcat(path, ": ", what));
    fd.reset();
    ::unlink(temp.c_str());
    return e;
  };
  // The old file's permissions (mkstemp makes 0600), else those of a file anyone may read.
  struct stat old {};
  const mode_t mode = ::stat(path.c_str(), &old) == 0 ? (old.st_mode & 0777) : 0644;
  if (::fchmod(fd.get(), mode) != 0) return fail(strcat("fchmod ", temp));
  if (auto w = write_all(fd.get(), line); !w) return fail(strcat("write ", temp));
  if (::fsync(fd.get()) != 0) return fail(strcat("fsync ", temp));
  if (::close(fd.release()) != 0) return fail(strcat("close ", temp));
  if (::rename(temp.c_str(), path.c_str()) != 0) return fail(strcat("rename ", temp, " over it"));

  // The rename is done; make it durable. A failure here leaves the new file in place.
  Fd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir_fd) return Error::from_errno(strcat(path, ": open its directory ", dir));
  if (::fsync(dir_fd.get()) != 0) return Error::from_errno(strcat(path, ": fsync ", dir));
  return {};
}

}  // namespace taid::daemon
