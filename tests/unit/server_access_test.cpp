// AccessList: chrony's allow/deny semantics, the directive parser's errors, and the LPM table.
#include <gtest/gtest.h>

#include <random>
#include <string>

#include "server/access.hpp"

namespace taid::server {
namespace {

Address16 addr(const std::string& text) {
  auto a = parse_address16(text);
  EXPECT_TRUE(a.ok()) << text;
  return a.ok() ? *a : Address16{};
}

AccessList list_of(std::initializer_list<std::pair<const char*, const char*>> directives) {
  AccessList list;
  for (const auto& [directive, args] : directives) {
    auto rule = parse_access_rule(directive, args);
    EXPECT_TRUE(rule.ok()) << directive << " " << args << ": " << rule.error().message();
    if (rule.ok()) list.add(*rule);
  }
  return list;
}

bool covers(const AccessPrefix& p, const Address16& a) {
  for (int bit = 0; bit < p.prefix_len; ++bit) {
    const int mask = 0x80 >> (bit % 8);
    if ((p.address[bit / 8] & mask) != (a[bit / 8] & mask)) return false;
  }
  return true;
}

// What an LPM trie loaded with the table answers: the longest covering entry, none = deny.
bool lpm(const std::vector<AccessPrefix>& table, const Address16& a) {
  int best = -1;
  bool allow = false;
  for (const auto& p : table) {
    if (covers(p, a) && p.prefix_len > best) {
      best = p.prefix_len;
      allow = p.allow;
    }
  }
  return allow;
}

void expect_table_agrees(const AccessList& list, const std::vector<std::string>& addresses) {
  const auto table = list.longest_prefix_table();
  for (const auto& text : addresses) {
    EXPECT_EQ(lpm(table, addr(text)), list.allows(addr(text))) << text;
  }
}

TEST(ServerAccess, EmptyListDeniesEveryone) {
  AccessList list;
  EXPECT_TRUE(list.empty());
  EXPECT_FALSE(list.allows(addr("192.0.2.1")));
  EXPECT_FALSE(list.allows(addr("2001:db8::1")));
  EXPECT_FALSE(list.allows(addr("::")));
  const auto table = list.longest_prefix_table();
  ASSERT_EQ(table.size(), 1u);
  EXPECT_EQ(table[0].prefix_len, 96);
  EXPECT_FALSE(table[0].allow);
  EXPECT_EQ(table[0].address, addr("::ffff:0.0.0.0"));
}

TEST(ServerAccess, AllowWithoutSubnetCoversBothFamilies) {
  const auto list = list_of({{"allow", ""}});
  EXPECT_TRUE(list.allows(addr("192.0.2.1")));
  EXPECT_TRUE(list.allows(addr("2001:db8::1")));
  const auto table = list.longest_prefix_table();
  EXPECT_EQ(table.size(), 2u);  // ::ffff:0:0/96 and ::/0, both allow
  expect_table_agrees(list, {"192.0.2.1", "2001:db8::1", "::1", "0.0.0.0"});
}

TEST(ServerAccess, MostSpecificRuleWins) {
  const auto list = list_of({{"allow", "10.0.0.0/8"},
                             {"deny", "10.1.0.0/16"},
                             {"allow", "10.1.2.0/24"},
                             {"deny", "10.1.2.3"}});
  EXPECT_TRUE(list.allows(addr("10.2.3.4")));
  EXPECT_FALSE(list.allows(addr("10.1.3.4")));
  EXPECT_TRUE(list.allows(addr("10.1.2.9")));
  EXPECT_FALSE(list.allows(addr("10.1.2.3")));
  EXPECT_FALSE(list.allows(addr("11.0.0.1")));
  EXPECT_FALSE(list.allows(addr("::ffff:11.0.0.1")));
  expect_table_agrees(list, {"10.2.3.4", "10.1.3.4", "10.1.2.9", "10.1.2.3", "11.0.0.1"});
}

TEST(ServerAccess, LaterRuleForTheSameSubnetReplaces) {
  const auto list = list_of({{"allow", "10.0.0.0/8"}, {"deny", "10.0.0.0/8"}});
  EXPECT_FALSE(list.allows(addr("10.9.9.9")));
  // Host bits do not make another subnet: 10.5.0.0/8 is 10.0.0.0/8.
  const auto again = list_of({{"deny", "10.0.0.0/8"}, {"allow", "10.5.0.0/8"}});
  EXPECT_TRUE(again.allows(addr("10.9.9.9")));
  EXPECT_EQ(again.longest_prefix_table().size(), 2u);  // the /8 once, and the IPv4 root
}

TEST(ServerAccess, AllOverridesTheMoreSpecificRulesBeforeItOnly) {
  auto list = list_of({{"deny", "10.1.0.0/16"}, {"allow", "10.1.2.0/24"}, {"allow", "all 10/8"}});
  EXPECT_TRUE(list.allows(addr("10.1.0.1")));  // the /16 deny is gone
  EXPECT_TRUE(list.allows(addr("10.1.2.1")));
  list.add(*parse_access_rule("deny", "10.1.2.0/24"));  // after it: counts
  EXPECT_FALSE(list.allows(addr("10.1.2.1")));
  EXPECT_TRUE(list.allows(addr("10.1.3.1")));
  list.add(*parse_access_rule("deny", "all"));  // both roots, everything under them gone
  EXPECT_FALSE(list.allows(addr("10.1.3.1")));
  EXPECT_FALSE(list.allows(addr("2001:db8::1")));
  EXPECT_EQ(list.longest_prefix_table().size(), 2u);
  // Without `all`, the more specific rules survive a broader one.
  const auto plain = list_of({{"deny", "10.1.0.0/16"}, {"allow", "10/8"}});
  EXPECT_FALSE(plain.allows(addr("10.1.0.1")));
  EXPECT_TRUE(plain.allows(addr("10.2.0.1")));
}

TEST(ServerAccess, Ipv6Subnets) {
  const auto list = list_of({{"allow", "2001:db8::/32"}, {"deny", "2001:db8:1::/48"}});
  EXPECT_TRUE(list.allows(addr("2001:db8::1")));
  EXPECT_FALSE(list.allows(addr("2001:db8:1::1")));
  EXPECT_TRUE(list.allows(addr("2001:db8:2::1")));
  EXPECT_FALSE(list.allows(addr("2001:db9::1")));
  expect_table_agrees(list, {"2001:db8::1", "2001:db8:1::1", "2001:db8:2::1", "2001:db9::1"});
}

TEST(ServerAccess, Ipv6RulesNeverDecideForIpv4Clients) {
  // chrony keeps two tables: `allow ::/0` opens IPv6 only.
  const auto list = list_of({{"allow", "::/0"}});
  EXPECT_TRUE(list.allows(addr("2001:db8::1")));
  EXPECT_FALSE(list.allows(addr("192.0.2.1")));
  expect_table_agrees(list, {"2001:db8::1", "192.0.2.1", "::ffff:0:0", "::fffe:1:2"});
  // A subnet written in the v4-mapped range is an IPv4 rule.
  const auto mapped = list_of({{"allow", "::ffff:10.0.0.0/104"}});
  EXPECT_TRUE(mapped.allows(addr("10.1.2.3")));
  EXPECT_FALSE(mapped.allows(addr("11.1.2.3")));
  const auto v4 = list_of({{"allow", "0.0.0.0/0"}});
  EXPECT_TRUE(v4.allows(addr("203.0.113.7")));
  EXPECT_FALSE(v4.allows(addr("2001:db8::1")));
}

TEST(ServerAccess, PrefixLengthsExpandToNibblesAsChronyDoes) {
  // 10.0.0.0/6 is 8.0.0.0/6, i.e. 8, 9, 10, 11 /8; /7 is 10 and 11 /8: equally specific, the later
  // wins. A bit-level trie would let the /8 allow below win over the /6 deny.
  const auto list = list_of({{"allow", "10.0.0.0/6"}, {"deny", "10.0.0.0/7"}});
  EXPECT_TRUE(list.allows(addr("8.1.1.1")));
  EXPECT_TRUE(list.allows(addr("9.1.1.1")));
  EXPECT_FALSE(list.allows(addr("10.1.1.1")));
  EXPECT_FALSE(list.allows(addr("11.1.1.1")));
  EXPECT_FALSE(list.allows(addr("12.1.1.1")));
  const auto chrony = list_of({{"allow", "10.0.0.0/8"}, {"deny", "8.0.0.0/6"}});
  EXPECT_FALSE(chrony.allows(addr("10.1.1.1")));
  EXPECT_EQ(chrony.longest_prefix_table().size(), 5u);  // four /8 (as /104) and the root
  expect_table_agrees(chrony, {"8.0.0.0", "10.1.1.1", "11.255.255.255", "12.0.0.0", "7.0.0.1"});
}

TEST(ServerAccess, ParserForms) {
  const auto host = parse_access_rule("allow", "192.0.2.1");
  ASSERT_TRUE(host.ok());
  EXPECT_TRUE(host->ipv4);
  EXPECT_EQ(host->prefix_len, 32);
  const auto partial = parse_access_rule("allow", "192.168");
  ASSERT_TRUE(partial.ok());
  EXPECT_EQ(partial->prefix_len, 16);
  EXPECT_EQ(partial->address, addr("192.168.0.0"));
  const auto one = parse_access_rule("deny", " all   10 ");
  ASSERT_TRUE(one.ok());
  EXPECT_FALSE(one->allow);
  EXPECT_TRUE(one->all);
  EXPECT_EQ(one->prefix_len, 8);
  const auto v6 = parse_access_rule("allow", "2001:db8::1");
  ASSERT_TRUE(v6.ok());
  EXPECT_FALSE(v6->ipv4);
  EXPECT_EQ(v6->prefix_len, 128);
  const auto masked = parse_access_rule("allow", "2001:db8:ffff::1/32");
  ASSERT_TRUE(masked.ok());
  EXPECT_EQ(masked->address, addr("2001:db8::"));
  const auto any = parse_access_rule("allow", "");
  ASSERT_TRUE(any.ok());
  EXPECT_TRUE(any->any_family);
}

TEST(ServerAccess, ParserErrorsNameTheField) {
  const auto message = [](const char* d, const char* a) {
    auto r = parse_access_rule(d, a);
    EXPECT_FALSE(r.ok()) << d << " " << a;
    return r.ok() ? std::string() : r.error().message();
  };
  EXPECT_EQ(message("allow", "10.0.0.300/8"), "allow: '10.0.0.300/8' is not an address");
  EXPECT_EQ(message("deny", "10.0.0.0/33"), "deny: '10.0.0.0/33': prefix length '33' is not 0..32");
  EXPECT_EQ(message("allow", "2001:db8::/129"),
            "allow: '2001:db8::/129': prefix length '129' is not 0..128");
  EXPECT_EQ(message("allow", "10.0.0.0/"), "allow: '10.0.0.0/': prefix length '' is not 0..32");
  EXPECT_EQ(message("allow", "10.0.0.0/-1"),
            "allow: '10.0.0.0/-1': prefix length '-1' is not 0..32");
  EXPECT_EQ(message("allow", "ntp.example.org"), "allow: 'ntp.example.org' is not an address");
  EXPECT_EQ(message("allow", "10.0.0.0/8 extra"), "allow: unexpected 'extra' after the subnet");
  EXPECT_EQ(message("deny", "all all"), "deny: 'all' is not an address");
  EXPECT_EQ(message("allow", "1.2.3.4.5"), "allow: '1.2.3.4.5' is not an address");
}

TEST(ServerAccess, FlattenedTableMatchesAllowsForRandomRuleSets) {
  // Random rule sets over a small address neighbourhood (so rules overlap), then every address
  // judged both ways: the LPM table must agree with allows() everywhere.
  std::mt19937_64 rng(42);
  const auto random_v4 = [&] {
    return "10." + std::to_string(rng() % 4) + "." + std::to_string(rng() % 4) + "." +
           std::to_string(rng() % 256);
  };
  const auto random_v6 = [&] {
    char text[64];
    std::snprintf(text, sizeof text, "2001:db8:%x::%x", static_cast<unsigned>(rng() % 4),
                  static_cast<unsigned>(rng() % 65536));
    return std::string(text);
  };
  int disagreements = 0, allowed = 0, checked = 0;
  for (int round = 0; round < 200; ++round) {
    AccessList list;
    const int rules = 1 + static_cast<int>(rng() % 12);
    for (int i = 0; i < rules; ++i) {
      const bool v6 = rng() % 3 == 0;
      const int len = v6 ? static_cast<int>(rng() % 129) : static_cast<int>(rng() % 33);
      std::string args = (rng() % 4 == 0 ? "all " : "") + (v6 ? random_v6() : random_v4()) + "/" +
                         std::to_string(len);
      if (rng() % 20 == 0) args = rng() % 2 ? "" : "all";
      auto rule = parse_access_rule(rng() % 2 ? "allow" : "deny", args);
      ASSERT_TRUE(rule.ok()) << args;
      list.add(*rule);
    }
    const auto table = list.longest_prefix_table();
    for (int i = 0; i < 200; ++i) {
      const Address16 a = addr(rng() % 3 == 0 ? random_v6() : random_v4());
      const bool want = list.allows(a);
      disagreements += lpm(table, a) != want;
      allowed += want;
      ++checked;
    }
  }
  EXPECT_EQ(disagreements, 0);
  // Both answers occur, so the comparison means something.
  EXPECT_GT(allowed, checked / 10);
  EXPECT_LT(allowed, checked - checked / 10);
}

}  // namespace
}  // namespace taid::server
