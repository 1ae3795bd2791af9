// Child processes for system tests: fork + exec with redirected output, bounded waits, no leaks.
#include "tests/system/process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <utility>

#include "core/fd.hpp"

namespace taid::system_test {
namespace {

std::runtime_error errno_error(const std::string& what) {
  return std::runtime_error(what + ": " + std::strerror(errno));
}

// Starts path with argv; fds 0/1/2 of the child become in_fd/out_fd/err_fd.
pid_t spawn(const std::vector<std::string>& argv, int in_fd, int out_fd, int err_fd) {
  if (argv.empty()) throw std::runtime_error("spawn: empty argv");
  // Everything the child needs is prepared before fork: only async-signal-safe calls after it.
  const std::string path = find_program(argv[0]);
  std::vector<char*> c_argv;
  c_argv.reserve(argv.size() + 1);
  for (const auto& arg : argv) c_argv.push_back(const_cast<char*>(arg.c_str()));
  c_argv.push_back(nullptr);
  const pid_t parent = ::getpid();

  const pid_t pid = ::fork();
  if (pid < 0) throw errno_error("fork for " + argv[0]);
  if (pid == 0) {
    // If the test runner kills us, our daemons must not outlive us.
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::getppid() != parent) ::_exit(126);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    if (::dup2(in_fd, 0) < 0 || ::dup2(out_fd, 1) < 0 || ::dup2(err_fd, 2) < 0) ::_exit(126);
    ::execv(path.c_str(), c_argv.data());
    ::_exit(127);
  }
  return pid;
}

Fd open_dev_null() {
  Fd fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!fd) throw errno_error("open /dev/null");
  return fd;
}

std::string read_all(int fd) {
  std::string text;
  if (::lseek(fd, 0, SEEK_SET) < 0) return text;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  return text;
}

// Waits for pid up to `timeout`; returns the wait status if it ended.
std::optional<int> wait_for(pid_t pid, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int status = 0;
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0 && errno != EINTR) return std::nullopt;  // not our child any more
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(10ms);
  }
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exit status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "wait status " + std::to_string(status);
}

}  // namespace

std::string find_program(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  const char* env_path = std::getenv("PATH");
  // Tests may run with a minimal PATH; ip and capsh live in sbin.
  std::string search = std::string(env_path ? env_path : "") + ":/usr/sbin:/usr/bin:/sbin:/bin";
  std::istringstream dirs(search);
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (dir.empty()) continue;
    const std::string candidate = dir + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  throw std::runtime_error("program not found in PATH: " + name);
}

bool program_exists(const std::string& name) {
  try {
    find_program(name);
    return true;
  } catch (const std::runtime_error&) {
    return false;
  }
}

Process::Process(std::vector<std::string> argv, std::filesystem::path log_path)
    : argv_(std::move(argv)), log_path_(std::move(log_path)) {
  Fd log_fd(::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644));
  if (!log_fd) throw errno_error("open " + log_path_.string());
  const Fd in = open_dev_null();
  pid_ = spawn(argv_, in.get(), log_fd.get(), log_fd.get());
}

Process::Process(Process&& other) noexcept
    : argv_(std::move(other.argv_)),
      log_path_(std::move(other.log_path_)),
      pid_(std::exchange(other.pid_, -1)),
      wait_status_(other.wait_status_) {}

Process::~Process() {
  if (pid_ > 0) stop();
}

bool Process::exited() {
  if (wait_status_) return true;
  if (pid_ <= 0) return true;
  wait_status_ = wait_for(pid_, 0ms);
  return wait_status_.has_value();
}

int Process::stop(std::chrono::milliseconds grace, int signal) {
  if (exited()) return wait_status_.value_or(-1);
  ::kill(pid_, signal);
  wait_status_ = wait_for(pid_, grace);
  if (!wait_status_) {
    ::kill(pid_, SIGKILL);
    // SIGKILL cannot be ignored; the bound only guards against a stuck kernel.
    wait_status_ = wait_for(pid_, 5000ms);
  }
  return wait_status_.value_or(-1);
}

int Process::kill_now() {
  if (exited()) return wait_status_.value_or(-1);
  ::kill(pid_, SIGKILL);
  wait_status_ = wait_for(pid_, 5000ms);
  return wait_status_.value_or(-1);
}

std::string Process::log() const { return read_file(log_path_); }

std::string Process::describe() const {
  std::string text = join_argv(argv_) + " (pid " + std::to_string(pid_);
  if (wait_status_) text += ", " + describe_status(*wait_status_);
  return text + ")";
}

bool RunResult::ok() const {
  return !timed_out && WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0;
}

std::string RunResult::describe() const {
  std::string text = timed_out ? "timed out" : describe_status(wait_status);
  if (!err.empty()) text += "; stderr: " + err;
  return text;
}

RunResult run(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) {
  // memfds instead of pipes: no reader thread, no deadlock on a chatty child.
  Fd out(::memfd_create("run-stdout", MFD_CLOEXEC));
  Fd err(::memfd_create("run-stderr", MFD_CLOEXEC));
  if (!out || !err) throw errno_error("memfd_create");
  const Fd in = open_dev_null();
  const pid_t pid = spawn(argv, in.get(), out.get(), err.get());

  RunResult result;
  auto status = wait_for(pid, timeout);
  if (!status) {
    result.timed_out = true;
    ::kill(pid, SIGKILL);
    status = wait_for(pid, 5000ms);
  }
  result.wait_status = status.value_or(-1);
  result.out = read_all(out.get());
  result.err = read_all(err.get());
  return result;
}

std::string join_argv(const std::vector<std::string>& argv) {
  std::string text;
  for (const auto& arg : argv) {
    if (!text.empty()) text += ' ';
    const bool plain =
        !arg.empty() && arg.find_first_of(" \t\n'\"$\\;&|<>*?()") == std::string::npos;
    text += plain ? arg : "'" + arg + "'";
  }
  return text;
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace taid::system_test
