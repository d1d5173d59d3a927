# Build habits shared by every target: warnings, sanitizers, ccache, fast linker.

# ccache when installed. The sloppiness settings let it cache TUs built with a PCH.
find_program(SEAM_CCACHE ccache)
if(SEAM_CCACHE AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  set(CMAKE_CXX_COMPILER_LAUNCHER
      ${CMAKE_COMMAND} -E env CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
      ${SEAM_CCACHE})
endif()

# lld links LibTorch binaries in ~0.1 s against ~0.7 s for bfd.
include(CheckCXXSourceCompiles)
find_program(SEAM_LLD ld.lld)
if(SEAM_LLD)
  set(CMAKE_REQUIRED_LINK_OPTIONS -fuse-ld=lld)
  check_cxx_source_compiles("int main(){return 0;}" SEAM_HAVE_LLD)
  unset(CMAKE_REQUIRED_LINK_OPTIONS)
  if(SEAM_HAVE_LLD)
    add_link_options(-fuse-ld=lld)
  endif()
endif()

if(SEAM_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "SEAM_FUZZ needs clang: CXX=clang++ cmake -DSEAM_FUZZ=ON ...")
  endif()
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
endif()

if(SEAM_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()

# Warnings apply to project targets only; third-party headers come in with -isystem.
function(seam_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow=local -Wnon-virtual-dtor -Winvalid-pch)
  if(SEAM_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()

# seam_library(name folder) — one library target per source folder.
function(seam_library name)
  cmake_parse_arguments(A "" "" "SOURCES" ${ARGN})
  add_library(${name} STATIC ${A_SOURCES})
  target_include_directories(${name} PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/include)
  seam_warnings(${name})
endfunction()

# LibTorch targets share one precompiled header (built once, reused).
function(seam_use_torch_pch target)
  if(SEAM_PCH)
    target_precompile_headers(${target} REUSE_FROM seam_torch_pch)
  endif()
endfunction()
