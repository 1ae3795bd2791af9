#!/usr/bin/env bash
# How much of lib/ntp/exchange.cpp and lib/ntp/packet.cpp a fuzz target's bounded run reaches
# (clang source-based coverage): the same input count, length limit and seed as its ctest, once
# from an empty corpus and once from its seed corpus (tests/fuzz/corpus/TARGET, if any).
#   tests/fuzz/coverage.sh [RUNS]        RUNS defaults to exchange_fuzz's ctest count, 20000
#   TARGET=packet_fuzz BUILD=dir tests/fuzz/coverage.sh 200000
# Builds the fuzz preset with coverage flags in BUILD (default build/fuzz-coverage).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
runs=${1:-20000}
target=${TARGET:-exchange_fuzz}
build=${BUILD:-build/fuzz-coverage}
flags="-fprofile-instr-generate -fcoverage-mapping"
launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
fi
cmake --preset fuzz -B "${build}" "${launcher[@]}" -DCMAKE_CXX_FLAGS="${flags}" \
  -DCMAKE_C_FLAGS="${flags}" -DCMAKE_EXE_LINKER_FLAGS=-fprofile-instr-generate >/dev/null
cmake --build "${build}" --target "${target}" -j2 >/dev/null

bin="${build}/tests/fuzz/${target}"
seeds="${build}/tests/fuzz/${target}.seeds"
modes=("empty corpus")
[[ -f "${seeds}" ]] && modes+=("seed corpus")
for mode in "${modes[@]}"; do
  args=(-runs="${runs}" -max_len=512 -seed=1)
  [[ "${mode}" == "seed corpus" ]] && args+=("-seed_inputs=@${seeds}")
  out="${build}/${target}-${mode% corpus}"
  rm -f "${out}.profraw"
  start=${SECONDS}
  LLVM_PROFILE_FILE="${out}.profraw" "${bin}" "${args[@]}" 2>"${out}.log"
  llvm-profdata merge -sparse -o "${out}.profdata" "${out}.profraw"
  echo "=== ${target}: ${runs} inputs, ${mode}, $((SECONDS - start)) s"
  grep -E '^#[0-9]+[[:space:]]+DONE' "${out}.log" || true
  llvm-cov report "${bin}" -instr-profile="${out}.profdata" "${PWD}/lib/ntp/exchange.cpp" \
    "${PWD}/lib/ntp/packet.cpp"
done
