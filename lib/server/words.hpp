// Splitting a directive's arguments into words, for lib/server's parsers (chrony.conf's blanks).
#pragma once

#include <algorithm>
#include <string_view>
#include <vector>

namespace taid::server {

inline std::vector<std::string_view> split_words(std::string_view text) {
  std::vector<std::string_view> words;
  for (std::size_t i = 0; i < text.size();) {
    const auto start = text.find_first_not_of(" \t", i);
    if (start == std::string_view::npos) break;
    const auto end = std::min(text.find_first_of(" \t", start), text.size());
    words.push_back(text.substr(start, end - start));
    i = end;
  }
  return words;
}

}  // namespace taid::server
