// Who may ask for time: chrony's `allow` / `deny` [all] [SUBNET] access list, sans-IO.
//
// Semantics as chrony's addrfilt.c: IPv4 and IPv6 are two separate tables; a client's address is
// judged by the most specific rule that covers it (none: denied, so an empty list denies
// everyone, chrony's default); a later rule for the same subnet replaces the earlier one;
// `allow all X` / `deny all X` also drop every more specific rule set before under X (rules set
// after it still count). `allow` / `deny` with no subnet cover both tables. chrony's tables are
// tries of 4-bit nibbles, so a prefix length that is not a multiple of 4 stands for the 2, 4 or 8
// subnets one nibble longer: `allow 10.0.0.0/6` then `deny 10.0.0.0/7` denies 10.x (the two are
// equally specific there). We expand such rules the same way, so the results are chrony's.
//
// Addresses are 16 bytes: IPv6, or IPv4 as v4-mapped ::ffff:a.b.c.d (the daemon's and the eBPF
// keys' form); a v4-mapped address is judged by the IPv4 rules only, never by an IPv6 rule that
// happens to cover ::ffff:0:0/96 (in chrony an IPv4 client never meets the IPv6 table).
#pragma once

#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

#include "core/result.hpp"

namespace taid::server {

using Address16 = std::array<uint8_t, 16>;

// One entry of the flattened table: the first prefix_len bits (0..128) of the 16-byte form.
struct AccessPrefix {
  Address16 address{};
  uint8_t prefix_len = 0;
  bool allow = false;
  friend bool operator==(const AccessPrefix&, const AccessPrefix&) = default;
};

// One `allow` / `deny` directive, parsed.
struct AccessRule {
  bool allow = true;
  bool all = false;        // `allow all` / `deny all`: overrides the more specific rules before
  bool any_family = true;  // no subnet given: both tables, from their roots
  bool ipv4 = false;       // written as IPv4 (address is then v4-mapped)
  Address16 address{};     // the subnet, host bits cleared
  uint8_t prefix_len = 0;  // as written: 0..32 for IPv4, 0..128 for IPv6 syntax
  friend bool operator==(const AccessRule&, const AccessRule&) = default;
};

// Parses one directive's arguments, as chrony.conf writes them after `allow` or `deny`:
//   (nothing) | all | [all] SUBNET
// SUBNET: an address (IPv4 /32, IPv6 /128), ADDRESS/BITS, or 1 to 3 dotted IPv4 numbers meaning
// /8, /16 or /24 ("10", "192.168"). Host names are not resolved here. `directive` ("allow" or
// "deny") opens every error, which names the bad field: "allow: '10.0.0.300/8' is not an
// address", "deny: '10.0.0.0/33': prefix length 33 is not 0..32".
Result<AccessRule> parse_access_rule(std::string_view directive, std::string_view arguments);

// 16-byte form of a textual IPv4 or IPv6 address (IPv4 v4-mapped); an error when it is neither.
Result<Address16> parse_address16(std::string_view text);
bool is_v4_mapped(const Address16& address);

class AccessList {
 public:
  // Applies one directive, in configuration order.
  void add(const AccessRule& rule);
  bool empty() const { return rules_.empty(); }

  bool allows(const Address16& v4mapped_or_v6) const;

  // A flattened list for a longest-prefix-match table (an XDP LPM trie): the longest entry
  // covering an address says allow or deny, no entry means deny, and that gives exactly
  // allows() for every address. IPv4 rules appear as ::ffff:a.b.c.d/(96 + n); there is always an
  // entry for ::ffff:0:0/96 (the IPv4 table's root, deny unless a rule set it) so that an IPv6
  // rule covering the v4-mapped range never decides for an IPv4 client.
  std::vector<AccessPrefix> longest_prefix_table() const;

 private:
  // A rule after nibble expansion, in the 16-byte form (prefix_len over all 128 bits).
  struct Entry {
    Address16 address{};
    uint8_t prefix_len = 0;
    bool ipv4 = false;
    bool allow = false;
  };
  void set(const Address16& address, uint8_t prefix_len, bool ipv4, bool allow, bool all);
  std::vector<Entry> rules_;
};

}  // namespace taid::server
