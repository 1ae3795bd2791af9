// Writing a whole file so that no reader ever sees half of it: a temporary file with its final
// mode (not the umask's), written, fsynced, renamed into place. Used for the files taid makes for
// others to read (a signing key's public half, the RFC 3161 key and certificate).
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

#include "core/result.hpp"

namespace taid {

// Errors name the path and the step that failed; the temporary file is removed on failure.
Result<void> write_file_atomically(const std::string& path, std::string_view data, mode_t mode);

}  // namespace taid
