// libbpf's error conventions turned into taid's Error, for every loader in lib/bpf.
#pragma once

#include <cerrno>
#include <string>
#include <utility>

#include "core/result.hpp"

namespace taid::bpf {

// libbpf 1.x returns -errno (and sets errno); keep the positive errno.
inline int errno_of(int libbpf_result) { return libbpf_result < 0 ? -libbpf_result : errno; }

// EPERM is what the kernel answers for missing capabilities, EACCES the verifier's "no" (its log,
// with the reason, went to the log just before); say which, so neither reads like the other.
inline Error error_of(int errno_value, std::string context) {
  if (errno_value == EPERM) {
    context += " (needs CAP_BPF and CAP_NET_ADMIN)";
  } else if (errno_value == EACCES) {
    context += " (the kernel's verifier refused the program; its log above says why)";
  }
  return Error{errno_value, std::move(context)};
}

}  // namespace taid::bpf
