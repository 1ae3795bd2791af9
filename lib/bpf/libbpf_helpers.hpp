// What every loader in lib/bpf needs of libbpf: its errors as taid's Error, object ids, a
// program's name.
#pragma once

#include <bpf/bpf.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>

#include "core/fd.hpp"
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

// The kernel's id of a loaded object (Info: bpf_prog_info, bpf_map_info or bpf_link_info), 0 if
// unreadable.
template <typename Info>
uint32_t id_of(int fd) {
  Info info{};
  uint32_t len = sizeof info;
  return bpf_obj_get_info_by_fd(fd, &info, &len) == 0 ? info.id : 0;
}

// Name of a loaded program by id (as `bpftool prog` shows it), "" if it is gone or unreadable.
inline std::string program_name(uint32_t id) {
  const Fd fd(bpf_prog_get_fd_by_id(id));
  if (!fd) return {};
  bpf_prog_info info{};
  uint32_t len = sizeof info;
  if (bpf_obj_get_info_by_fd(fd.get(), &info, &len) != 0) return {};
  return std::string(info.name, strnlen(info.name, sizeof info.name));
}

}  // namespace taid::bpf
