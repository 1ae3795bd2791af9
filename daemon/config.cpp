// chrony.conf-syntax parser: directive, option and timestamping-mode tables, checked once.
#include "daemon/config.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <pwd.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <cctype>
#include <cmath>
#include <cstring>
#include <limits>
#include <span>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "core/fd.hpp"
#include "core/time.hpp"
#include "core/log.hpp"
#include "servo/servo.hpp"
#include "timekeeping/timekeeper.hpp"

namespace taid::daemon {
namespace {

// One non-comment line, split into words.
struct Line {
  int number = 0;
  std::vector<std::string_view> words;
};

struct ParseState {
  std::string_view file;
  Config config;
  // Single-valued directives already seen, with their line, to report repeats.
  std::vector<std::pair<std::string_view, int>> seen;
  // hwtimestamp interfaces already seen, with their line.
  std::vector<std::pair<std::string, int>> interfaces;
  int first_log_line = 0;  // for "log without logdir"
  bool leapseclist_written = false;  // leapseclist and leapsectz exclude each other
  int first_xdpserver_line = 0;      // for "xdpserver without a server"

  std::string where(int line) const { return strcat(file, ":", line); }
  [[noreturn]] void fail(const Line& line, const std::string& message) const {
    throw ConfigError(where(line.number) + ": " + message);
  }
};

// ASCII only and locale-free, like chrony's strcasecmp in the C locale.
char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  }
  return true;
}

// A numeric option of server/pool lines, declared once with its default and range.
struct IntOption {
  std::string_view name;
  int default_value;
  int min;
  int max;
  bool pool_only;
  void (*set)(SourceDirective&, int);
};

constexpr std::array<IntOption, 4> kIntOptions{{
    // chrony's lower bound: below 16 s is for links one owns (LAN, lab, benchmarks).
    {"minpoll", kDefaultMinpoll, -6, 17, false, [](SourceDirective& s, int v) { s.minpoll = v; }},
    {"maxpoll", kDefaultMaxpoll, -6, 17, false, [](SourceDirective& s, int v) { s.maxpoll = v; }},
    {"port", kDefaultPort, 1, 65535, false,
     [](SourceDirective& s, int v) { s.port = static_cast<uint16_t>(v); }},
    {"maxsources", kDefaultMaxSources, 1, 16, true,
     [](SourceDirective& s, int v) { s.max_sources = v; }},
}};

// A word-only option of server/pool lines.
struct FlagOption {
  std::string_view name;
  void (*set)(SourceDirective&);
};

constexpr std::array<FlagOption, 6> kFlagOptions{{
    {"iburst", [](SourceDirective& s) { s.iburst = true; }},
    {"xleave", [](SourceDirective& s) { s.xleave = true; }},
    // Selection options (chrony's), for lib/selection.
    {"prefer", [](SourceDirective& s) { s.options.prefer = true; }},
    {"noselect", [](SourceDirective& s) { s.options.noselect = true; }},
    {"trust", [](SourceDirective& s) { s.options.trust = true; }},
    {"require", [](SourceDirective& s) { s.options.require = true; }},
}};

const IntOption* find_int_option(std::string_view name) {
  for (const auto& o : kIntOptions) {
    if (iequals(o.name, name)) return &o;
  }
  return nullptr;
}

const FlagOption* find_flag_option(std::string_view name) {
  for (const auto& o : kFlagOptions) {
    if (iequals(o.name, name)) return &o;
  }
  return nullptr;
}

int parse_int(const ParseState& st, const Line& line, const IntOption& option,
              std::string_view text) {
  int value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  const bool all_digits = end == text.data() + text.size();
  if (ec == std::errc::invalid_argument || !all_digits) {
    st.fail(line, strcat(option.name, " '", text, "' is not an integer"));
  }
  if (ec == std::errc::result_out_of_range || value < option.min || value > option.max) {
    st.fail(line, strcat(option.name, " ", text, " is outside ", option.min, "..", option.max));
  }
  return value;
}

void parse_source(ParseState& st, const Line& line, bool pool) {
  const std::string_view directive = pool ? "pool" : "server";
  if (line.words.size() < 2) st.fail(line, strcat(directive, ": missing host name"));
  const std::string_view name = line.words[1];
  // "server iburst" is far more likely a forgotten name than a host called iburst.
  if (find_int_option(name) != nullptr || find_flag_option(name) != nullptr) {
    st.fail(line, strcat(directive, ": missing host name before option '", name, "'"));
  }

  SourceDirective source;
  source.name = std::string(name);
  source.pool = pool;
  source.origin = st.where(line.number);
  for (const auto& o : kIntOptions) o.set(source, o.default_value);

  std::vector<std::string_view> given;  // canonical names of the options written
  auto note_given = [&](std::string_view option) {
    for (const auto g : given) {
      if (g == option) st.fail(line, strcat(directive, ": duplicate option '", option, "'"));
    }
    given.push_back(option);
  };
  auto was_given = [&](std::string_view option) {
    for (const auto g : given) {
      if (g == option) return true;
    }
    return false;
  };

  for (size_t i = 2; i < line.words.size(); ++i) {
    const std::string_view word = line.words[i];
    if (const FlagOption* flag = find_flag_option(word)) {
      note_given(flag->name);
      flag->set(source);
      continue;
    }
    const IntOption* option = find_int_option(word);
    if (option == nullptr) {
      st.fail(line, strcat(directive, ": unknown option '", word, "'"));
    }
    if (option->pool_only && !pool) {
      st.fail(line, strcat(directive, ": unknown option '", word, "' (pool only)"));
    }
    note_given(option->name);
    if (i + 1 >= line.words.size()) st.fail(line, strcat(option->name, ": missing value"));
    option->set(source, parse_int(st, line, *option, line.words[++i]));
  }

  // A noselect source is never selectable: prefer and trust would say nothing, and require
  // would hold every clock update back while it is the only required source.
  if (source.options.noselect) {
    for (const std::string_view other : {"prefer", "trust", "require"}) {
      if (was_given(other)) {
        st.fail(line, strcat(directive, ": '", other,
                             "' contradicts 'noselect' (a noselect source is never selected)"));
      }
    }
  }

  if (source.minpoll > source.maxpoll) {
    const bool min_given = was_given("minpoll");
    const bool max_given = was_given("maxpoll");
    if (min_given && max_given) {
      st.fail(line,
              strcat("minpoll ", source.minpoll, " is greater than maxpoll ", source.maxpoll));
    }
    // Only one was written: the other's default gives way to it (see config.hpp).
    if (min_given) {
      source.maxpoll = source.minpoll;
    } else {
      source.minpoll = source.maxpoll;
    }
  }
  st.config.sources.push_back(std::move(source));
}

void parse_server(ParseState& st, const Line& line) { parse_source(st, line, false); }
void parse_pool(ParseState& st, const Line& line) { parse_source(st, line, true); }

// Records a directive that may appear once; a second one is an error naming the first.
void note_single(ParseState& st, const Line& line, std::string_view directive) {
  for (const auto& [seen, at] : st.seen) {
    if (seen == directive) {
      st.fail(line, strcat("duplicate directive '", directive, "' (first at ", st.where(at), ")"));
    }
  }
  st.seen.emplace_back(directive, line.number);
}

// A directive taking exactly one absolute path, stored in `field`; it may appear once.
template <std::string Config::*field>
void parse_path(ParseState& st, const Line& line, std::string_view directive) {
  if (line.words.size() < 2) st.fail(line, strcat(directive, ": missing path"));
  if (line.words.size() > 2) {
    st.fail(line, strcat(directive, ": unexpected argument '", line.words[2], "'"));
  }
  const std::string_view path = line.words[1];
  // Relative paths would depend on the daemon's working directory, which systemd sets to /.
  if (path.front() != '/') {
    st.fail(line, strcat(directive, " '", path, "' is not an absolute path"));
  }
  note_single(st, line, directive);
  st.config.*field = std::string(path);
}

void parse_bindcmdaddress(ParseState& st, const Line& line) {
  parse_path<&Config::bindcmdaddress>(st, line, "bindcmdaddress");
  // A Unix socket path must fit sockaddr_un.sun_path (108 bytes with its NUL).
  constexpr std::size_t kMaxSocketPath = 107;
  if (st.config.bindcmdaddress.size() > kMaxSocketPath) {
    st.fail(line, strcat("bindcmdaddress: path is ", st.config.bindcmdaddress.size(),
                         " bytes, a Unix socket path holds at most ", kMaxSocketPath));
  }
}
void parse_driftfile(ParseState& st, const Line& line) {
  parse_path<&Config::driftfile>(st, line, "driftfile");
}
void parse_clockrecord(ParseState& st, const Line& line) {
  parse_path<&Config::clockrecord>(st, line, "clockrecord");
}
void parse_signsocket(ParseState& st, const Line& line) {
  parse_path<&Config::signsocket>(st, line, "signsocket");
  constexpr std::size_t kMaxSocketPath = 107;  // sockaddr_un.sun_path, as bindcmdaddress
  if (st.config.signsocket.size() > kMaxSocketPath)
    st.fail(line, strcat("signsocket: path is ", st.config.signsocket.size(),
                         " bytes, a Unix socket path holds at most ", kMaxSocketPath));
}
void parse_signkey(ParseState& st, const Line& line) {
  parse_path<&Config::signkey>(st, line, "signkey");
}
void parse_signserials(ParseState& st, const Line& line) {
  parse_path<&Config::signserials>(st, line, "signserials");
}
// signallow UID|USER...: numeric uids, or user names looked up now (a name that does not exist
// is an error here, not a silent refusal later).
void parse_signallow(ParseState& st, const Line& line) {
  if (line.words.size() < 2) st.fail(line, "signallow: missing uid or user name");
  for (std::size_t i = 1; i < line.words.size(); ++i) {
    const std::string_view word = line.words[i];
    uint32_t uid = 0;
    const auto [end, ec] = std::from_chars(word.data(), word.data() + word.size(), uid);
    if (ec == std::errc() && end == word.data() + word.size()) {
      st.config.sign_allowed_uids.push_back(uid);
      continue;
    }
    const std::string name(word);
    passwd entry{};
    passwd* found = nullptr;
    std::array<char, 4096> buffer{};
    if (::getpwnam_r(name.c_str(), &entry, buffer.data(), buffer.size(), &found) != 0 || !found)
      st.fail(line, strcat("signallow: no user '", word, "'"));
    st.config.sign_allowed_uids.push_back(found->pw_uid);
  }
}
void parse_tsabind(ParseState& st, const Line& line) {
  if (line.words.size() != 2) st.fail(line, "tsabind: expected one address");
  const std::string address(line.words[1]);
  in6_addr v6{};
  in_addr v4{};
  if (::inet_pton(AF_INET, address.c_str(), &v4) != 1 &&
      ::inet_pton(AF_INET6, address.c_str(), &v6) != 1)
    st.fail(line, strcat("tsabind: '", address, "' is not an IPv4 or IPv6 address"));
  note_single(st, line, "tsabind");
  st.config.tsabind = address;
}
void parse_tsakey(ParseState& st, const Line& line) { parse_path<&Config::tsakey>(st, line, "tsakey"); }
void parse_tsacert(ParseState& st, const Line& line) {
  parse_path<&Config::tsacert>(st, line, "tsacert");
}
void parse_tsaserials(ParseState& st, const Line& line) {
  parse_path<&Config::tsaserials>(st, line, "tsaserials");
}
// A dotted OID: at least two arcs of digits.
void parse_tsapolicy(ParseState& st, const Line& line) {
  if (line.words.size() != 2) st.fail(line, "tsapolicy: expected one OID (e.g. 1.2.3.4)");
  const std::string_view oid = line.words[1];
  bool valid = !oid.empty() && oid.front() != '.' && oid.back() != '.' &&
               oid.find("..") == std::string_view::npos && oid.find('.') != std::string_view::npos;
  for (char c : oid) valid = valid && (std::isdigit(static_cast<unsigned char>(c)) || c == '.');
  if (!valid) st.fail(line, strcat("tsapolicy: '", oid, "' is not a dotted OID (e.g. 1.2.3.4)"));
  note_single(st, line, "tsapolicy");
  st.config.tsapolicy = std::string(oid);
}
void parse_leapseclist(ParseState& st, const Line& line) {
  if (!st.config.leapsectz.empty()) st.fail(line, "leapseclist: leapsectz is already set (one only)");
  parse_path<&Config::leapseclist>(st, line, "leapseclist");
  st.leapseclist_written = true;
}
// A zone name under /usr/share/zoneinfo: words of letters, digits, '_', '-', '+' joined by '/'.
void parse_leapsectz(ParseState& st, const Line& line) {
  if (st.leapseclist_written) st.fail(line, "leapsectz: leapseclist is already set (one only)");
  if (line.words.size() != 2) st.fail(line, "leapsectz: expected one zone name (e.g. right/UTC)");
  const std::string_view name = line.words[1];
  bool valid = !name.empty() && name.front() != '/' && name.find("..") == std::string_view::npos;
  for (char c : name)
    valid = valid && (std::isalnum(static_cast<unsigned char>(c)) || c == '/' || c == '_' ||
                      c == '-' || c == '+' || c == '.');
  if (!valid) st.fail(line, strcat("leapsectz: '", name, "' is not a zone name (e.g. right/UTC)"));
  note_single(st, line, "leapsectz");
  st.config.leapsectz = std::string(name);
}

// A directive taking one word from a table, declared once per directive; messages list the
// words in table order.
template <typename Value>
struct Choice {
  std::string_view name;
  Value value;
};

constexpr std::array<Choice<TimestampingMode>, 5> kTimestampingModes{{
    {"auto", TimestampingMode::auto_},
    {"hardware", TimestampingMode::hardware},
    {"bpf", TimestampingMode::bpf},
    {"kernel", TimestampingMode::kernel},
    {"user", TimestampingMode::user},
}};

constexpr std::array<Choice<BpfAttach>, 5> kBpfAttachModes{{
    {"auto", BpfAttach::auto_},
    {"tc", BpfAttach::tc},
    {"tcx", BpfAttach::tcx},
    {"xdp-generic", BpfAttach::xdp_generic},
    {"xdp-native", BpfAttach::xdp_native},
}};

// `log` takes chrony's names; taid writes only the measurements log so far.
constexpr std::array<Choice<bool Config::*>, 1> kLogNames{{
    {"measurements", &Config::log_measurements},
}};

template <typename Value, std::size_t N>
std::string allowed_words(const std::array<Choice<Value>, N>& table) {
  std::string list;
  for (const auto& c : table) list += strcat(list.empty() ? "" : ", ", c.name);
  return list;
}

template <typename Value, std::size_t N>
const Choice<Value>& parse_word(const ParseState& st, const Line& line, std::string_view directive,
                                std::string_view word, const std::array<Choice<Value>, N>& table) {
  for (const auto& c : table) {
    if (iequals(c.name, word)) return c;
  }
  st.fail(line,
          strcat(directive, ": unknown value '", word, "' (one of ", allowed_words(table), ")"));
}

template <typename Value, std::size_t N>
Value parse_single_choice(ParseState& st, const Line& line, std::string_view directive,
                          const std::array<Choice<Value>, N>& table) {
  if (line.words.size() < 2) {
    st.fail(line, strcat(directive, ": missing value (one of ", allowed_words(table), ")"));
  }
  if (line.words.size() > 2) {
    st.fail(line, strcat(directive, ": unexpected argument '", line.words[2], "'"));
  }
  const Value value = parse_word(st, line, directive, line.words[1], table).value;
  note_single(st, line, directive);
  return value;
}

void parse_timestamping(ParseState& st, const Line& line) {
  st.config.timestamping = parse_single_choice(st, line, "timestamping", kTimestampingModes);
}

void parse_bpfattach(ParseState& st, const Line& line) {
  st.config.bpf_attach = parse_single_choice(st, line, "bpfattach", kBpfAttachModes);
}

constexpr std::array<Choice<servo::Kind>, 2> kServoKinds{{
    {"estimate", servo::Kind::estimate},
    {"pi", servo::Kind::pi},
}};

constexpr std::array<Choice<timekeeping::LeapMode>, 4> kLeapModes{{
    {"system", timekeeping::LeapMode::system},
    {"step", timekeeping::LeapMode::step},
    {"slew", timekeeping::LeapMode::slew},
    {"ignore", timekeeping::LeapMode::ignore},
}};

void parse_leapsecmode(ParseState& st, const Line& line) {
  st.config.timekeeping.leap_mode = parse_single_choice(st, line, "leapsecmode", kLeapModes);
}

// servo estimate|pi (ours): the strategy, parsed here so the config needs only the header.
void parse_servo(ParseState& st, const Line& line) {
  st.config.timekeeping.servo_kind = parse_single_choice(st, line, "servo", kServoKinds);
}

// The numbers of chrony's selection and clock directives: each directive's fields, their kind
// and range declared once, checked once, then stored into timekeeping::Settings.
enum class NumberKind {
  integer,  // decimal int
  real,     // decimal floating point ("0.5", "1e-3")
  seconds,  // real, kept to whole nanoseconds (a Duration) before its range is checked
};

inline constexpr double kUnbounded = std::numeric_limits<double>::infinity();
// Seconds become int64 nanoseconds (±292 years); 10^9 s stays far from that edge.
inline constexpr double kMaxSeconds = 1e9;

struct NumberField {
  std::string_view name;  // after the directive's name in messages; empty for a lone number
  NumberKind kind;
  double min;          // -kUnbounded: none
  bool min_exclusive;  // the value must be greater than min, not equal to it
  double max;          // kUnbounded: none (seconds are still held to kMaxSeconds)
};

struct NumericDirective {
  std::string_view name;
  std::size_t count;  // fields used
  std::array<NumberField, 3> fields;
  void (*store)(timekeeping::Settings&, std::span<const double>);
};

Duration seconds_of(double value) { return Duration::from_seconds(value); }

constexpr std::array<NumericDirective, 10> kNumericDirectives{{
    {"minsources",
     1,
     {{{"", NumberKind::integer, 1, false, kUnbounded}}},
     [](timekeeping::Settings& t, std::span<const double> v) {
       t.selection.min_sources = static_cast<int>(v[0]);
     }},
    {"maxdistance",
     1,
     {{{"", NumberKind::seconds, 0, true, kMaxSeconds}}},
     [](timekeeping::Settings& t, std::span<const double> v) {
       t.selection.max_distance = seconds_of(v[0]);
     }},
    {"maxjitter",
     1,
     {{{"", NumberKind::seconds, 0, true, kMaxSeconds}}},
     [](timekeeping::Settings& t, std::span<const double> v) {
       t.selection.max_jitter = seconds_of(v[0]);
     }},
    // 0 turns combining off: only the system peer steers the clock (chrony).
    {"combinelimit",
     1,
     {{{"", NumberKind::real, 0, false, kUnbounded}}},
     [](timekeeping::Settings& t, std::span<const double> v) { t.selection.combine_limit = v[0]; }},
    // A negative limit steps at any update (chrony).
    {"makestep",
     2,
     {{{"threshold", NumberKind::seconds, 0, false, kMaxSeconds},
       {"limit", NumberKind::integer, -kUnbounded, false, kUnbounded}}},
     [](timekeeping::Settings& t, std::span<const double> v) {
       t.servo.makestep_threshold = seconds_of(v[0]);
       t.servo.makestep_limit = static_cast<int>(v[1]);
     }},
    // chrony takes any rate and lets the driver clamp it; 100000 ppm is the most any of chrony's
    // drivers can set (Linux's, tick ±10 %), so a larger rate could only be a mistake.
    {"maxslewrate",
     1,
     {{{"", NumberKind::real, 0, true, 100000}}},
     [](timekeeping::Settings& t, std::span<const double> v) { t.servo.max_slew_rate_ppm = v[0]; }},
    // A negative ignore count ignores every large offset and never stops (chrony).
    {"maxchange",
     3,
     {{{"offset", NumberKind::seconds, 0, true, kMaxSeconds},
       {"start", NumberKind::integer, 0, false, kUnbounded},
       {"ignore", NumberKind::integer, -kUnbounded, false, kUnbounded}}},
     [](timekeeping::Settings& t, std::span<const double> v) {
       t.servo.maxchange_offset = seconds_of(v[0]);
       t.servo.maxchange_start = static_cast<int>(v[1]);
       t.servo.maxchange_ignore = static_cast<int>(v[2]);
     }},
    // chrony's default 500000 ppm means "the driver's limit"; more cannot mean anything.
    {"maxdrift",
     1,
     {{{"", NumberKind::real, 0, true, 500000}}},
     [](timekeeping::Settings& t, std::span<const double> v) { t.servo.max_drift_ppm = v[0]; }},
    {"corrtimeratio",
     1,
     {{{"", NumberKind::real, 0, true, kUnbounded}}},
     [](timekeeping::Settings& t, std::span<const double> v) { t.servo.corr_time_ratio = v[0]; }},
    // 0 would claim a perfect oscillator: the error bound would never grow between updates.
    {"maxclockerror",
     1,
     {{{"", NumberKind::real, 0, true, kUnbounded}}},
     [](timekeeping::Settings& t, std::span<const double> v) { t.max_clock_error_ppm = v[0]; }},
}};

// A bound as a message shows it: "0", "83333.333", "1000000000".
std::string bound_text(double bound) {
  char buffer[64];
  const auto [end, ec] =
      std::to_chars(buffer, buffer + sizeof buffer, bound, std::chars_format::fixed);
  return ec == std::errc() ? std::string(buffer, end) : std::string("?");
}

double parse_number(const ParseState& st, const Line& line, std::string_view what,
                    const NumberField& field, std::string_view text) {
  const char* const first = text.data();
  const char* const last = text.data() + text.size();
  double value = 0;
  if (field.kind == NumberKind::integer) {
    int integer = 0;
    const auto [end, ec] = std::from_chars(first, last, integer);
    if (ec == std::errc::invalid_argument || end != last) {
      st.fail(line, strcat(what, " '", text, "' is not an integer"));
    }
    if (ec == std::errc::result_out_of_range) {
      st.fail(line, strcat(what, " ", text, " is outside the int range"));
    }
    value = integer;
  } else {
    const auto [end, ec] = std::from_chars(first, last, value);
    if (ec == std::errc::invalid_argument || end != last) {
      st.fail(line, strcat(what, " '", text, "' is not a number"));
    }
    if (ec == std::errc::result_out_of_range || !std::isfinite(value)) {
      st.fail(line, strcat(what, " '", text, "' is not a finite number"));
    }
    // Check what will be used: "1e-10" s is 0 ns.
    if (field.kind == NumberKind::seconds && std::fabs(value) <= kMaxSeconds) {
      value = std::round(value * 1e9) / 1e9;
    }
  }
  if (field.min_exclusive ? !(value > field.min) : value < field.min) {
    st.fail(line, strcat(what, " ", text,
                         field.min_exclusive ? " must be greater than " : " must be at least ",
                         bound_text(field.min)));
  }
  if (value > field.max) {
    st.fail(line, strcat(what, " ", text, " must be at most ", bound_text(field.max)));
  }
  return value;
}

void parse_numeric(ParseState& st, const Line& line, const NumericDirective& directive) {
  const std::size_t given = line.words.size() - 1;
  if (given < directive.count) {
    const std::string_view missing = directive.fields[given].name;
    st.fail(line, strcat(directive.name, ": missing ", missing.empty() ? "value" : missing));
  }
  if (given > directive.count) {
    st.fail(line, strcat(directive.name, ": unexpected argument '", line.words[directive.count + 1],
                         "'"));
  }
  std::array<double, 3> values{};
  for (std::size_t i = 0; i < directive.count; ++i) {
    const NumberField& field = directive.fields[i];
    const std::string what =
        field.name.empty() ? std::string(directive.name) : strcat(directive.name, " ", field.name);
    values[i] = parse_number(st, line, what, field, line.words[i + 1]);
  }
  note_single(st, line, directive.name);
  directive.store(st.config.timekeeping, std::span<const double>(values.data(), directive.count));
}

void parse_tsaport(ParseState& st, const Line& line) {
  if (line.words.size() != 2) st.fail(line, "tsaport: expected one port number");
  const double port = parse_number(st, line, "tsaport", {"", NumberKind::integer, 1, false, 65535},
                                   line.words[1]);
  note_single(st, line, "tsaport");
  st.config.tsaport = static_cast<uint16_t>(port);
}
void parse_maxsignbound(ParseState& st, const Line& line) {
  if (line.words.size() < 2) st.fail(line, "maxsignbound: missing value");
  if (line.words.size() > 2)
    st.fail(line, strcat("maxsignbound: unexpected argument '", line.words[2], "'"));
  const double seconds = parse_number(st, line, "maxsignbound",
                                      {"", NumberKind::seconds, 0, true, kMaxSeconds}, line.words[1]);
  note_single(st, line, "maxsignbound");
  st.config.max_sign_bound = seconds_of(seconds);
}

void parse_logdir(ParseState& st, const Line& line) {
  parse_path<&Config::logdir>(st, line, "logdir");
}

// log NAME...: which logs to write into logdir (chrony's directive).
void parse_log(ParseState& st, const Line& line) {
  if (st.first_log_line == 0) st.first_log_line = line.number;
  if (line.words.size() < 2) {
    st.fail(line, strcat("log: missing log name (one of ", allowed_words(kLogNames), ")"));
  }
  for (std::size_t i = 1; i < line.words.size(); ++i)
    st.config.*(parse_word(st, line, "log", line.words[i], kLogNames).value) = true;
}

// Linux's rule (dev_valid_name): 1..15 bytes, not "." or "..", no '/', ':' or blank; the
// blanks never reach here, split_words took them. Linux would allow '*', but "eth*" is far more
// likely a glob we do not expand than an interface's name, so only "*" alone may use it.
bool valid_interface_name(std::string_view name) {
  constexpr size_t kMaxInterfaceName = 15;  // IFNAMSIZ - 1
  if (name.empty() || name.size() > kMaxInterfaceName || name == "." || name == "..") return false;
  return name.find_first_of("/:*") == std::string_view::npos;
}

void parse_xdpserver(ParseState& st, const Line& line) {
  if (line.words.size() < 2 || line.words.size() > 3)
    st.fail(line, "xdpserver: expected an interface name and optionally native or generic");
  const std::string_view name = line.words[1];
  if (!valid_interface_name(name))
    st.fail(line, strcat("xdpserver: '", name,
                         "' is not an interface name (1 to 15 characters, no '/', ':' or '*')"));
  for (const XdpServerDirective& seen : st.config.server.xdp_interfaces) {
    if (seen.interface == name)
      st.fail(line, strcat("xdpserver: duplicate interface '", name, "'"));
  }
  XdpServerDirective directive{std::string(name), XdpServerDirective::Mode::native_first};
  if (line.words.size() == 3) {
    if (iequals(line.words[2], "native"))
      directive.mode = XdpServerDirective::Mode::native;
    else if (iequals(line.words[2], "generic"))
      directive.mode = XdpServerDirective::Mode::generic;
    else
      st.fail(line, strcat("xdpserver: unknown mode '", line.words[2], "' (native or generic)"));
  }
  st.config.server.xdp_interfaces.push_back(std::move(directive));
  if (st.first_xdpserver_line == 0) st.first_xdpserver_line = line.number;
}

void parse_hwtimestamp(ParseState& st, const Line& line) {
  if (line.words.size() < 2) st.fail(line, "hwtimestamp: missing interface name");
  // chrony's per-interface options (minpoll, rxfilter, ...) are not implemented: refuse them.
  if (line.words.size() > 2) {
    st.fail(line, strcat("hwtimestamp: unknown option '", line.words[2], "'"));
  }
  const std::string_view name = line.words[1];
  if (name != "*" && !valid_interface_name(name)) {
    st.fail(line, strcat("hwtimestamp: '", name,
                         "' is not an interface name (1 to 15 "
                         "characters, no '/', ':' or '*')"));
  }
  // Interface names are case-sensitive in Linux, so "eth0" and "ETH0" are different ones.
  for (const auto& [seen, at] : st.interfaces) {
    if (seen == name) {
      st.fail(line, strcat("hwtimestamp: duplicate interface '", name, "' (first at ", st.where(at),
                           ")"));
    }
  }
  st.interfaces.emplace_back(std::string(name), line.number);
  st.config.hwtimestamp_interfaces.emplace_back(name);
}

// Checks that need the whole file, reported at the line that asked for the impossible.
void check_whole_config(const ParseState& st) {
  if (st.config.log_measurements && st.config.logdir.empty()) {
    throw ConfigError(strcat(st.where(st.first_log_line),
                             ": log: needs a logdir line naming "
                             "the directory"));
  }
  auto line_of = [&st](std::string_view directive) {
    for (const auto& [seen, at] : st.seen) {
      if (seen == directive) return at;
    }
    return 0;
  };
  if (!st.config.server.xdp_interfaces.empty() && !st.config.server.enabled()) {
    throw ConfigError(strcat(st.where(st.first_xdpserver_line),
                             ": xdpserver: the NTP server is off (it needs an allow line and a "
                             "port other than 0)"));
  }
  if (st.config.timestamping == TimestampingMode::hardware &&
      st.config.hwtimestamp_interfaces.empty()) {
    throw ConfigError(strcat(st.where(line_of("timestamping")),
                             ": timestamping hardware needs an hwtimestamp "
                             "line naming the interface (or '*')"));
  }
  // A minsources no file can meet would hold every clock update back. Without any source the
  // daemon only serves its control socket, and minsources has nothing to count.
  const int min_sources = st.config.timekeeping.selection.min_sources;
  if (!st.config.sources.empty() && line_of("minsources") != 0) {
    int selectable = 0;
    for (const SourceDirective& s : st.config.sources) {
      if (!s.options.noselect) selectable += s.pool ? s.max_sources : 1;
    }
    if (min_sources > selectable) {
      throw ConfigError(strcat(st.where(line_of("minsources")), ": minsources ", min_sources,
                               " is more than the ", selectable,
                               " selectable sources the file can give (a server each, "
                               "maxsources per pool, noselect ones not counted)"));
    }
  }
}

// The words after the directive, as one string (lib/server's parsers take chrony's syntax).
std::string arguments_of(const Line& line) {
  std::string text;
  for (std::size_t i = 1; i < line.words.size(); ++i) {
    if (i > 1) text += ' ';
    text += line.words[i];
  }
  return text;
}

void parse_access(ParseState& st, const Line& line, bool allow) {
  const std::string_view directive = allow ? "allow" : "deny";
  auto rule = server::parse_access_rule(directive, arguments_of(line));
  if (!rule) st.fail(line, rule.error().message());
  if (rule->allow != allow) st.fail(line, strcat(directive, ": internal mix-up of allow and deny"));
  st.config.server.access.add(*rule);
  if (allow) st.config.server.any_allow = true;
}
void parse_allow(ParseState& st, const Line& line) { parse_access(st, line, true); }
void parse_deny(ParseState& st, const Line& line) { parse_access(st, line, false); }

void parse_port(ParseState& st, const Line& line) {
  if (line.words.size() != 2) st.fail(line, "port: expected one port number (0: no server)");
  const double port =
      parse_number(st, line, "port", {"", NumberKind::integer, 0, false, 65535}, line.words[1]);
  note_single(st, line, "port");
  st.config.server.port = static_cast<uint16_t>(port);
}

// chrony keeps one address per family (a later line replaces the earlier); we refuse the repeat.
void parse_bindaddress(ParseState& st, const Line& line) {
  if (line.words.size() != 2) st.fail(line, "bindaddress: expected one IPv4 or IPv6 address");
  const std::string address(line.words[1]);
  in6_addr v6{};
  in_addr v4{};
  const bool is_v4 = ::inet_pton(AF_INET, address.c_str(), &v4) == 1;
  if (!is_v4 && ::inet_pton(AF_INET6, address.c_str(), &v6) != 1)
    st.fail(line, strcat("bindaddress: '", address, "' is not an IPv4 or IPv6 address"));
  for (const std::string& seen : st.config.server.bind_addresses) {
    in_addr seen_v4{};
    if ((::inet_pton(AF_INET, seen.c_str(), &seen_v4) == 1) == is_v4)
      st.fail(line, strcat("bindaddress: one ", is_v4 ? "IPv4" : "IPv6", " address only ('",
                           seen, "' is already set)"));
  }
  st.config.server.bind_addresses.push_back(address);
}

// local [stratum N] [distance D]; chrony's orphan mode is not implemented and refused by name.
void parse_local(ParseState& st, const Line& line) {
  note_single(st, line, "local");
  uint8_t stratum = 10;
  for (std::size_t i = 1; i < line.words.size(); ++i) {
    const std::string_view option = line.words[i];
    if (iequals(option, "orphan")) st.fail(line, "local: orphan is not supported");
    const bool is_stratum = iequals(option, "stratum");
    if (!is_stratum && !iequals(option, "distance"))
      st.fail(line, strcat("local: unknown option '", option, "' (stratum N, distance SECONDS)"));
    if (i + 1 >= line.words.size()) st.fail(line, strcat("local: ", option, " needs a value"));
    if (is_stratum) {
      stratum = static_cast<uint8_t>(parse_number(
          st, line, "local stratum", {"", NumberKind::integer, 1, false, 15}, line.words[++i]));
    } else {
      st.config.server.local_distance = seconds_of(parse_number(
          st, line, "local distance", {"", NumberKind::seconds, 0, true, 3600}, line.words[++i]));
    }
  }
  st.config.server.local_stratum = stratum;
}

void parse_ratelimit(ParseState& st, const Line& line) {
  auto settings = server::parse_rate_limit(arguments_of(line));
  if (!settings) st.fail(line, settings.error().message());
  note_single(st, line, "ratelimit");
  st.config.server.rate_limit = *settings;
}

void parse_clientloglimit(ParseState& st, const Line& line) {
  if (line.words.size() != 2) st.fail(line, "clientloglimit: expected one size in bytes");
  const double bytes = parse_number(st, line, "clientloglimit",
                                    {"", NumberKind::integer, 4096, false, 1 << 30}, line.words[1]);
  note_single(st, line, "clientloglimit");
  st.config.server.client_log_bytes = static_cast<std::size_t>(bytes);
}

void parse_serverworkers(ParseState& st, const Line& line) {
  if (line.words.size() != 2) st.fail(line, "serverworkers: expected one number");
  const double workers = parse_number(st, line, "serverworkers",
                                      {"", NumberKind::integer, 1, false, 64}, line.words[1]);
  note_single(st, line, "serverworkers");
  st.config.server.workers = static_cast<int>(workers);
}

void parse_xdpserver(ParseState& st, const Line& line);

// Every directive, declared once.
struct Directive {
  std::string_view name;
  void (*handle)(ParseState&, const Line&);
};

constexpr std::array<Directive, 34> kDirectives{{
    {"allow", parse_allow},
    {"deny", parse_deny},
    {"port", parse_port},
    {"bindaddress", parse_bindaddress},
    {"local", parse_local},
    {"ratelimit", parse_ratelimit},
    {"clientloglimit", parse_clientloglimit},
    {"serverworkers", parse_serverworkers},
    {"xdpserver", parse_xdpserver},
    {"server", parse_server},
    {"pool", parse_pool},
    {"bindcmdaddress", parse_bindcmdaddress},
    {"driftfile", parse_driftfile},
    {"hwtimestamp", parse_hwtimestamp},
    {"timestamping", parse_timestamping},
    {"bpfattach", parse_bpfattach},
    {"logdir", parse_logdir},
    {"log", parse_log},
    {"servo", parse_servo},
    {"leapseclist", parse_leapseclist},
    {"leapsectz", parse_leapsectz},
    {"leapsecmode", parse_leapsecmode},
    {"clockrecord", parse_clockrecord},
    {"signsocket", parse_signsocket},
    {"signkey", parse_signkey},
    {"signserials", parse_signserials},
    {"maxsignbound", parse_maxsignbound},
    {"signallow", parse_signallow},
    {"tsaport", parse_tsaport},
    {"tsabind", parse_tsabind},
    {"tsakey", parse_tsakey},
    {"tsacert", parse_tsacert},
    {"tsaserials", parse_tsaserials},
    {"tsapolicy", parse_tsapolicy},
}};

bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

std::vector<std::string_view> split_words(std::string_view text) {
  std::vector<std::string_view> words;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && is_blank(text[i])) ++i;
    const size_t start = i;
    while (i < text.size() && !is_blank(text[i])) ++i;
    if (i > start) words.push_back(text.substr(start, i - start));
  }
  return words;
}

}  // namespace

std::string_view to_string(TimestampingMode mode) {
  for (const auto& m : kTimestampingModes) {
    if (m.value == mode) return m.name;
  }
  return "?";
}

std::string_view to_string(BpfAttach attach) {
  for (const auto& m : kBpfAttachModes) {
    if (m.value == attach) return m.name;
  }
  return "?";
}

Config parse_config(std::string_view text, std::string_view file_name) {
  ParseState st;
  st.file = file_name;
  int number = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    Line line;
    line.number = ++number;
    line.words = split_words(text.substr(pos, end - pos));
    pos = end + 1;

    if (line.words.empty()) continue;
    // chrony's comment characters, recognised only at the start of a line.
    if (std::string_view("#!;%").find(line.words[0].front()) != std::string_view::npos) continue;

    const Directive* directive = nullptr;
    for (const auto& d : kDirectives) {
      if (iequals(d.name, line.words[0])) directive = &d;
    }
    if (directive != nullptr) {
      directive->handle(st, line);
      continue;
    }
    const NumericDirective* numeric = nullptr;
    for (const auto& d : kNumericDirectives) {
      if (iequals(d.name, line.words[0])) numeric = &d;
    }
    if (numeric == nullptr) st.fail(line, strcat("unknown directive '", line.words[0], "'"));
    parse_numeric(st, line, *numeric);
  }
  check_whole_config(st);
  return std::move(st.config);
}

Config load_config(const std::string& path) {
  auto cannot_read = [&path] {
    return ConfigError(strcat(path, ": cannot read: ", std::strerror(errno)));
  };
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw cannot_read();
  std::string text;
  char buffer[4096];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      throw cannot_read();  // EISDIR for a directory lands here
    }
    text.append(buffer, static_cast<size_t>(n));
  }
  return parse_config(text, path);
}

}  // namespace taid::daemon
