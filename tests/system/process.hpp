// Child processes for system tests: a RAII Process (SIGTERM, bounded wait, SIGKILL) and run().
#pragma once

#include <sys/types.h>

#include <csignal>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace taid::system_test {

using namespace std::chrono_literals;

// Searches PATH the way execvp would; returns the name unchanged when it contains a '/'.
// Throws std::runtime_error when the program is not found.
std::string find_program(const std::string& name);
bool program_exists(const std::string& name);

// A long-running child: stdout and stderr go to one log file. The destructor stops it, so a
// failing test never leaves a chronyd or taid behind. The child also gets SIGKILL should this
// process die first (PR_SET_PDEATHSIG), for the case where the test runner kills us.
class Process {
 public:
  // Starts argv[0] (searched in PATH). Throws std::runtime_error if it cannot be started.
  Process(std::vector<std::string> argv, std::filesystem::path log_path);
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  Process(Process&& other) noexcept;
  Process& operator=(Process&& other) = delete;
  ~Process();

  pid_t pid() const { return pid_; }
  const std::filesystem::path& log_path() const { return log_path_; }
  // Non-blocking: reaps the child if it has ended.
  bool exited();
  // The wait status once exited() (see WIFEXITED / WEXITSTATUS).
  std::optional<int> wait_status() const { return wait_status_; }
  // `signal` (SIGTERM unless told), wait up to `grace`, then SIGKILL. Returns the wait status.
  // Idempotent.
  int stop(std::chrono::milliseconds grace = 5000ms, int signal = SIGTERM);
  // SIGKILL at once, as a crash would end it: no handler, no destructor runs. Returns the wait
  // status (or the earlier one if it had already ended).
  int kill_now();
  // Everything the child has written so far.
  std::string log() const;
  std::string describe() const;

 private:
  std::vector<std::string> argv_;
  std::filesystem::path log_path_;
  pid_t pid_ = -1;
  std::optional<int> wait_status_;
};

struct RunResult {
  int wait_status = -1;  // raw waitpid status
  bool timed_out = false;
  std::string out;  // stdout
  std::string err;  // stderr
  bool ok() const;  // exited normally with status 0 in time
  std::string describe() const;
};

// Runs argv to completion, killing it after `timeout`. Never throws for a non-zero exit; throws
// std::runtime_error only if the program cannot be started.
RunResult run(const std::vector<std::string>& argv, std::chrono::milliseconds timeout = 10000ms);

// Quotes argv for messages, the way a shell would read it back.
std::string join_argv(const std::vector<std::string>& argv);
std::string read_file(const std::filesystem::path& path);

}  // namespace taid::system_test
