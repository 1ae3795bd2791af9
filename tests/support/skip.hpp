// One rule for tests that need something the machine may lack (root, a namespace, IPv6):
// skip with a one-line reason on a developer's machine, fail under CI (CI=true), where a
// skipped test would hide a regression.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <string_view>

namespace taid::test {

inline bool under_ci() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::string_view(ci) == "true";
}

}  // namespace taid::test

// Use in a test body or SetUp(); returns from it like GTEST_SKIP() / FAIL().
#define TAID_SKIP_OR_FAIL(reason)                                              \
  do {                                                                         \
    if (::taid::test::under_ci()) FAIL() << "CI=true, not a skip: " << reason; \
    GTEST_SKIP() << reason;                                                    \
  } while (0)
