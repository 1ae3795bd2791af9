// SO_TIMESTAMPING set-up, control-message parsing and precision measurement.
#include "net/timestamping.hpp"

#include <arpa/inet.h>
#include <linux/errqueue.h>
#include <linux/net_tstamp.h>
#include <netinet/in.h>
#include <poll.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstring>
#include <string>
#include <thread>

#include "core/fd.hpp"
#include "core/log.hpp"

namespace taid::net {

uint32_t timestamping_flags(TimestampingOptions options) {
  uint32_t flags = SOF_TIMESTAMPING_RX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE;
  if (options.tx_software) {
    flags |= SOF_TIMESTAMPING_TX_SOFTWARE | SOF_TIMESTAMPING_OPT_ID | SOF_TIMESTAMPING_OPT_TSONLY;
  }
  if (options.hardware) {
    flags |= SOF_TIMESTAMPING_RX_HARDWARE | SOF_TIMESTAMPING_RAW_HARDWARE;
    if (options.tx_software) flags |= SOF_TIMESTAMPING_TX_HARDWARE;
  }
  return flags;
}

Result<void> enable_timestamping(int fd, TimestampingOptions options) {
  const int flags = static_cast<int>(timestamping_flags(options));
  if (setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPING, &flags, sizeof flags) != 0) {
    std::string what = "setsockopt(SO_TIMESTAMPING, RX_SOFTWARE";
    if (options.tx_software) what += "|TX_SOFTWARE";
    if (options.hardware) what += "|RAW_HARDWARE";
    return Error::from_errno(what + ")");
  }
  return {};
}

Result<void> enable_rx_timestamping(int fd) { return enable_timestamping(fd, {}); }

namespace {

// Opens the socket that holds RX stamping on (see the header), and waits until a datagram it
// sends itself over loopback comes back with a kernel stamp.
Result<void> open_rx_timestamping_anchor() {
  Fd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return Error::from_errno("RX stamping anchor: socket()");
  if (auto enabled = enable_rx_timestamping(fd.get()); !enabled) return enabled.error();
  const int anchor = fd.release();  // never closed: closing would let the kernel stop stamping
  sockaddr_in self{};
  self.sin_family = AF_INET;
  self.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof self;
  if (::bind(anchor, reinterpret_cast<sockaddr*>(&self), sizeof self) != 0 ||
      ::getsockname(anchor, reinterpret_cast<sockaddr*>(&self), &length) != 0 ||
      ::connect(anchor, reinterpret_cast<sockaddr*>(&self), sizeof self) != 0) {
    return Error::from_errno("RX stamping anchor: bind/connect on 127.0.0.1");
  }
  // The probe arrives within microseconds; the kernel's deferred switch-on usually takes well
  // under a millisecond, so 20 rounds of up to 10 ms leave a wide margin within 200 ms.
  constexpr int kAttempts = 20;
  constexpr int kWaitMs = 5;
  for (int i = 0; i < kAttempts; ++i) {
    const char probe = 'x';
    if (::send(anchor, &probe, 1, 0) != 1) {
      return Error::from_errno("RX stamping anchor: send() on 127.0.0.1");
    }
    pollfd readable{anchor, POLLIN, 0};
    ::poll(&readable, 1, kWaitMs);
    for (int j = 0; j < kAttempts; ++j) {  // drain, looking for a stamped copy
      char byte = 0;
      iovec iov{&byte, 1};
      alignas(cmsghdr) std::array<char, 128> control{};
      msghdr message{};
      message.msg_iov = &iov;
      message.msg_iovlen = 1;
      message.msg_control = control.data();
      message.msg_controllen = control.size();
      if (::recvmsg(anchor, &message, MSG_DONTWAIT) < 0) break;
      if (parse_control_data(message).software) return {};
    }
    // Unstamped: the kernel has not switched stamping on yet. Give its deferred work time.
    std::this_thread::sleep_for(std::chrono::milliseconds(kWaitMs));
  }
  return Error::plain("the kernel gave no software RX timestamp to a loopback datagram");
}

}  // namespace

Result<void> hold_rx_timestamping_on() {
  static const Result<void> held = [] {
    Result<void> r = open_rx_timestamping_anchor();
    if (!r) log_warning(strcat("kernel RX timestamping: ", r.error().message()));
    return r;
  }();
  return held;
}

namespace {

bool is_zero(const timespec& ts) { return ts.tv_sec == 0 && ts.tv_nsec == 0; }

// The cmsg header sits at `at`, which the kernel aligns but a test buffer might not: copy it out.
cmsghdr read_header(const unsigned char* at) {
  cmsghdr header{};
  std::memcpy(&header, at, sizeof header);
  return header;
}

bool is_extended_error(int level, int type) {
  return (level == SOL_IP && type == IP_RECVERR) || (level == SOL_IPV6 && type == IPV6_RECVERR);
}

}  // namespace

ControlData parse_control_data(const msghdr& message) {
  ControlData out;
  if (message.msg_flags & MSG_CTRUNC) out.truncated = true;
  if (message.msg_control == nullptr) return out;
  const auto* control = static_cast<const unsigned char*>(message.msg_control);
  const size_t size = message.msg_controllen;
  // Walked by hand rather than with CMSG_NXTHDR: glibc's macro trusts the first header's length
  // and silently stops at a cut-off last one, where we want to say the data was truncated.
  size_t offset = 0;
  while (size - offset >= sizeof(cmsghdr)) {
    const cmsghdr header = read_header(control + offset);
    if (header.cmsg_len < CMSG_LEN(0)) {  // malformed: no progress possible
      out.truncated = true;
      break;
    }
    const size_t available = size - offset;
    const size_t length = std::min<size_t>(header.cmsg_len, available);
    const unsigned char* data = control + offset + CMSG_LEN(0);
    const size_t data_length = length - CMSG_LEN(0);
    const bool cut = header.cmsg_len > available;

    if (header.cmsg_level == SOL_SOCKET && header.cmsg_type == SCM_TIMESTAMPING) {
      if (cut || data_length < sizeof(scm_timestamping)) {
        out.truncated = true;
      } else {
        scm_timestamping stamps{};
        std::memcpy(&stamps, data, sizeof stamps);
        // ts[0] software, ts[1] unused (legacy hardware-transformed), ts[2] raw hardware.
        if (!is_zero(stamps.ts[0])) out.software = UtcTime::from_timespec(stamps.ts[0]);
        if (!is_zero(stamps.ts[2])) {
          out.hardware_raw_ns =
              static_cast<int64_t>(stamps.ts[2].tv_sec) * 1000000000 + stamps.ts[2].tv_nsec;
        }
      }
    } else if (is_extended_error(header.cmsg_level, header.cmsg_type)) {
      // The kernel appends the offender's address; we need only the fixed part.
      if (cut || data_length < sizeof(sock_extended_err)) {
        out.truncated = true;
      } else {
        sock_extended_err ee{};
        std::memcpy(&ee, data, sizeof ee);
        out.error = ExtendedError{ee.ee_errno, ee.ee_origin, ee.ee_info, ee.ee_data};
      }
    }
    if (cut) {
      out.truncated = true;
      break;
    }
    const size_t step = CMSG_ALIGN(header.cmsg_len);
    if (step >= available) break;
    offset += step;
  }
  return out;
}

std::optional<TxStamp> tx_timestamp(const ControlData& control) {
  if (!control.error || control.error->origin != SO_EE_ORIGIN_TIMESTAMPING) return std::nullopt;
  if (!control.software && !control.hardware_raw_ns) return std::nullopt;
  return TxStamp{control.software, control.hardware_raw_ns, control.error->info,
                 control.error->data};
}

int8_t measure_clock_precision_log2() {
  int64_t smallest = 1000000000;
  timespec previous{};
  clock_gettime(CLOCK_REALTIME, &previous);
  for (int i = 0; i < 10000; ++i) {
    timespec now{};
    clock_gettime(CLOCK_REALTIME, &now);
    const int64_t step =
        (now.tv_sec - previous.tv_sec) * 1000000000LL + (now.tv_nsec - previous.tv_nsec);
    if (step > 0) smallest = std::min(smallest, step);
    previous = now;
  }
  return static_cast<int8_t>(std::ceil(std::log2(static_cast<double>(smallest) * 1e-9)));
}

}  // namespace taid::net
