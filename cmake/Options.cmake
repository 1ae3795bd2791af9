# Build options, one place.
option(TAID_BUILD_TESTS "Build the GoogleTest suites" ON)
option(TAID_BUILD_BENCH "Build the Google Benchmark programs" ON)
option(TAID_ENABLE_ASAN "Build with AddressSanitizer + UndefinedBehaviorSanitizer" OFF)
option(TAID_WARNINGS_AS_ERRORS "Turn warnings into errors" OFF)
option(TAID_ENABLE_FUZZ "Build the libFuzzer targets (clang only)" OFF)
