# taid_options: language level and optional sanitizers, carried on an INTERFACE target.
add_library(taid_options INTERFACE)
add_library(taid::options ALIAS taid_options)
target_compile_features(taid_options INTERFACE cxx_std_20)
if(TAID_ENABLE_ASAN OR TAID_ENABLE_FUZZ)
  target_compile_options(taid_options INTERFACE -fsanitize=address,undefined -fno-omit-frame-pointer
    -fno-sanitize-recover=undefined)
  target_link_options(taid_options INTERFACE -fsanitize=address,undefined)
endif()
if(TAID_ENABLE_FUZZ)
  # Coverage instrumentation in every library, so libFuzzer sees the code under test.
  target_compile_options(taid_options INTERFACE -fsanitize=fuzzer-no-link)
endif()
