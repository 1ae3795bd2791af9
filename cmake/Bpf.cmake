# taid_bpf_object(): builds bpf/NAME.bpf.c → NAME.bpf.o → NAME.skel.h (libbpf-bootstrap style).
#
# clang compiles the kernel side for the BPF target, `bpftool gen skeleton` embeds the object in
# a header, and an INTERFACE target taid::bpf_NAME carries the include directories (the generated
# header's and the shared NAME.h's) plus the build-order dependency on the generated header.
find_program(TAID_BPF_CLANG NAMES clang clang-14 clang-15 clang-16)
if(NOT TAID_BPF_CLANG)
  message(FATAL_ERROR "clang not found: it compiles the eBPF programs in bpf/. "
    "Install the Debian package 'clang' (apt-get install clang).")
endif()
# bpftool lives in /usr/sbin, which is not on every user's PATH.
find_program(TAID_BPFTOOL NAMES bpftool PATHS /usr/sbin /sbin)
if(NOT TAID_BPFTOOL)
  message(FATAL_ERROR "bpftool not found: it generates the eBPF skeleton headers. "
    "Install the Debian package 'bpftool' (apt-get install bpftool).")
endif()

# The BPF target has no system headers of its own: the host's multiarch directory provides
# <asm/types.h> for the UAPI headers, and __TARGET_ARCH_* is what bpf_tracing.h keys on.
if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$")
  set(TAID_BPF_ARCH x86)
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "^(aarch64|arm64)$")
  set(TAID_BPF_ARCH arm64)
else()
  set(TAID_BPF_ARCH ${CMAKE_SYSTEM_PROCESSOR})
endif()
if(CMAKE_LIBRARY_ARCHITECTURE)
  set(TAID_BPF_MULTIARCH_INCLUDE /usr/include/${CMAKE_LIBRARY_ARCHITECTURE})
else()
  set(TAID_BPF_MULTIARCH_INCLUDE /usr/include/x86_64-linux-gnu)
endif()

function(taid_bpf_object name src)
  get_filename_component(src_abs ${src} ABSOLUTE BASE_DIR ${CMAKE_CURRENT_SOURCE_DIR})
  get_filename_component(src_dir ${src_abs} DIRECTORY)
  set(out_dir ${CMAKE_CURRENT_BINARY_DIR})
  set(obj ${out_dir}/${name}.bpf.o)
  set(skel ${out_dir}/${name}.skel.h)

  # Same bar as the C++ code: warnings are errors when the project asks for it.
  set(werror "")
  if(TAID_WARNINGS_AS_ERRORS)
    set(werror -Werror)
  endif()
  add_custom_command(OUTPUT ${obj}
    COMMAND ${TAID_BPF_CLANG} -O2 -g -target bpf -D__TARGET_ARCH_${TAID_BPF_ARCH}
      -I${TAID_BPF_MULTIARCH_INCLUDE} -I${src_dir} -Wall -Wextra ${werror}
      -MD -MF ${obj}.d -c ${src_abs} -o ${obj}
    DEPENDS ${src_abs}
    DEPFILE ${obj}.d
    COMMENT "Compiling eBPF object ${name}.bpf.o"
    VERBATIM)
  # Written to a temporary file first, so a failed run never leaves a truncated header behind.
  add_custom_command(OUTPUT ${skel}
    COMMAND sh -c "\"$1\" gen skeleton \"$2\" > \"$3.tmp\" && mv \"$3.tmp\" \"$3\""
      sh ${TAID_BPFTOOL} ${obj} ${skel}
    DEPENDS ${obj}
    COMMENT "Generating eBPF skeleton ${name}.skel.h"
    VERBATIM)
  add_custom_target(taid_bpf_${name}_skel DEPENDS ${skel})

  add_library(taid_bpf_${name} INTERFACE)
  add_library(taid::bpf_${name} ALIAS taid_bpf_${name})
  # SYSTEM: the generated skeleton is not ours to keep free of -Wconversion/-Wpedantic findings.
  target_include_directories(taid_bpf_${name} SYSTEM INTERFACE ${out_dir})
  target_include_directories(taid_bpf_${name} INTERFACE ${src_dir})
  add_dependencies(taid_bpf_${name} taid_bpf_${name}_skel)
endfunction()
