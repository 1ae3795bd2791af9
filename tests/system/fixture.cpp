// The system tests' shared fixture and helpers (see fixture.hpp).
#include "tests/system/fixture.hpp"
#include "tests/support/skip.hpp"

#include <sys/wait.h>

#include <algorithm>
#include <iostream>
#include <sstream>
#include <vector>

namespace taid::system_test {

using json = nlohmann::json;

std::optional<std::int64_t> int_field(const json& object, const char* key) {
  if (!object.is_object() || !object.contains(key) || !object.at(key).is_number_integer()) {
    return std::nullopt;
  }
  return object.at(key).get<std::int64_t>();
}

std::string str_field(const json& object, const char* key) {
  if (!object.is_object() || !object.contains(key) || !object.at(key).is_string()) return {};
  return object.at(key).get<std::string>();
}

bool contains(const std::string& text, const std::string& needle) {
  return text.find(needle) != std::string::npos;
}

std::string in_ns(const std::string& ns, const std::vector<std::string>& argv) {
  std::vector<std::string> full = NetnsPair::exec_in(ns);
  full.insert(full.end(), argv.begin(), argv.end());
  const RunResult r = run(full, std::chrono::milliseconds(10000));
  return r.out + r.err;
}

std::string tc_ingress_filters(const NetnsPair& net) {
  return in_ns(net.client_ns(), {"tc", "filter", "show", "dev", net.client_interface(), "ingress"});
}
std::string tc_qdiscs(const NetnsPair& net) {
  return in_ns(net.client_ns(), {"tc", "qdisc", "show", "dev", net.client_interface()});
}
std::string ip_link(const NetnsPair& net) {
  return in_ns(net.client_ns(), {"ip", "link", "show", "dev", net.client_interface()});
}

std::optional<json> find_source(const json& sources, const std::string& address) {
  if (!sources.contains("sources") || !sources.at("sources").is_array()) return std::nullopt;
  for (const auto& source : sources.at("sources")) {
    for (const char* key : {"address", "name"}) {
      if (!source.contains(key) || !source.at(key).is_string()) continue;
      const auto text = source.at(key).get<std::string>();
      if (text == address || text.rfind(address + ":", 0) == 0) return source;
    }
  }
  return std::nullopt;
}

bool wait_for_source(TaidDaemon& taid, const std::string& address,
                     std::chrono::milliseconds timeout, json& source,
                     const std::function<bool(const json&)>& done) {
  const bool held = wait_until(timeout, std::chrono::milliseconds(250), [&] {
    if (taid.process().exited()) return true;
    const auto sources = taid.sources();
    if (!sources) return false;
    const auto found = find_source(*sources, address);
    if (!found) return false;
    source = *found;
    return done(source);
  });
  return held && !taid.process().exited();
}

int count_lines_containing(const std::string& text, const std::string& needle) {
  std::istringstream lines(text);
  std::string line;
  int count = 0;
  while (std::getline(lines, line)) count += line.find(needle) != std::string::npos ? 1 : 0;
  return count;
}

bool exited_zero(int wait_status) {
  return WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0;
}

bool killed_by(int wait_status, int signal) {
  return WIFSIGNALED(wait_status) && WTERMSIG(wait_status) == signal;
}

void SystemTest::SetUp() {
  if (const auto why = unavailable_reason()) {
    TAID_SKIP_OR_FAIL(*why);
  }
  remove_stale_namespaces();
  dir_.emplace();
  net_.emplace(net_options_);
}

void SystemTest::TearDown() {
  if (!HasFailure() || !dir_) return;
  if (taid_) std::cout << "--- " << taid_->process().describe() << "\n";
  if (chronyd_) std::cout << "--- " << chronyd_->process().describe() << "\n";
  // Every daemon's output, restarted runs included (each has its own file).
  std::vector<std::filesystem::path> logs;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir_->path(), ec)) {
    const auto extension = entry.path().extension();
    if (extension == ".log" || extension == ".out") logs.push_back(entry.path());
  }
  std::sort(logs.begin(), logs.end());
  for (const auto& log : logs) {
    std::cout << "--- " << log.filename().string() << ":\n" << read_file(log);
  }
}

}  // namespace taid::system_test
