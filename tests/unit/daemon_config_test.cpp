// Tests for the chrony.conf-syntax config parser: a full good config, defaults, comments and
// line numbers, timestamping/hwtimestamp, selection/servo/clock directives and server selection
// options, and every error kind with its exact "file:line: message".
#include <stdlib.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "daemon/config.hpp"

namespace taid::daemon {
namespace {

// The message parse_config throws for text, or "" if it parses.
// "directive value\n".
std::string strcat_line(std::string_view directive, std::string_view value) {
  return std::string(directive) + " " + std::string(value) + "\n";
}

std::string error_of(std::string_view text) {
  try {
    parse_config(text, "t.conf");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(Config, GoodConfigWithEveryOption) {
  const Config c = parse_config(
      "server ntp1.example.net iburst minpoll 4 maxpoll 8 port 1123\n"
      "pool pool.example.org iburst minpoll 5 maxpoll 17 port 65535 maxsources 16\n"
      "bindcmdaddress /run/x/ctl.sock\n"
      "driftfile /var/lib/taid/drift\n",
      "taid.conf");
  ASSERT_EQ(c.sources.size(), 2U);
  const SourceDirective& s = c.sources[0];
  EXPECT_EQ(s.name, "ntp1.example.net");
  EXPECT_FALSE(s.pool);
  EXPECT_TRUE(s.iburst);
  EXPECT_EQ(s.minpoll, 4);
  EXPECT_EQ(s.maxpoll, 8);
  EXPECT_EQ(s.port, 1123);
  EXPECT_EQ(s.origin, "taid.conf:1");
  const SourceDirective& p = c.sources[1];
  EXPECT_EQ(p.name, "pool.example.org");
  EXPECT_TRUE(p.pool);
  EXPECT_TRUE(p.iburst);
  EXPECT_EQ(p.minpoll, 5);
  EXPECT_EQ(p.maxpoll, 17);
  EXPECT_EQ(p.port, 65535);
  EXPECT_EQ(p.max_sources, 16);
  EXPECT_EQ(p.origin, "taid.conf:2");
  EXPECT_EQ(c.bindcmdaddress, "/run/x/ctl.sock");
  EXPECT_EQ(c.driftfile, "/var/lib/taid/drift");
}

TEST(Config, BareLinesTakeTheDefaults) {
  const Config c = parse_config("server a\npool b\n", "t.conf");
  ASSERT_EQ(c.sources.size(), 2U);
  const SourceDirective defaults;
  for (const SourceDirective& s : c.sources) {
    EXPECT_FALSE(s.iburst);
    EXPECT_EQ(s.minpoll, defaults.minpoll);
    EXPECT_EQ(s.maxpoll, defaults.maxpoll);
    EXPECT_EQ(s.port, defaults.port);
    EXPECT_EQ(s.max_sources, defaults.max_sources);
  }
  EXPECT_EQ(c.sources[0].minpoll, 6);
  EXPECT_EQ(c.sources[0].maxpoll, 10);
  EXPECT_EQ(c.sources[0].port, 123);
  EXPECT_EQ(c.sources[1].max_sources, 4);
}

TEST(Config, EmptyConfigIsValid) {
  for (const char* text : {"", "\n\n", "# only a comment\n"}) {
    const Config c = parse_config(text, "t.conf");
    EXPECT_TRUE(c.sources.empty());
    EXPECT_EQ(c.bindcmdaddress, "/run/taid/taid.sock");
    EXPECT_EQ(c.driftfile, "");
    EXPECT_EQ(c.timestamping, TimestampingMode::auto_);
    EXPECT_TRUE(c.hwtimestamp_interfaces.empty());
  }
}

TEST(Config, TimestampingTakesEachModeCaseInsensitively) {
  const std::vector<std::pair<const char*, TimestampingMode>> cases{
      {"auto", TimestampingMode::auto_}, {"hardware", TimestampingMode::hardware},
      {"bpf", TimestampingMode::bpf},    {"kernel", TimestampingMode::kernel},
      {"user", TimestampingMode::user},  {"KERNEL", TimestampingMode::kernel},
      {"Bpf", TimestampingMode::bpf},
  };
  for (const auto& [word, mode] : cases) {
    // hardware needs an interface; the others do not mind one.
    const Config c =
        parse_config(std::string("TimeStamping ") + word + "\nhwtimestamp eth0\n", "t.conf");
    EXPECT_EQ(c.timestamping, mode) << word;
  }
  const Config c = parse_config("timestamping user\n", "t.conf");
  EXPECT_EQ(c.timestamping, TimestampingMode::user);
  EXPECT_TRUE(c.hwtimestamp_interfaces.empty());
}

TEST(Config, TimestampingModeNamesRoundTrip) {
  for (const auto mode :
       {TimestampingMode::auto_, TimestampingMode::hardware, TimestampingMode::bpf,
        TimestampingMode::kernel, TimestampingMode::user}) {
    const std::string text = strcat_line("timestamping", to_string(mode)) + "hwtimestamp *\n";
    EXPECT_EQ(parse_config(text, "t.conf").timestamping, mode) << text;
  }
  EXPECT_EQ(to_string(TimestampingMode::auto_), "auto");
  EXPECT_EQ(to_string(TimestampingMode::hardware), "hardware");
}

TEST(Config, HwtimestampRepeatsForSeveralInterfacesInFileOrder) {
  const Config c = parse_config(
      "hwtimestamp eth0\n"
      "HWTIMESTAMP enp3s0f1\n"  // the directive matches case-insensitively, the name is kept
      "hwtimestamp ETH0\n"      // Linux names are case-sensitive: another interface
      "hwtimestamp *\n"
      "hwtimestamp a.b-c_d@e\n"
      "hwtimestamp 0123456789abcde\n"  // 15 characters, the longest Linux allows
      "timestamping hardware\n",
      "t.conf");
  EXPECT_EQ(c.hwtimestamp_interfaces, (std::vector<std::string>{"eth0", "enp3s0f1", "ETH0", "*",
                                                                "a.b-c_d@e", "0123456789abcde"}));
  EXPECT_EQ(c.timestamping, TimestampingMode::hardware);
}

TEST(Config, HwtimestampStarAlone) {
  const Config c = parse_config("hwtimestamp *\n", "t.conf");
  EXPECT_EQ(c.hwtimestamp_interfaces, std::vector<std::string>{"*"});
  EXPECT_EQ(c.timestamping, TimestampingMode::auto_);
}

TEST(Config, CommentsBlankLinesAndLineNumbers) {
  const Config c = parse_config(
      "# chrony comment\n"         // 1
      "! bang\n"                   // 2
      "; semicolon\n"              // 3
      "% percent\n"                // 4
      "\n"                         // 5
      "   \t\n"                    // 6
      "  # indented comment\n"     // 7
      "\tserver  a \t iburst\r\n"  // 8: tabs, runs of blanks, CRLF
      "server b\n"                 // 9
      "\n"                         // 10
      "pool c",                    // 11: no final newline
      "t.conf");
  ASSERT_EQ(c.sources.size(), 3U);
  EXPECT_EQ(c.sources[0].name, "a");
  EXPECT_TRUE(c.sources[0].iburst);
  EXPECT_EQ(c.sources[0].origin, "t.conf:8");
  EXPECT_EQ(c.sources[1].origin, "t.conf:9");
  EXPECT_EQ(c.sources[2].origin, "t.conf:11");
}

TEST(Config, NamesMatchCaseInsensitivelyAsInChrony) {
  const Config c = parse_config("Server a IBURST MinPoll 5\nDRIFTFILE /d\n", "t.conf");
  ASSERT_EQ(c.sources.size(), 1U);
  EXPECT_EQ(c.sources[0].name, "a");
  EXPECT_TRUE(c.sources[0].iburst);
  EXPECT_EQ(c.sources[0].minpoll, 5);
  EXPECT_EQ(c.driftfile, "/d");
}

TEST(Config, OneWrittenPollBoundMovesTheOtherDefault) {
  const Config c = parse_config("server a minpoll 12\nserver b maxpoll 4\n", "t.conf");
  EXPECT_EQ(c.sources[0].minpoll, 12);
  EXPECT_EQ(c.sources[0].maxpoll, 12);
  EXPECT_EQ(c.sources[1].minpoll, 4);
  EXPECT_EQ(c.sources[1].maxpoll, 4);
}

struct ErrorCase {
  const char* text;
  const char* message;
};

TEST(Config, EachErrorNamesFileLineAndValue) {
  const std::vector<ErrorCase> cases{
      // Unknown directive.
      {"foo bar\n", "t.conf:1: unknown directive 'foo'"},
      {"\n\n  bogus\n", "t.conf:3: unknown directive 'bogus'"},
      // Missing arguments.
      {"server\n", "t.conf:1: server: missing host name"},
      {"pool\n", "t.conf:1: pool: missing host name"},
      {"server iburst\n", "t.conf:1: server: missing host name before option 'iburst'"},
      {"server a minpoll\n", "t.conf:1: minpoll: missing value"},
      {"pool a maxsources\n", "t.conf:1: maxsources: missing value"},
      {"bindcmdaddress\n", "t.conf:1: bindcmdaddress: missing path"},
      {"driftfile\n", "t.conf:1: driftfile: missing path"},
      {"driftfile /a /b\n", "t.conf:1: driftfile: unexpected argument '/b'"},
      // Unknown options, including chrony ones we do not implement.
      {"server a burst\n", "t.conf:1: server: unknown option 'burst'"},
      {"pool a nts\n", "t.conf:1: pool: unknown option 'nts'"},
      {"server a maxsources 2\n", "t.conf:1: server: unknown option 'maxsources' (pool only)"},
      {"server a # trailing\n", "t.conf:1: server: unknown option '#'"},  // as chrony
      // Not integers.
      {"server a minpoll x\n", "t.conf:1: minpoll 'x' is not an integer"},
      {"server a minpoll 6x\n", "t.conf:1: minpoll '6x' is not an integer"},
      {"server a port 0x7b\n", "t.conf:1: port '0x7b' is not an integer"},
      {"server a port +123\n", "t.conf:1: port '+123' is not an integer"},
      {"server a maxpoll 7.5\n", "t.conf:1: maxpoll '7.5' is not an integer"},
      // Out of range, at both ends and past int.
      {"server a minpoll -7\n", "t.conf:1: minpoll -7 is outside -6..17"},
      {"server a minpoll -100\n", "t.conf:1: minpoll -100 is outside -6..17"},
      {"server a maxpoll 18\n", "t.conf:1: maxpoll 18 is outside -6..17"},
      {"server a port 0\n", "t.conf:1: port 0 is outside 1..65535"},
      {"server a port 65536\n", "t.conf:1: port 65536 is outside 1..65535"},
      {"server a port 99999999999999999999\n",
       "t.conf:1: port 99999999999999999999 is outside 1..65535"},
      {"pool a maxsources 0\n", "t.conf:1: maxsources 0 is outside 1..16"},
      {"pool a maxsources 17\n", "t.conf:1: maxsources 17 is outside 1..16"},
      // minpoll > maxpoll when both are written.
      {"server a minpoll 10 maxpoll 8\n", "t.conf:1: minpoll 10 is greater than maxpoll 8"},
      {"pool a maxpoll 5 minpoll 6\n", "t.conf:1: minpoll 6 is greater than maxpoll 5"},
      // Duplicates.
      {"server a iburst iburst\n", "t.conf:1: server: duplicate option 'iburst'"},
      {"server a minpoll 6 MINPOLL 7\n", "t.conf:1: server: duplicate option 'minpoll'"},
      {"pool a maxsources 2 maxsources 3\n", "t.conf:1: pool: duplicate option 'maxsources'"},
      {"driftfile /a\n\ndriftfile /b\n",
       "t.conf:3: duplicate directive 'driftfile' (first at t.conf:1)"},
      {"bindcmdaddress /a\nbindcmdaddress /b\n",
       "t.conf:2: duplicate directive 'bindcmdaddress' (first at t.conf:1)"},
      // Relative paths.
      {"bindcmdaddress taid.sock\n",
       "t.conf:1: bindcmdaddress 'taid.sock' is not an absolute path"},
      {"driftfile ./drift\n", "t.conf:1: driftfile './drift' is not an absolute path"},
      // chrony's bindcmdaddress also takes an IP address; ours is the unix socket only.
      {"bindcmdaddress 127.0.0.1\n",
       "t.conf:1: bindcmdaddress '127.0.0.1' is not an absolute path"},
      // timestamping: one value out of the table, once.
      {"timestamping\n",
       "t.conf:1: timestamping: missing value (one of auto, hardware, bpf, kernel, user)"},
      {"timestamping fast\n",
       "t.conf:1: timestamping: unknown value 'fast' (one of auto, hardware, bpf, kernel, user)"},
      {"\ntimestamping auto_\n",
       "t.conf:2: timestamping: unknown value 'auto_' (one of auto, hardware, bpf, kernel, user)"},
      {"timestamping software\n",
       "t.conf:1: timestamping: unknown value 'software' (one of auto, hardware, bpf, kernel, "
       "user)"},
      {"timestamping kernel user\n", "t.conf:1: timestamping: unexpected argument 'user'"},
      {"timestamping kernel\n\nTIMESTAMPING user\n",
       "t.conf:3: duplicate directive 'timestamping' (first at t.conf:1)"},
      {"timestamping auto\ntimestamping auto\n",
       "t.conf:2: duplicate directive 'timestamping' (first at t.conf:1)"},
      {"server a\ntimestamping hardware\nserver b\n",
       "t.conf:2: timestamping hardware needs an hwtimestamp line naming the interface (or '*')"},
      // A line error comes before the whole-file check.
      {"timestamping hardware\nbogus\n", "t.conf:2: unknown directive 'bogus'"},
      // hwtimestamp: one valid interface name per line, each once.
      {"hwtimestamp\n", "t.conf:1: hwtimestamp: missing interface name"},
      {"hwtimestamp eth0 rxfilter all\n", "t.conf:1: hwtimestamp: unknown option 'rxfilter'"},
      {"hwtimestamp * minpoll 0\n", "t.conf:1: hwtimestamp: unknown option 'minpoll'"},
      {"hwtimestamp eth0\nhwtimestamp eth1\nhwtimestamp eth0\n",
       "t.conf:3: hwtimestamp: duplicate interface 'eth0' (first at t.conf:1)"},
      {"hwtimestamp *\n# c\nhwtimestamp *\n",
       "t.conf:3: hwtimestamp: duplicate interface '*' (first at t.conf:1)"},
      {"hwtimestamp 0123456789abcdef\n",
       "t.conf:1: hwtimestamp: '0123456789abcdef' is not an interface name (1 to 15 characters, "
       "no '/', ':' or '*')"},
      {"hwtimestamp a/b\n",
       "t.conf:1: hwtimestamp: 'a/b' is not an interface name (1 to 15 characters, no '/', ':' "
       "or '*')"},
      {"hwtimestamp eth0:1\n",
       "t.conf:1: hwtimestamp: 'eth0:1' is not an interface name (1 to 15 characters, no '/', "
       "':' or '*')"},
      {"hwtimestamp ..\n",
       "t.conf:1: hwtimestamp: '..' is not an interface name (1 to 15 characters, no '/', ':' "
       "or '*')"},
      {"hwtimestamp eth*\n",
       "t.conf:1: hwtimestamp: 'eth*' is not an interface name (1 to 15 characters, no '/', "
       "':' or '*')"},
  };
  for (const ErrorCase& c : cases) EXPECT_EQ(error_of(c.text), c.message) << c.text;
}

TEST(Config, ErrorLineCountsCommentsAndBlankLines) {
  EXPECT_EQ(error_of("# c\n\nserver a\n; x\r\n\tserver b minpoll -9\nserver c\n"),
            "t.conf:5: minpoll -9 is outside -6..17");
}

TEST(Config, XleaveBpfattachAndMeasurementsLog) {
  const Config c = parse_config(
      "server a xleave minpoll -2 maxpoll -2\nbpfattach xdp-native\nlogdir /tmp/x\n"
      "log measurements\n",
      "t.conf");
  ASSERT_EQ(c.sources.size(), 1U);
  EXPECT_TRUE(c.sources[0].xleave);
  EXPECT_EQ(c.sources[0].minpoll, -2);
  EXPECT_EQ(c.bpf_attach, BpfAttach::xdp_native);
  EXPECT_EQ(c.logdir, "/tmp/x");
  EXPECT_TRUE(c.log_measurements);
  EXPECT_EQ(parse_config("", "t.conf").bpf_attach, BpfAttach::auto_);
}

TEST(Config, BpfattachAndLogErrorsNameTheLine) {
  EXPECT_EQ(error_of("bpfattach xdp\n"),
            "t.conf:1: bpfattach: unknown value 'xdp' (one of auto, tc, tcx, xdp-generic, "
            "xdp-native)");
  EXPECT_EQ(error_of("bpfattach tc\nbpfattach tcx\n"),
            "t.conf:2: duplicate directive 'bpfattach' (first at t.conf:1)");
  EXPECT_EQ(error_of("logdir /tmp\nlog statistics\n"),
            "t.conf:2: log: unknown value 'statistics' (one of measurements)");
  EXPECT_EQ(error_of("server a\nlog measurements\n"),
            "t.conf:2: log: needs a logdir line naming the directory");
  EXPECT_EQ(error_of("logdir tmp\n"), "t.conf:1: logdir 'tmp' is not an absolute path");
}

TEST(Config, SocketPathMustFitSockaddrUn) {
  const std::string path = "/" + std::string(107, 'a');
  EXPECT_EQ(error_of("bindcmdaddress " + path + "\n"),
            "t.conf:1: bindcmdaddress: path is 108 bytes, a Unix socket path holds at most 107");
  EXPECT_NO_THROW(parse_config("bindcmdaddress /" + std::string(106, 'a') + "\n", "t.conf"));
}

TEST(Config, ConfigErrorIsARuntimeError) {
  EXPECT_THROW(parse_config("nope\n", "t.conf"), std::runtime_error);
}

// ---- Selection, servo and clock directives (chrony's), and `servo` (ours) ----

TEST(TimekeepingConfig, EveryDirectiveWithExactValues) {
  const Config c = parse_config(
      "server a\nserver b\npool p maxsources 2\n"
      "minsources 3\n"
      "maxdistance 1.5\n"
      "maxjitter 0.000250\n"
      "combinelimit 2.5\n"
      "makestep 0.1 -1\n"
      "maxslewrate 500\n"
      "maxchange 1000 1 2\n"
      "maxdrift 250.5\n"
      "corrtimeratio 10\n"
      "maxclockerror 0.1\n"
      "servo pi\n",
      "t.conf");
  const timekeeping::Settings& t = c.timekeeping;
  EXPECT_EQ(t.selection.min_sources, 3);
  EXPECT_EQ(t.selection.max_distance, Duration::from_ms(1500));
  EXPECT_EQ(t.selection.max_jitter, Duration::from_us(250));
  EXPECT_EQ(t.selection.combine_limit, 2.5);
  EXPECT_EQ(t.servo.makestep_threshold, Duration::from_ms(100));
  EXPECT_EQ(t.servo.makestep_limit, -1);
  EXPECT_EQ(t.servo.max_slew_rate_ppm, 500);
  ASSERT_TRUE(t.servo.maxchange_offset.has_value());
  EXPECT_EQ(*t.servo.maxchange_offset, Duration::from_s(1000));
  EXPECT_EQ(t.servo.maxchange_start, 1);
  EXPECT_EQ(t.servo.maxchange_ignore, 2);
  EXPECT_EQ(t.servo.max_drift_ppm, 250.5);
  EXPECT_EQ(t.servo.corr_time_ratio, 10);
  EXPECT_EQ(t.max_clock_error_ppm, 0.1);
  EXPECT_EQ(t.servo_kind, servo::Kind::pi);
  // The drift file's frequency is the daemon's to read at start, never the parser's.
  EXPECT_FALSE(t.initial_frequency_ppb.has_value());
}

TEST(TimekeepingConfig, AbsentDirectivesLeaveTheStructsDefaults) {
  const timekeeping::Settings d;
  for (const char* text : {"", "server a\npool b\ndriftfile /var/lib/taid/drift\n"}) {
    const timekeeping::Settings& t = parse_config(text, "t.conf").timekeeping;
    EXPECT_EQ(t.selection.min_sources, d.selection.min_sources) << text;
    EXPECT_EQ(t.selection.max_distance, d.selection.max_distance);
    EXPECT_EQ(t.selection.max_jitter, d.selection.max_jitter);
    EXPECT_EQ(t.selection.combine_limit, d.selection.combine_limit);
    EXPECT_EQ(t.servo.makestep_threshold, d.servo.makestep_threshold);
    EXPECT_EQ(t.servo.makestep_limit, d.servo.makestep_limit);
    EXPECT_EQ(t.servo.max_slew_rate_ppm, d.servo.max_slew_rate_ppm);
    EXPECT_EQ(t.servo.maxchange_offset, d.servo.maxchange_offset);
    EXPECT_EQ(t.servo.maxchange_start, d.servo.maxchange_start);
    EXPECT_EQ(t.servo.maxchange_ignore, d.servo.maxchange_ignore);
    EXPECT_EQ(t.servo.max_drift_ppm, d.servo.max_drift_ppm);
    EXPECT_EQ(t.servo.corr_time_ratio, d.servo.corr_time_ratio);
    EXPECT_EQ(t.servo_kind, d.servo_kind);
    EXPECT_EQ(t.max_clock_error_ppm, d.max_clock_error_ppm);
    EXPECT_EQ(t.initial_frequency_ppb, d.initial_frequency_ppb);
  }
  // maxchange is off unless written (chrony).
  EXPECT_FALSE(d.servo.maxchange_offset.has_value());
}

TEST(TimekeepingConfig, EdgesOfEachRangeAreAccepted) {
  const Config c = parse_config(
      "MINSOURCES 1\nmaxdistance 1e-9\nmaxjitter 1000000000\ncombinelimit 0\nmakestep 0 0\n"
      "maxslewrate 100000\nmaxchange 0.000000001 0 -1\nmaxdrift 500000\ncorrtimeratio 0.5\n"
      "maxclockerror 1e-3\nServo Estimate\n",
      "t.conf");
  const timekeeping::Settings& t = c.timekeeping;
  EXPECT_EQ(t.selection.min_sources, 1);
  EXPECT_EQ(t.selection.max_distance, Duration::from_ns(1));
  EXPECT_EQ(t.selection.max_jitter, Duration::from_s(1000000000));
  EXPECT_EQ(t.selection.combine_limit, 0);
  EXPECT_EQ(t.servo.makestep_threshold, Duration());
  EXPECT_EQ(t.servo.makestep_limit, 0);
  EXPECT_EQ(t.servo.max_slew_rate_ppm, 100000);
  EXPECT_EQ(t.servo.maxchange_offset, Duration::from_ns(1));
  EXPECT_EQ(t.servo.maxchange_start, 0);
  EXPECT_EQ(t.servo.maxchange_ignore, -1);  // ignore every large offset, never stop
  EXPECT_EQ(t.servo.max_drift_ppm, 500000);
  EXPECT_EQ(t.servo.corr_time_ratio, 0.5);
  EXPECT_EQ(t.max_clock_error_ppm, 1e-3);
  EXPECT_EQ(t.servo_kind, servo::Kind::estimate);
}

TEST(TimekeepingConfig, SecondsRoundToTheNearestNanosecond) {
  EXPECT_EQ(parse_config("maxdistance 0.0000000014\n", "t.conf").timekeeping.selection.max_distance,
            Duration::from_ns(1));
  EXPECT_EQ(parse_config("makestep 2.5e-7 3\n", "t.conf").timekeeping.servo.makestep_threshold,
            Duration::from_ns(250));
  // 0.4 ns is 0 ns, which maxdistance does not allow; makestep 0 does.
  EXPECT_EQ(error_of("maxdistance 4e-10\n"), "t.conf:1: maxdistance 4e-10 must be greater than 0");
  EXPECT_EQ(parse_config("makestep 4e-10 1\n", "t.conf").timekeeping.servo.makestep_threshold,
            Duration());
}

TEST(TimekeepingConfig, EachBadValueNamesTheDirectiveFieldAndValue) {
  const std::vector<ErrorCase> cases{
      // Missing and extra arguments.
      {"minsources\n", "t.conf:1: minsources: missing value"},
      {"maxdistance 1 2\n", "t.conf:1: maxdistance: unexpected argument '2'"},
      {"makestep 1\n", "t.conf:1: makestep: missing limit"},
      {"makestep\n", "t.conf:1: makestep: missing threshold"},
      {"makestep 1 3 x\n", "t.conf:1: makestep: unexpected argument 'x'"},
      {"maxchange 1000\n", "t.conf:1: maxchange: missing start"},
      {"maxchange 1000 1\n", "t.conf:1: maxchange: missing ignore"},
      {"maxchange 1000 1 2 3\n", "t.conf:1: maxchange: unexpected argument '3'"},
      {"servo\n", "t.conf:1: servo: missing value (one of estimate, pi)"},
      {"servo pi estimate\n", "t.conf:1: servo: unexpected argument 'estimate'"},
      {"servo pll\n", "t.conf:1: servo: unknown value 'pll' (one of estimate, pi)"},
      // Not numbers, or not integers where an integer is due.
      {"minsources 1.5\n", "t.conf:1: minsources '1.5' is not an integer"},
      {"minsources +2\n", "t.conf:1: minsources '+2' is not an integer"},
      {"minsources 99999999999\n", "t.conf:1: minsources 99999999999 is outside the int range"},
      {"maxdistance 3s\n", "t.conf:1: maxdistance '3s' is not a number"},
      {"maxjitter +1\n", "t.conf:1: maxjitter '+1' is not a number"},
      {"combinelimit 0x10\n", "t.conf:1: combinelimit '0x10' is not a number"},
      {"maxslewrate inf\n", "t.conf:1: maxslewrate 'inf' is not a finite number"},
      {"maxdrift nan\n", "t.conf:1: maxdrift 'nan' is not a finite number"},
      {"corrtimeratio 1e999\n", "t.conf:1: corrtimeratio '1e999' is not a finite number"},
      {"makestep one 3\n", "t.conf:1: makestep threshold 'one' is not a number"},
      {"makestep 1 3.5\n", "t.conf:1: makestep limit '3.5' is not an integer"},
      {"maxchange 1000 x 2\n", "t.conf:1: maxchange start 'x' is not an integer"},
      {"maxchange 1000 1 -\n", "t.conf:1: maxchange ignore '-' is not an integer"},
      // Out of range, named by field.
      {"minsources 0\n", "t.conf:1: minsources 0 must be at least 1"},
      {"minsources -3\n", "t.conf:1: minsources -3 must be at least 1"},
      {"maxdistance 0\n", "t.conf:1: maxdistance 0 must be greater than 0"},
      {"maxdistance -1\n", "t.conf:1: maxdistance -1 must be greater than 0"},
      {"maxdistance 1000000001\n", "t.conf:1: maxdistance 1000000001 must be at most 1000000000"},
      {"maxjitter 0\n", "t.conf:1: maxjitter 0 must be greater than 0"},
      {"combinelimit -0.5\n", "t.conf:1: combinelimit -0.5 must be at least 0"},
      {"makestep -1 3\n", "t.conf:1: makestep threshold -1 must be at least 0"},
      {"makestep 1e10 3\n", "t.conf:1: makestep threshold 1e10 must be at most 1000000000"},
      {"makestep 1 99999999999\n", "t.conf:1: makestep limit 99999999999 is outside the int range"},
      {"maxslewrate 0\n", "t.conf:1: maxslewrate 0 must be greater than 0"},
      {"maxslewrate 100000.001\n", "t.conf:1: maxslewrate 100000.001 must be at most 100000"},
      {"maxchange 0 1 2\n", "t.conf:1: maxchange offset 0 must be greater than 0"},
      {"maxchange 1000 -1 2\n", "t.conf:1: maxchange start -1 must be at least 0"},
      {"maxdrift 0\n", "t.conf:1: maxdrift 0 must be greater than 0"},
      {"maxdrift 500001\n", "t.conf:1: maxdrift 500001 must be at most 500000"},
      {"corrtimeratio 0\n", "t.conf:1: corrtimeratio 0 must be greater than 0"},
      {"maxclockerror 0\n", "t.conf:1: maxclockerror 0 must be greater than 0"},
      {"maxclockerror -1\n", "t.conf:1: maxclockerror -1 must be greater than 0"},
      // Each once, like every single-valued directive; names match case-insensitively.
      {"minsources 1\nminsources 2\n",
       "t.conf:2: duplicate directive 'minsources' (first at t.conf:1)"},
      {"maxdistance 1\n# c\nMAXDISTANCE 1\n",
       "t.conf:3: duplicate directive 'maxdistance' (first at t.conf:1)"},
      {"maxjitter 1\nmaxjitter 1\n",
       "t.conf:2: duplicate directive 'maxjitter' (first at t.conf:1)"},
      {"combinelimit 1\ncombinelimit 1\n",
       "t.conf:2: duplicate directive 'combinelimit' (first at t.conf:1)"},
      {"makestep 1 3\nmakestep 1 -1\n",
       "t.conf:2: duplicate directive 'makestep' (first at t.conf:1)"},
      {"maxslewrate 1\nmaxslewrate 1\n",
       "t.conf:2: duplicate directive 'maxslewrate' (first at t.conf:1)"},
      {"maxchange 1 1 1\nmaxchange 1 1 1\n",
       "t.conf:2: duplicate directive 'maxchange' (first at t.conf:1)"},
      {"maxdrift 1\nmaxdrift 1\n", "t.conf:2: duplicate directive 'maxdrift' (first at t.conf:1)"},
      {"corrtimeratio 1\ncorrtimeratio 1\n",
       "t.conf:2: duplicate directive 'corrtimeratio' (first at t.conf:1)"},
      {"maxclockerror 1\nmaxclockerror 1\n",
       "t.conf:2: duplicate directive 'maxclockerror' (first at t.conf:1)"},
      {"servo pi\nservo PI\n", "t.conf:2: duplicate directive 'servo' (first at t.conf:1)"},
      // A bad value on a later line is reported there, after the good lines before it.
      {"server a\nmaxdistance 2\n\nmaxjitter -0.1\n",
       "t.conf:4: maxjitter -0.1 must be greater than 0"},
  };
  for (const ErrorCase& c : cases) EXPECT_EQ(error_of(c.text), c.message) << c.text;
}

TEST(TimekeepingConfig, MinsourcesMustBeReachableByTheFilesSources) {
  // Two servers and a pool of up to 3: at most 5 selectable sources.
  EXPECT_EQ(parse_config("server a\nserver b\npool p maxsources 3\nminsources 5\n", "t.conf")
                .timekeeping.selection.min_sources,
            5);
  EXPECT_EQ(error_of("server a\nserver b\npool p maxsources 3\nminsources 6\n"),
            "t.conf:4: minsources 6 is more than the 5 selectable sources the file can give (a "
            "server each, maxsources per pool, noselect ones not counted)");
  // noselect sources are never selectable, so they do not count.
  EXPECT_EQ(error_of("minsources 2\nserver a\nserver b noselect\n"),
            "t.conf:1: minsources 2 is more than the 1 selectable sources the file can give (a "
            "server each, maxsources per pool, noselect ones not counted)");
  // A pool counts its default maxsources (4).
  EXPECT_NO_THROW(parse_config("pool p\nminsources 4\n", "t.conf"));
  EXPECT_NE(error_of("pool p\nminsources 5\n"), "");
  // With no source at all the daemon only serves its control socket: nothing to count.
  EXPECT_EQ(parse_config("minsources 3\n", "t.conf").timekeeping.selection.min_sources, 3);
}

TEST(LeapConfig, DefaultsAndEachDirective) {
  const Config defaults = parse_config("", "t.conf");
  EXPECT_EQ(defaults.leapseclist, "/usr/share/zoneinfo/leap-seconds.list");
  EXPECT_EQ(defaults.leapsectz, "");
  EXPECT_EQ(defaults.timekeeping.leap_mode, timekeeping::LeapMode::system);

  const Config list = parse_config("leapseclist /etc/leap.list\nleapsecmode slew\n", "t.conf");
  EXPECT_EQ(list.leapseclist, "/etc/leap.list");
  EXPECT_EQ(list.timekeeping.leap_mode, timekeeping::LeapMode::slew);
  const Config tz = parse_config("leapsectz right/UTC\nleapsecmode STEP\n", "t.conf");
  EXPECT_EQ(tz.leapsectz, "right/UTC");
  EXPECT_EQ(tz.timekeeping.leap_mode, timekeeping::LeapMode::step);
  EXPECT_EQ(parse_config("leapsecmode ignore\n", "t.conf").timekeeping.leap_mode,
            timekeeping::LeapMode::ignore);
}

TEST(LeapConfig, BadLinesNameTheLine) {
  const std::vector<ErrorCase> cases{
      {"leapseclist leap.list\n", "t.conf:1: leapseclist 'leap.list' is not an absolute path"},
      {"leapseclist\n", "t.conf:1: leapseclist: missing path"},
      {"leapsectz right/UTC\nleapseclist /a\n",
       "t.conf:2: leapseclist: leapsectz is already set (one only)"},
      {"leapseclist /a\nleapsectz right/UTC\n",
       "t.conf:2: leapsectz: leapseclist is already set (one only)"},
      {"leapsectz ../../etc/passwd\n",
       "t.conf:1: leapsectz: '../../etc/passwd' is not a zone name (e.g. right/UTC)"},
      {"leapsectz\n", "t.conf:1: leapsectz: expected one zone name (e.g. right/UTC)"},
      {"leapsecmode smear\n",
       "t.conf:1: leapsecmode: unknown value 'smear' (one of system, step, slew, ignore)"},
      {"leapsecmode\n", "t.conf:1: leapsecmode: missing value (one of system, step, slew, ignore)"},
      {"leapsecmode step\nleapsecmode slew\n",
       "t.conf:2: duplicate directive 'leapsecmode' (first at t.conf:1)"},
  };
  for (const ErrorCase& c : cases) EXPECT_EQ(error_of(c.text), c.message) << c.text;
}

TEST(SignConfig, DefaultsAndEachDirective) {
  const Config defaults = parse_config("", "t.conf");
  EXPECT_EQ(defaults.signsocket, "");
  EXPECT_EQ(defaults.signkey, "/var/lib/taid/sign.key");
  EXPECT_EQ(defaults.signserials, "/var/lib/taid/sign.serial");
  EXPECT_EQ(defaults.max_sign_bound, Duration::from_ms(100));
  EXPECT_TRUE(defaults.sign_allowed_uids.empty());
  EXPECT_EQ(defaults.clockrecord, "");

  const Config c = parse_config(
      "signsocket /run/taid/sign.sock\nsignkey /k\nsignserials /s\nmaxsignbound 0.005\n"
      "signallow 0 1000\nsignallow root\nclockrecord /dev/shm/taid-clock\n",
      "t.conf");
  EXPECT_EQ(c.signsocket, "/run/taid/sign.sock");
  EXPECT_EQ(c.signkey, "/k");
  EXPECT_EQ(c.signserials, "/s");
  EXPECT_EQ(c.max_sign_bound, Duration::from_ms(5));
  EXPECT_EQ(c.sign_allowed_uids, (std::vector<uint32_t>{0, 1000, 0}));
  EXPECT_EQ(c.clockrecord, "/dev/shm/taid-clock");

  EXPECT_EQ(defaults.tsaport, 0);
  EXPECT_EQ(defaults.tsabind, "127.0.0.1");
  const Config tsa = parse_config(
      "tsaport 3161\ntsabind ::\ntsakey /k\ntsacert /c\ntsaserials /s\ntsapolicy 1.2.3.4\n",
      "t.conf");
  EXPECT_EQ(tsa.tsaport, 3161);
  EXPECT_EQ(tsa.tsabind, "::");
  EXPECT_EQ(tsa.tsakey, "/k");
  EXPECT_EQ(tsa.tsacert, "/c");
  EXPECT_EQ(tsa.tsaserials, "/s");
  EXPECT_EQ(tsa.tsapolicy, "1.2.3.4");
}

TEST(SignConfig, BadLinesNameTheLine) {
  const std::vector<ErrorCase> cases{
      {"signsocket sign.sock\n", "t.conf:1: signsocket 'sign.sock' is not an absolute path"},
      {"maxsignbound 0\n", "t.conf:1: maxsignbound 0 must be greater than 0"},
      {"maxsignbound\n", "t.conf:1: maxsignbound: missing value"},
      {"maxsignbound x\n", "t.conf:1: maxsignbound 'x' is not a number"},
      {"signallow\n", "t.conf:1: signallow: missing uid or user name"},
      {"signallow no-such-user-here\n", "t.conf:1: signallow: no user 'no-such-user-here'"},
      {"clockrecord shm\n", "t.conf:1: clockrecord 'shm' is not an absolute path"},
      {"signkey /a\nsignkey /b\n", "t.conf:2: duplicate directive 'signkey' (first at t.conf:1)"},
      {"tsaport 0\n", "t.conf:1: tsaport 0 must be at least 1"},
      {"tsaport 70000\n", "t.conf:1: tsaport 70000 must be at most 65535"},
      {"tsabind example.net\n", "t.conf:1: tsabind: 'example.net' is not an IPv4 or IPv6 address"},
      {"tsapolicy 1..2\n", "t.conf:1: tsapolicy: '1..2' is not a dotted OID (e.g. 1.2.3.4)"},
  };
  for (const ErrorCase& c : cases) EXPECT_EQ(error_of(c.text), c.message) << c.text;
}

TEST(ServerConfig, DefaultsAndEachDirective) {
  const Config defaults = parse_config("", "t.conf");
  EXPECT_FALSE(defaults.server.enabled());
  EXPECT_EQ(defaults.server.port, 123);
  EXPECT_TRUE(defaults.server.bind_addresses.empty());
  EXPECT_FALSE(defaults.server.local_stratum.has_value());
  EXPECT_FALSE(defaults.server.rate_limit.has_value());
  EXPECT_EQ(defaults.server.workers, 0);
  EXPECT_EQ(defaults.server.client_log_bytes, 524288U);

  const Config c = parse_config(
      "allow 10.0.0.0/8\ndeny 10.1.0.0/16\nallow 2001:db8::/32\nport 1123\n"
      "bindaddress 10.0.0.1\nbindaddress ::1\nlocal stratum 8 distance 0.5\n"
      "ratelimit interval 1 burst 16 leak 3 kod 2\nclientloglimit 1048576\nserverworkers 3\n"
      "xdpserver veth0 generic\nxdpserver eth1\nxdpserver eth2 native\n",
      "t.conf");
  EXPECT_TRUE(c.server.enabled());
  EXPECT_EQ(c.server.port, 1123);
  EXPECT_EQ(c.server.bind_addresses, (std::vector<std::string>{"10.0.0.1", "::1"}));
  EXPECT_EQ(c.server.local_stratum, std::optional<uint8_t>(8));
  EXPECT_EQ(c.server.local_distance, Duration::from_ms(500));
  ASSERT_TRUE(c.server.rate_limit.has_value());
  EXPECT_EQ(*c.server.rate_limit, (server::RateLimitSettings{1, 16, 3, 2}));
  EXPECT_EQ(c.server.client_log_bytes, 1048576U);
  EXPECT_EQ(c.server.workers, 3);
  using XdpMode = XdpServerDirective::Mode;
  EXPECT_EQ(c.server.xdp_interfaces,
            (std::vector<XdpServerDirective>{{"veth0", XdpMode::generic},
                                             {"eth1", XdpMode::native_first},
                                             {"eth2", XdpMode::native}}));
  // The access list as chrony reads it: the most specific subnet wins.
  EXPECT_TRUE(c.server.access.allows(*server::parse_address16("10.2.3.4")));
  EXPECT_FALSE(c.server.access.allows(*server::parse_address16("10.1.3.4")));
  EXPECT_FALSE(c.server.access.allows(*server::parse_address16("192.168.1.1")));
  EXPECT_TRUE(c.server.access.allows(*server::parse_address16("2001:db8::1")));

  // `local` alone is stratum 10 (chrony's default); `port 0` turns the server off.
  EXPECT_EQ(parse_config("local\n", "t.conf").server.local_stratum, std::optional<uint8_t>(10));
  EXPECT_FALSE(parse_config("allow\nport 0\n", "t.conf").server.enabled());
  EXPECT_TRUE(parse_config("allow\n", "t.conf").server.access.allows(
      *server::parse_address16("203.0.113.9")));
  // A deny alone does not start a server.
  EXPECT_FALSE(parse_config("deny 10.0.0.0/8\n", "t.conf").server.enabled());
}

TEST(ServerConfig, BadLinesNameTheLine) {
  const std::vector<ErrorCase> cases{
      {"allow 10.0.0.300/8\n", "t.conf:1: allow: '10.0.0.300/8' is not an address"},
      {"port 70000\n", "t.conf:1: port 70000 must be at most 65535"},
      {"port 1\nport 2\n", "t.conf:2: duplicate directive 'port' (first at t.conf:1)"},
      {"bindaddress ntp.example\n",
       "t.conf:1: bindaddress: 'ntp.example' is not an IPv4 or IPv6 address"},
      {"bindaddress 10.0.0.1\nbindaddress 10.0.0.2\n",
       "t.conf:2: bindaddress: one IPv4 address only ('10.0.0.1' is already set)"},
      {"local stratum 16\n", "t.conf:1: local stratum 16 must be at most 15"},
      {"local orphan\n", "t.conf:1: local: orphan is not supported"},
      {"local stratum\n", "t.conf:1: local: stratum needs a value"},
      {"local fast\n", "t.conf:1: local: unknown option 'fast' (stratum N, distance SECONDS)"},
      {"ratelimit burst 300\n", "t.conf:1: ratelimit: burst 300 is not 1..255"},
      {"serverworkers 0\n", "t.conf:1: serverworkers 0 must be at least 1"},
      {"allow\nxdpserver a/b\n",
       "t.conf:2: xdpserver: 'a/b' is not an interface name (1 to 15 characters, no '/', ':' or "
       "'*')"},
      {"allow\nxdpserver v0\nxdpserver v0\n", "t.conf:3: xdpserver: duplicate interface 'v0'"},
      {"allow\nxdpserver v0 fast\n", "t.conf:2: xdpserver: unknown mode 'fast' (native or generic)"},
      {"# comment\nxdpserver v0\n",
       "t.conf:2: xdpserver: the NTP server is off (it needs an allow line and a port other than "
       "0)"},
  };
  for (const ErrorCase& c : cases) EXPECT_EQ(error_of(c.text), c.message) << c.text;
}

TEST(SourceOptions, SelectionOptionsOnServerAndPool) {
  const Config c = parse_config(
      "server a prefer\nserver b TRUST Require iburst\npool p noselect maxsources 2\nserver d\n"
      "server e prefer trust require\n",
      "t.conf");
  ASSERT_EQ(c.sources.size(), 5U);
  const auto flags = [](const SourceDirective& s) {
    return std::vector<bool>{s.options.prefer, s.options.noselect, s.options.trust,
                             s.options.require};
  };
  EXPECT_EQ(flags(c.sources[0]), (std::vector<bool>{true, false, false, false}));
  EXPECT_EQ(flags(c.sources[1]), (std::vector<bool>{false, false, true, true}));
  EXPECT_TRUE(c.sources[1].iburst);
  EXPECT_EQ(flags(c.sources[2]), (std::vector<bool>{false, true, false, false}));
  EXPECT_TRUE(c.sources[2].pool);
  EXPECT_EQ(c.sources[2].max_sources, 2);
  EXPECT_EQ(flags(c.sources[3]), (std::vector<bool>{false, false, false, false}));
  EXPECT_EQ(flags(c.sources[4]), (std::vector<bool>{true, false, true, true}));
}

TEST(SourceOptions, BadSelectionOptionsNameTheLine) {
  const std::vector<ErrorCase> cases{
      {"server prefer\n", "t.conf:1: server: missing host name before option 'prefer'"},
      {"pool noselect\n", "t.conf:1: pool: missing host name before option 'noselect'"},
      {"server a prefer PREFER\n", "t.conf:1: server: duplicate option 'prefer'"},
      {"server a trust iburst trust\n", "t.conf:1: server: duplicate option 'trust'"},
      {"server a require 1\n", "t.conf:1: server: unknown option '1'"},
      {"server a noselect prefer\n",
       "t.conf:1: server: 'prefer' contradicts 'noselect' (a noselect source is never selected)"},
      {"\npool p trust noselect\n",
       "t.conf:2: pool: 'trust' contradicts 'noselect' (a noselect source is never selected)"},
      {"server a require noselect\n",
       "t.conf:1: server: 'require' contradicts 'noselect' (a noselect source is never selected)"},
      {"server a noselect noselect\n", "t.conf:1: server: duplicate option 'noselect'"},
  };
  for (const ErrorCase& c : cases) EXPECT_EQ(error_of(c.text), c.message) << c.text;
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl = ::testing::TempDir() + "taid_config_XXXXXX";
    path_ = ::mkdtemp(tmpl.data()) != nullptr ? tmpl : "";
  }
  ~TempDir() {
    if (!path_.empty()) std::remove(path_.c_str());
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(LoadConfig, ReadsTheFileAndNamesItInOrigins) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  const std::string file = dir.path() + "/taid.conf";
  std::ofstream(file) << "# test\nserver a iburst\n";
  const Config c = load_config(file);
  ::unlink(file.c_str());
  ASSERT_EQ(c.sources.size(), 1U);
  EXPECT_EQ(c.sources[0].origin, file + ":2");
}

TEST(LoadConfig, ParseErrorsNameThePath) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  const std::string file = dir.path() + "/bad.conf";
  std::ofstream(file) << "server a\nserver b port 0\n";
  try {
    load_config(file);
    ADD_FAILURE() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), file + ":2: port 0 is outside 1..65535");
  }
  ::unlink(file.c_str());
}

TEST(LoadConfig, UnreadableFileSaysWhy) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  const std::string missing = dir.path() + "/missing.conf";
  try {
    load_config(missing);
    ADD_FAILURE() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), missing + ": cannot read: No such file or directory");
  }
  try {
    load_config(dir.path());  // a directory opens but cannot be read
    ADD_FAILURE() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), dir.path() + ": cannot read: Is a directory");
  }
}

}  // namespace
}  // namespace taid::daemon
