// The signing key on disk: created on first start (PKCS#8 PEM, mode 0600), loaded after.
//
// A key file that group or others may read or write is refused, as ssh refuses one: a key
// others could have read may sign in someone else's hands, and silently tightening the mode
// would hide that. The file is created under a temporary name and link()ed into place, so a
// crash never leaves a half-written key and two starts at once end with the same key.
#pragma once

#include <string>

#include "core/result.hpp"
#include "stamp/crypto.hpp"

namespace taid::stamp {

struct LoadedKey {
  SigningKey key;
  bool created = false;  // true when this call generated it
};

// Loads the key at `path`; refuses a non-regular file, a mode with any group/other bit, or
// anything but an unencrypted Ed25519 PEM private key.
Result<SigningKey> load_signing_key(const std::string& path);
// Loads, or generates and stores a new key when `path` does not exist.
Result<LoadedKey> load_or_create_signing_key(const std::string& path);

}  // namespace taid::stamp
