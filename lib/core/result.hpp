// Result<T>: a value or an Error carrying errno and what we were doing (recoverable failures).
//
// Syscall wrappers and parsers return Result; exceptions are kept for fatal start-up errors that
// main() catches. Error::message() reads "context: strerror(errno)" or just the context.
#pragma once

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>
#include <variant>

namespace taid {

struct Error {
  int errno_value = 0;  // 0 when the failure is not a syscall's
  std::string context;

  std::string message() const {
    if (errno_value == 0) return context;
    return context + ": " + std::strerror(errno_value);
  }
  // From the current errno, right after a failed syscall.
  static Error from_errno(std::string context) { return Error{errno, std::move(context)}; }
  static Error plain(std::string context) { return Error{0, std::move(context)}; }
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT: implicit on purpose
  Result(Error error) : v_(std::move(error)) {}  // NOLINT
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT
  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return error_; }

 private:
  Error error_;
  bool ok_ = true;
};

}  // namespace taid
