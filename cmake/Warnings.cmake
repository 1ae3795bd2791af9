# taid_warnings: the warning set every target links (INTERFACE, never global flags).
add_library(taid_warnings INTERFACE)
add_library(taid::warnings ALIAS taid_warnings)
target_compile_options(taid_warnings INTERFACE -Wall -Wextra -Wpedantic -Wshadow -Wconversion
  -Wno-sign-conversion $<$<BOOL:${TAID_WARNINGS_AS_ERRORS}>:-Werror>)
