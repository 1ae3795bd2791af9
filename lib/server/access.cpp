// chrony's allow/deny access list: parsing one directive, the rules, and their flattened LPM form.
#include "server/access.hpp"
#include "server/words.hpp"

#include <arpa/inet.h>  // inet_pton: text to bytes only, no socket

#include <algorithm>
#include <charconv>
#include <string>

namespace taid::server {
namespace {

constexpr uint8_t kV4MappedLen = 96;  // ::ffff:0:0/96
constexpr int kNibbleBits = 4;        // chrony's trie consumes the address 4 bits a level

bool bit_at(const Address16& a, int pos) { return (a[pos / 8] >> (7 - pos % 8)) & 1; }

void set_bit(Address16& a, int pos, bool value) {
  const auto mask = static_cast<uint8_t>(0x80 >> (pos % 8));
  if (value)
    a[pos / 8] |= mask;
  else
    a[pos / 8] &= static_cast<uint8_t>(~mask);
}

// Clears every bit from `len` on.
Address16 masked(Address16 a, int len) {
  for (int pos = len; pos < 128; ++pos) set_bit(a, pos, false);
  return a;
}

bool covers(const Address16& prefix, int len, const Address16& address) {
  const int whole = len / 8;
  if (!std::equal(prefix.begin(), prefix.begin() + whole, address.begin())) return false;
  for (int pos = whole * 8; pos < len; ++pos)
    if (bit_at(prefix, pos) != bit_at(address, pos)) return false;
  return true;
}

Address16 v4_mapped(const uint8_t (&v4)[4]) {
  Address16 a{};
  a[10] = 0xff;
  a[11] = 0xff;
  std::copy(std::begin(v4), std::end(v4), a.begin() + 12);
  return a;
}

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// chrony's short forms: "10" = 10.0.0.0/8, "192.168" = /16, "192.168.1" = /24.
bool parse_partial_v4(std::string_view text, Address16& address, int& bits) {
  uint8_t v4[4] = {0, 0, 0, 0};
  int parts = 0;
  while (true) {
    const auto dot = text.find('.');
    const std::string_view part = text.substr(0, dot);
    if (parts == 3 || !all_digits(part) || part.size() > 3) return false;
    unsigned value = 0;
    std::from_chars(part.data(), part.data() + part.size(), value);
    if (value > 255) return false;
    v4[parts++] = static_cast<uint8_t>(value);
    if (dot == std::string_view::npos) break;
    text.remove_prefix(dot + 1);
  }
  address = v4_mapped(v4);
  bits = 8 * parts;
  return true;
}

}  // namespace

bool is_v4_mapped(const Address16& a) {
  for (int i = 0; i < 10; ++i)
    if (a[i] != 0) return false;
  return a[10] == 0xff && a[11] == 0xff;
}

Result<Address16> parse_address16(std::string_view text) {
  const std::string s(text);
  uint8_t v4[4];
  if (::inet_pton(AF_INET, s.c_str(), v4) == 1) return v4_mapped(v4);
  Address16 v6{};
  if (::inet_pton(AF_INET6, s.c_str(), v6.data()) == 1) return v6;
  return Error::plain("'" + s + "' is not an address");
}

Result<AccessRule> parse_access_rule(std::string_view directive, std::string_view arguments) {
  const std::string name(directive);
  const std::vector<std::string_view> words = split_words(arguments);
  AccessRule rule;
  rule.allow = directive != "deny";
  std::size_t next = 0;
  if (next < words.size() && words[next] == "all") {
    rule.all = true;
    ++next;
  }
  if (next == words.size()) return rule;  // the whole address space, both families
  if (words.size() - next > 1) {
    return Error::plain(name + ": unexpected '" + std::string(words[next + 1]) +
                        "' after the subnet");
  }
  const std::string_view token = words[next];
  const std::string quoted = "'" + std::string(token) + "'";
  const auto slash = token.find('/');
  const std::string_view address_text = token.substr(0, slash);

  // The family as written: "::ffff:10.0.0.0/104" is IPv6 syntax with IPv6 lengths (add() then
  // treats it as the IPv4 rule it amounts to).
  const bool ipv4 = address_text.find(':') == std::string_view::npos;
  Address16 address{};
  int bits = -1;  // within the family
  if (auto parsed = parse_address16(address_text)) {
    address = *parsed;
    bits = ipv4 ? 32 : 128;
  } else if (!ipv4 || !parse_partial_v4(address_text, address, bits)) {
    return Error::plain(name + ": " + quoted + " is not an address");
  }
  const int max_bits = ipv4 ? 32 : 128;
  if (slash != std::string_view::npos) {
    const std::string_view len_text = token.substr(slash + 1);
    unsigned len = 0;
    const auto [end, ec] = std::from_chars(len_text.data(), len_text.data() + len_text.size(), len);
    if (!all_digits(len_text) || ec != std::errc{} || end != len_text.data() + len_text.size() ||
        len > static_cast<unsigned>(max_bits)) {
      return Error::plain(name + ": " + quoted + ": prefix length '" + std::string(len_text) +
                          "' is not 0.." + std::to_string(max_bits));
    }
    bits = static_cast<int>(len);
  }
  rule.any_family = false;
  rule.ipv4 = ipv4;
  rule.prefix_len = static_cast<uint8_t>(bits);
  rule.address = masked(address, (ipv4 ? kV4MappedLen : 0) + bits);
  return rule;
}

void AccessList::set(const Address16& address, uint8_t prefix_len, bool ipv4, bool allow,
                     bool all) {
  if (all) {
    // chrony's close_node(): the more specific rules under this one are gone.
    std::erase_if(rules_, [&](const Entry& e) {
      return e.ipv4 == ipv4 && e.prefix_len > prefix_len && covers(address, prefix_len, e.address);
    });
  }
  for (Entry& e : rules_) {
    if (e.ipv4 == ipv4 && e.prefix_len == prefix_len && e.address == address) {
      e.allow = allow;
      return;
    }
  }
  rules_.push_back(Entry{address, prefix_len, ipv4, allow});
}

void AccessList::add(const AccessRule& rule) {
  if (rule.any_family) {
    Address16 v4_root{};
    v4_root[10] = v4_root[11] = 0xff;
    set(v4_root, kV4MappedLen, true, rule.allow, rule.all);
    set(Address16{}, 0, false, rule.allow, rule.all);
    return;
  }
  // Flat length over the 16 bytes; an IPv6 subnet inside ::ffff:0:0/96 speaks for IPv4 clients.
  int flat_len = (rule.ipv4 ? kV4MappedLen : 0) + rule.prefix_len;
  Address16 base = masked(rule.address, flat_len);
  const bool ipv4 = rule.ipv4 || (flat_len >= kV4MappedLen && is_v4_mapped(base));
  flat_len = std::min(flat_len, 128);
  // chrony's trie: a length that is not a multiple of 4 sets the 2^k nodes one nibble deeper.
  const int extra = (kNibbleBits - flat_len % kNibbleBits) % kNibbleBits;
  for (int i = 0; i < (1 << extra); ++i) {
    Address16 a = base;
    for (int j = 0; j < extra; ++j) set_bit(a, flat_len + j, (i >> (extra - 1 - j)) & 1);
    set(a, static_cast<uint8_t>(flat_len + extra), ipv4, rule.allow, rule.all);
  }
}

bool AccessList::allows(const Address16& address) const {
  const bool ipv4 = is_v4_mapped(address);
  int best_len = -1;
  bool allow = false;  // no rule covers it: denied
  for (const Entry& e : rules_) {
    if (e.ipv4 == ipv4 && e.prefix_len > best_len && covers(e.address, e.prefix_len, address)) {
      best_len = e.prefix_len;
      allow = e.allow;
    }
  }
  return allow;
}

std::vector<AccessPrefix> AccessList::longest_prefix_table() const {
  std::vector<AccessPrefix> table;
  table.reserve(rules_.size() + 1);
  bool v4_root = false;
  for (const Entry& e : rules_) {
    table.push_back(AccessPrefix{e.address, e.prefix_len, e.allow});
    if (e.ipv4 && e.prefix_len == kV4MappedLen) v4_root = true;
  }
  if (!v4_root) {
    Address16 root{};
    root[10] = root[11] = 0xff;
    table.push_back(AccessPrefix{root, kV4MappedLen, false});
  }
  return table;
}

}  // namespace taid::server
