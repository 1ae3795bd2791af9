// taid: the daemon's entry point — options, config, clock driver, engine, control socket, signals.
#include <sched.h>
#include <sys/mman.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <optional>
#include <string>

#include "clock/adjtimex_driver.hpp"
#include "clock/null_driver.hpp"
#include "core/log.hpp"
#include "daemon/config.hpp"
#include "daemon/control.hpp"
#include "daemon/engine.hpp"

namespace {

constexpr const char* kUsage =
    "usage: taid [-x] [-f FILE] [-d] [-P PRIORITY] [-m]\n"
    "  -x       observe only: measure and serve, never write the clock (chronyd -x); without\n"
    "           it taid steers the system clock through adjtimex and needs CAP_SYS_TIME\n"
    "           (lacking it, taid says so in one line and observes, as with -x)\n"
    "  -f FILE  configuration in chrony.conf syntax (default /etc/taid/taid.conf)\n"
    "  -d       debug logging\n"
    "  -P N     run with SCHED_FIFO priority N (1..99), as chronyd -P: user-space stamps and\n"
    "           timers then wait less behind other work\n"
    "  -m       lock the daemon's memory (mlockall), as chronyd -m: no page faults on the\n"
    "           timestamp path\n"
    "taid runs in the foreground and logs to stderr.\n";

}  // namespace

int main(int argc, char** argv) {
  using namespace taid;
  std::string config_path = "/etc/taid/taid.conf";
  std::optional<std::string> observe_reason;  // set: observe only, and why
  int fifo_priority = 0;
  bool lock_memory = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "-x") {
      observe_reason = "-x";
    } else if (arg == "-d") {
      set_log_level(LogLevel::debug);
    } else if (arg == "-f") {
      if (i + 1 == argc) {
        std::fprintf(stderr, "taid: -f needs a FILE\n%s", kUsage);
        return 2;
      }
      config_path = argv[++i];
    } else if (arg == "-P") {
      char* end = nullptr;
      const long value = i + 1 < argc ? std::strtol(argv[i + 1], &end, 10) : 0;
      if (i + 1 == argc || *end != '\0' || value < 1 || value > 99) {
        std::fprintf(stderr, "taid: -P needs a priority 1..99\n%s", kUsage);
        return 2;
      }
      fifo_priority = static_cast<int>(value);
      ++i;
    } else if (arg == "-m") {
      lock_memory = true;
    } else if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else {
      std::fprintf(stderr, "taid: unknown argument '%s'\n%s", arg.c_str(), kUsage);
      return 2;
    }
  }
  // Disciplining needs the clock privilege. Lacking it is bad input like any other: one clear
  // line, and taid runs on as with -x (it measures, serves, signs with a measured bound and
  // reports; `taictl tracking` says why it observes), rather than leave the host without its
  // time service.
  if (!observe_reason && !clock::check_clock_privilege()) {
    log_warning(
        "no CAP_SYS_TIME: taid observes only, as with -x, and never writes the clock (to "
        "discipline it, run taid as root or with CAP_SYS_TIME)");
    observe_reason = "no CAP_SYS_TIME";
  }

  // Like chronyd, a scheduling or locking failure is reported and the daemon goes on.
  if (fifo_priority > 0) {
    sched_param param{};
    param.sched_priority = fifo_priority;
    if (sched_setscheduler(0, SCHED_FIFO, &param) != 0)
      log_warning(strcat("-P ", fifo_priority, ": sched_setscheduler: ", std::strerror(errno)));
    else
      log_info(strcat("running with SCHED_FIFO priority ", fifo_priority));
  }
  if (lock_memory && mlockall(MCL_CURRENT | MCL_FUTURE) != 0)
    log_warning(strcat("-m: mlockall: ", std::strerror(errno)));

  daemon::Config config;
  try {
    config = daemon::load_config(config_path);
  } catch (const daemon::ConfigError& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  }

  try {
    boost::asio::io_context io;
    clock::NullClockDriver null_driver;
    std::unique_ptr<clock::AdjtimexDriver> adjtimex;
    if (!observe_reason) {
      auto opened = clock::AdjtimexDriver::open();
      if (!opened) {
        log_error(strcat("clock: ", opened.error().message()));
        return 1;
      }
      adjtimex = std::move(opened.value());
    }
    clock::ClockDriver& driver =
        adjtimex ? static_cast<clock::ClockDriver&>(*adjtimex) : null_driver;
    daemon::Engine engine(io, config, driver, observe_reason);
    daemon::ControlServer control(io, config.bindcmdaddress, [&engine](std::string_view request) {
      return engine.query(request);
    });
    if (auto started = control.start(); !started) {
      log_error(strcat("control socket: ", started.error().message()));
      return 1;
    }
    // Every signal that ends chronyd ends taid, through the same clean path: the engine's
    // destructor detaches the eBPF programs, the control server's removes its socket. Left to
    // their default action, SIGHUP and SIGQUIT would leave both behind.
    boost::asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.add(SIGHUP);
    signals.add(SIGQUIT);
    signals.async_wait([&io](const boost::system::error_code& ec, int signal) {
      if (ec) return;
      log_info(strcat("signal ", strsignal(signal), ": shutting down"));
      io.stop();
    });
    engine.start();
    log_info(strcat("control socket ", config.bindcmdaddress));
    io.run();
    // maxchange: an offset was ignored too often; chronyd exits there, and so does taid.
    return engine.stop_reason() ? 1 : 0;
  } catch (const std::exception& e) {
    log_error(strcat("fatal: ", e.what()));
    return 1;
  }
}
