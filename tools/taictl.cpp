// taictl: asks a running taid over its control socket and prints the answer as a table or JSON.
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/fd.hpp"
#include "core/result.hpp"
#include "core/time.hpp"

namespace {

using nlohmann::json;
using taid::Duration;

constexpr const char* kUsage =
    "usage: taictl [-s SOCKET] [--json] COMMAND\n"
    "commands:\n"
    "  sources        the sources: selection mark (* selected, + combined, - not combined,\n"
    "                 x falseticker, ~ too variable, ? unusable), state, stratum, poll, reach,\n"
    "                 last offset ± error, stamp kind\n"
    "  sourcestats    each source's estimator: samples, span, residual frequency, offset\n"
    "  tracking       the reference in use, the clock's offset, frequency and error bound\n"
    "  filter NAME    the eight clock-filter stages of one source\n"
    "  kernel         the kernel's NTP state (adjtimex read-out)\n"
    "  serverstats    the NTP server's counters: requests received, replies (interleaved, KoD),\n"
    "                 drops by reason, the XDP fast path's answers and what it passed up\n"
    "  tai UTC        the TAI instant of a UTC time, 23:59:60 included, with the daemon's leap\n"
    "                 table (e.g. taictl tai 2016-12-31T23:59:60Z)\n"
    "  utc TAI        the UTC time of a TAI instant written as a date (e.g. 2017-01-01T00:00:36Z)\n"
    "  -s SOCKET      control socket (default /run/taid/taid.sock)\n"
    "  --json         print the daemon's JSON answer\n";

taid::Result<std::string> ask(const std::string& path, const std::string& request) {
  taid::Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return taid::Error::from_errno("socket");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) return taid::Error::plain(path + ": path too long");
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    return taid::Error::from_errno("cannot reach taid at " + path);
  // A daemon that accepts but never answers must not hang the caller.
  const timeval timeout{5, 0};
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  const std::string line = request + "\n";
  if (::send(fd.get(), line.data(), line.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(line.size()))
    return taid::Error::from_errno("write to " + path);
  std::string answer;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) return taid::Error::from_errno("read from " + path);
    if (n == 0) break;
    answer.append(buf, static_cast<std::size_t>(n));
  }
  return answer;
}

std::string ns_text(const json& j, const char* key) {
  if (!j.contains(key) || !j[key].is_number()) return "-";
  return Duration::from_ns(j[key].get<int64_t>()).to_string();
}

// For magnitudes that have no sign (delay, dispersion, error): drop the "+".
std::string magnitude_text(const json& j, const char* key) {
  std::string text = ns_text(j, key);
  if (!text.empty() && text[0] == '+') text.erase(0, 1);
  return text;
}

std::string str(const json& j, const char* key, const char* fallback = "-") {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  if (j[key].is_string()) return j[key].get<std::string>();
  return j[key].dump();
}

std::string age_text(const json& j, const char* key) {
  if (!j.contains(key) || !j[key].is_number()) return "-";
  const double s = j[key].get<double>();
  char buf[32];
  if (s < 120)
    std::snprintf(buf, sizeof buf, "%.0fs", s);
  else if (s < 7200)
    std::snprintf(buf, sizeof buf, "%.0fm", s / 60);
  else
    std::snprintf(buf, sizeof buf, "%.0fh", s / 3600);
  return buf;
}

void print_sources(const json& j) {
  std::printf("  %-24s %-11s %3s %4s %5s %7s %6s  %-26s %-12s %s\n", "Name", "State", "Str", "Poll",
              "Reach", "Samples", "LastRx", "Last offset +/- error", "Estimate", "Stamp");
  std::printf("%s\n", std::string(117, '=').c_str());
  for (const json& s : j.at("sources")) {
    const std::string offset =
        ns_text(s, "last_offset_ns") + " +/- " + magnitude_text(s, "last_error_ns");
    // The source's estimate: its delay envelope, or the clock filter's pick before that fills.
    const std::string estimate = ns_text(s, "offset_ns");
    const std::string mark = str(s, "mark", " ");
    std::printf("%c %-24s %-11s %3s %4d %5s %7llu %6s  %-26s %-12s %s\n",
                mark.empty() ? ' ' : mark[0], str(s, "name").c_str(),
                str(s, "state").c_str(), str(s, "stratum").c_str(), s.value("poll_log2_s", 0),
                str(s, "reach_octal").c_str(),
                static_cast<unsigned long long>(s.value("samples", 0ULL)),
                age_text(s, "last_sample_age_s").c_str(), offset.c_str(), estimate.c_str(),
                str(s, "timestamp_source").c_str());
  }
}

void print_tracking(const json& j) {
  const auto row = [](const char* label, const std::string& value) {
    std::printf("%-20s: %s\n", label, value.c_str());
  };
  row("Mode", str(j, "mode") +
                  (j.contains("observe_reason") ? " (" + str(j, "observe_reason") + ")" : "") +
                  ", clock driver " + str(j, "clock_driver"));
  row("Synchronised", j.value("synchronized", false) ? "yes" : "no");
  if (j.contains("no_selection")) row("Cannot select", str(j, "no_selection"));
  row("Servo", str(j, "servo") + " (" + str(j, "servo_state") + "), " + str(j, "updates") +
                   " updates, " + str(j, "steps") + " steps");
  {
    char text[160];
    std::snprintf(text, sizeof text, "%.3f ppm (residual %+.3f ppm, skew %.3f ppm)",
                  j.value("clock_frequency_ppb", 0.0) / 1000,
                  j.value("residual_frequency_ppb", 0.0) / 1000, j.value("skew_ppb", 0.0) / 1000);
    row("Clock frequency", text);
  }
  row("System time", ns_text(j, "system_time_offset_ns") + " still to slew (positive: behind)");
  row("Update offset", ns_text(j, "update_offset_ns") + " (RMS " +
                           magnitude_text(j, "rms_offset_ns") + ")");
  row("Update interval", str(j, "update_interval_s") + " s");
  row("Error bound", magnitude_text(j, "error_bound_ns"));
  if (j.value("reference", json()).is_null()) {
    row("Reference", "none (not synchronised)");
    row("Stratum", str(j, "stratum"));
  } else {
    row("Reference", str(j, "reference") + " (" + str(j, "reference_id") + ")");
    row("Stratum", str(j, "stratum"));
    row("Leap status", str(j, "leap"));
    row("System offset", ns_text(j, "offset_ns") + " (positive: local clock behind)");
    row("Estimator", str(j, "estimator"));
    if (j.contains("frequency_ppb"))
      row("Frequency", str(j, "frequency_ppb") + " ppb against the source (positive: slow)");
    if (j.contains("envelope"))
      row("Envelope", str(j["envelope"], "samples") + " samples over " +
                          age_text(j["envelope"], "span_s") + ", half min delay " +
                          magnitude_text(j["envelope"], "half_min_delay_ns"));
    row("Filter offset", ns_text(j, "filter_offset_ns"));
    row("Last offset", ns_text(j, "last_offset_ns"));
    row("Jitter", magnitude_text(j, "jitter_ns"));
    row("Root delay", magnitude_text(j, "root_delay_ns"));
    row("Root dispersion", magnitude_text(j, "root_dispersion_ns"));
    row("Root distance", magnitude_text(j, "root_distance_ns"));
    row("Poll", str(j, "poll_log2_s") + " (log2 s)");
    row("Last update", str(j, "last_update") + " (" + age_text(j, "update_age_s") + " ago)");
    row("Last RX stamp", str(j, "timestamp_source"));
  }
  if (j.contains("drift_file_freq_ppm")) row("Drift file", str(j, "drift_file_freq_ppm") + " ppm");
  if (j.contains("tai")) {
    const json& t = j["tai"];
    row("TAI offset", str(t, "offset_s") + " s, " +
                          (t.value("vouched", false) ? "vouched for: " : "NOT vouched for: ") +
                          str(t, "note"));
    if (t.contains("kernel_offset_s")) row("Kernel TAI offset", str(t, "kernel_offset_s") + " s");
    row("Leap table", str(t, "table"));
    std::string leap = str(t, "leap_armed") + " (leapsecmode " + str(t, "leapsecmode") + ")";
    if (t.contains("leap_at")) leap += " at " + str(t, "leap_at") + " from " + str(t, "leap_from");
    row("Leap second", leap);
  }
  if (j.contains("timestamping")) {
    const json& t = j["timestamping"];
    std::string text = str(t, "mode") + " -> " + str(t, "rx_path") + " receive stamps";
    if (str(t, "mode") == "auto") text += t.value("decided", false) ? " (decided)" : " (measuring)";
    row("Timestamping", text);
    std::string lateness;
    for (const json& p : t.value("measured_paths", json::array()))
      lateness += (lateness.empty() ? "" : ", ") + str(p, "source") + " " +
                  magnitude_text(p, "median_lateness_ns");
    if (!lateness.empty()) row("  median lateness", lateness);
    for (const json& p : t.value("bpf_programs", json::array()))
      row("  eBPF program",
          str(p, "attach") + " on " + str(p, "interface") + " (id " + str(p, "program_id") + ")");
    if (!str(t, "bpf_error", "").empty()) row("  eBPF", "unavailable: " + str(t, "bpf_error"));
    for (const json& h : t.value("hardware", json::array()))
      row("  hardware", h.get<std::string>());
  }
}

void print_sourcestats(const json& j) {
  std::printf("  %-24s %5s %8s %14s %14s %12s %-14s\n", "Name", "NP", "Span", "Residual freq",
              "Offset", "Std dev", "Estimator");
  std::printf("%s\n", std::string(100, '=').c_str());
  for (const json& s : j.at("sourcestats")) {
    char freq[32] = "-";
    if (s.contains("residual_frequency_ppb"))
      std::snprintf(freq, sizeof freq, "%+.3f ppm", s.value("residual_frequency_ppb", 0.0) / 1000);
    std::printf("  %-24s %5s %8s %14s %14s %12s %-14s\n", str(s, "name").c_str(),
                str(s, "samples").c_str(), age_text(s, "span_s").c_str(), freq,
                ns_text(s, "offset_ns").c_str(), magnitude_text(s, "std_dev_ns").c_str(),
                str(s, "estimator").c_str());
  }
}

void print_filter(const json& j) {
  std::printf("Source %s: offset %s delay %s dispersion %s jitter %s\n", str(j, "name").c_str(),
              ns_text(j, "offset_ns").c_str(), magnitude_text(j, "delay_ns").c_str(),
              magnitude_text(j, "dispersion_ns").c_str(), magnitude_text(j, "jitter_ns").c_str());
  std::printf("%5s %14s %14s %14s %8s\n", "Stage", "Offset", "Delay", "Dispersion", "Age");
  for (const json& s : j.at("stages")) {
    if (!s.value("valid", false)) {
      std::printf("%5d %14s %14s %14s %8s\n", s.value("stage", 0), "-", "-",
                  magnitude_text(s, "dispersion_ns").c_str(), "-");
      continue;
    }
    std::printf("%5d %14s %14s %14s %8s\n", s.value("stage", 0), ns_text(s, "offset_ns").c_str(),
                magnitude_text(s, "delay_ns").c_str(), magnitude_text(s, "dispersion_ns").c_str(),
                age_text(s, "age_s").c_str());
  }
}

void print_kernel(const json& j) {
  std::string flags;
  for (const json& f : j.at("status_flags"))
    flags += (flags.empty() ? "" : " ") + f.get<std::string>();
  const auto row = [](const char* label, const std::string& value) {
    std::printf("%-16s: %s\n", label, value.c_str());
  };
  row("Clock state", str(j, "clock_state"));
  row("Synchronised", j.value("synchronized", false) ? "yes" : "no");
  char status[64];
  std::snprintf(status, sizeof status, "0x%04x", j.value("status", 0U));
  row("Status", std::string(status) + " (" + flags + ")");
  row("Offset", ns_text(j, "offset_ns"));
  char freq[64];
  std::snprintf(freq, sizeof freq, "%.3f ppm", j.value("frequency_ppb", 0.0) / 1000.0);
  row("Frequency", freq);
  row("Max error", magnitude_text(j, "max_error_ns"));
  row("Est error", magnitude_text(j, "est_error_ns"));
  row("Time constant", str(j, "time_constant"));
  row("Precision", magnitude_text(j, "precision_ns"));
  std::snprintf(freq, sizeof freq, "%.0f ppm", j.value("tolerance_ppb", 0.0) / 1000.0);
  row("Tolerance", freq);
  row("TAI offset", str(j, "tai_offset_s") + " s");
  row("Tick", str(j, "tick_us") + " us");
  row("Kernel time", str(j, "time"));
}

// chronyc serverstats' layout: one counter per line, then the drops and the XDP path by reason.
void print_serverstats(const json& j) {
  const auto count = [](const json& object, const char* key) {
    return object.contains(key) && object[key].is_number() ? object[key].get<uint64_t>() : 0;
  };
  const auto row = [](const std::string& label, uint64_t value) {
    std::printf("%-32s: %llu\n", label.c_str(), static_cast<unsigned long long>(value));
  };
  if (!j.value("enabled", false)) {
    std::printf("NTP server          : off (no allow directive)\n");
    return;
  }
  std::string listening;
  const json listening_list = j.value("listening", json::array());
  for (const auto& l : listening_list)
    listening += (listening.empty() ? "" : " ") + l.get<std::string>();
  std::printf("%-32s: %s (%d worker(s))\n", "Listening", listening.c_str(),
              j.value("workers", 0));
  row("NTP packets received", count(j, "received"));
  row("NTP replies sent", count(j, "replied"));
  row("Interleaved replies", count(j, "interleaved"));
  row("KoD RATE replies", count(j, "kiss_of_death"));
  const json dropped = j.value("dropped", json::object());
  for (const auto& [reason, n] : dropped.items())
    row("Dropped: " + reason, n.get<uint64_t>());
  std::printf("%-32s: %llu / %llu / %llu\n", "RX stamps kernel / eBPF / user",
              static_cast<unsigned long long>(count(j, "rx_kernel_stamps")),
              static_cast<unsigned long long>(count(j, "rx_bpf_stamps")),
              static_cast<unsigned long long>(count(j, "rx_user_stamps")));
  row("TX stamps of replies", count(j, "tx_stamps"));
  row("Send errors", count(j, "send_errors"));
  if (j.contains("xdp") && j["xdp"].is_object()) {
    const json& x = j["xdp"];
    std::printf("%-32s: %s\n", "XDP fast path", str(x, "interfaces").c_str());
    row("XDP replies sent", count(x, "answered"));
    const json passed = x.value("passed", json::object());
    for (const auto& [reason, n] : passed.items())
      row("XDP passed up: " + reason, n.get<uint64_t>());
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string socket_path = "/run/taid/taid.sock";
  bool as_json = false;
  std::vector<std::string> words;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--json")
      as_json = true;
    else if (arg == "-s" && i + 1 < argc)
      socket_path = argv[++i];
    else if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (!arg.empty() && arg[0] == '-') {
      std::fprintf(stderr, "taictl: unknown option '%s'\n%s", arg.c_str(), kUsage);
      return 2;
    } else
      words.push_back(arg);
  }
  const bool known = !words.empty() &&
                     ((words[0] == "filter" && words.size() == 2) ||
                      ((words[0] == "sources" || words[0] == "sourcestats" || words[0] == "tracking" ||
                        words[0] == "kernel" || words[0] == "serverstats") &&
                       words.size() == 1) ||
                      ((words[0] == "tai" || words[0] == "utc") && words.size() == 2));
  if (!known) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  std::string request = words[0];
  if (words.size() == 2) request += " " + words[1];

  auto answer = ask(socket_path, request);
  if (!answer) {
    std::fprintf(stderr, "taictl: %s\n", answer.error().message().c_str());
    return 1;
  }
  json j = json::parse(*answer, nullptr, false);
  if (j.is_discarded()) {
    std::fprintf(stderr, "taictl: the daemon's answer is not JSON: %.200s\n", answer->c_str());
    return 1;
  }
  if (j.is_object() && j.contains("error")) {
    if (as_json) std::cout << j.dump(2) << "\n";
    std::fprintf(stderr, "taictl: %s\n", str(j, "error").c_str());
    return 1;
  }
  if (as_json) {
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  try {
    if (words[0] == "sources")
      print_sources(j);
    else if (words[0] == "sourcestats")
      print_sourcestats(j);
    else if (words[0] == "tracking")
      print_tracking(j);
    else if (words[0] == "filter")
      print_filter(j);
    else if (words[0] == "serverstats")
      print_serverstats(j);
    else if (words[0] == "tai" || words[0] == "utc")
      std::printf("%s = %s (TAI - UTC %s s%s; %s)\n", str(j, "utc").c_str(), str(j, "tai").c_str(),
                  j.contains("tai_minus_utc_s") ? str(j, "tai_minus_utc_s").c_str() : "?",
                  j.value("covered", false) ? "" : ", beyond the table: not vouched",
                  str(j, "table").c_str());
    else
      print_kernel(j);
  } catch (const json::exception& e) {
    std::fprintf(stderr, "taictl: unexpected answer (%s)\n", e.what());
    return 1;
  }
  return 0;
}
