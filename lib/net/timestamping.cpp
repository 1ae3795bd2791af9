// SO_TIMESTAMPING set-up, control-message parsing and precision measurement.
#include "net/timestamping.hpp"

#include <linux/errqueue.h>
#include <linux/net_tstamp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

namespace taid::net {

Result<void> enable_rx_timestamping(int fd) {
  const int flags = SOF_TIMESTAMPING_RX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE;
  if (setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPING, &flags, sizeof flags) != 0)
    return Error::from_errno("setsockopt(SO_TIMESTAMPING, RX_SOFTWARE)");
  return {};
}

std::optional<UtcTime> software_rx_timestamp(const msghdr& message) {
  // CMSG_NXTHDR takes a non-const msghdr in glibc; it does not modify it.
  auto& m = const_cast<msghdr&>(message);
  for (cmsghdr* c = CMSG_FIRSTHDR(&m); c != nullptr; c = CMSG_NXTHDR(&m, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_TIMESTAMPING) continue;
    if (c->cmsg_len < CMSG_LEN(sizeof(scm_timestamping))) continue;
    scm_timestamping stamps{};
    std::memcpy(&stamps, CMSG_DATA(c), sizeof stamps);
    // ts[0] is the software stamp; ts[1] is legacy; ts[2] raw hardware (unused here).
    if (stamps.ts[0].tv_sec == 0 && stamps.ts[0].tv_nsec == 0) continue;
    return UtcTime::from_timespec(stamps.ts[0]);
  }
  return std::nullopt;
}

int8_t measure_clock_precision_log2() {
  int64_t smallest = 1000000000;
  timespec previous{};
  clock_gettime(CLOCK_REALTIME, &previous);
  for (int i = 0; i < 10000; ++i) {
    timespec now{};
    clock_gettime(CLOCK_REALTIME, &now);
    const int64_t step = (now.tv_sec - previous.tv_sec) * 1000000000LL + (now.tv_nsec - previous.tv_nsec);
    if (step > 0) smallest = std::min(smallest, step);
    previous = now;
  }
  return static_cast<int8_t>(std::ceil(std::log2(static_cast<double>(smallest) * 1e-9)));
}

}  // namespace taid::net
