// Helpers shared by the exchange tests: pick the actions of one kind out of what the exchange
// returned.
#pragma once

#include <gtest/gtest.h>

#include <variant>
#include <vector>

#include "ntp/exchange.hpp"

namespace taid::ntp {

// Every action of type T, in order.
template <typename T>
std::vector<T> all_of(const Actions& actions) {
  std::vector<T> out;
  for (const Action& a : actions)
    if (const T* t = std::get_if<T>(&a)) out.push_back(*t);
  return out;
}

// The one action of type T; a test failure (and a default T) when there is not exactly one.
template <typename T>
T only(const Actions& actions) {
  auto v = all_of<T>(actions);
  EXPECT_EQ(v.size(), 1U);
  return v.empty() ? T{} : v.front();
}

}  // namespace taid::ntp
