# Third-party dependencies, found the standard way. All are marked SYSTEM so that
# their warnings never fail our -Werror build.

find_package(Threads REQUIRED)
find_package(OpenSSL 3 REQUIRED)
find_package(Boost 1.74 REQUIRED COMPONENTS program_options)
find_package(GTest REQUIRED)
find_package(cereal REQUIRED)
find_package(ZLIB REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(ZSTD REQUIRED IMPORTED_TARGET libzstd)

# Debian's LibTorch: the CMake config lives under /usr/lib/<triplet>/cmake/Torch.
find_package(Torch REQUIRED)
# TorchConfig appends -D_GLIBCXX_USE_CXX11_ABI to CMAKE_CXX_FLAGS; keep it, but
# expose LibTorch's include dirs as system headers.
get_target_property(_torch_inc torch INTERFACE_INCLUDE_DIRECTORIES)
if(_torch_inc)
  set_target_properties(torch PROPERTIES INTERFACE_SYSTEM_INCLUDE_DIRECTORIES "${_torch_inc}")
endif()

# Standalone Asio ships no CMake config: find the header, build it once.
find_path(ASIO_INCLUDE_DIR asio.hpp REQUIRED)
add_library(seam_asio STATIC ${PROJECT_SOURCE_DIR}/transport/src/asio_impl.cpp)
target_include_directories(seam_asio SYSTEM PUBLIC ${ASIO_INCLUDE_DIR})
# ASIO_DISABLE_STD_ALIGNED_ALLOC: Asio picks aligned_alloc only when a libstdc++
# header came first, so the separately compiled TU and its users disagreed
# (alloc/free mismatch found by ASan). One explicit choice for every TU.
target_compile_definitions(seam_asio PUBLIC ASIO_STANDALONE ASIO_SEPARATE_COMPILATION ASIO_NO_DEPRECATED
                                            ASIO_DISABLE_STD_ALIGNED_ALLOC)
target_link_libraries(seam_asio PUBLIC OpenSSL::SSL OpenSSL::Crypto Threads::Threads)

# The shared LibTorch precompiled header.
if(SEAM_PCH)
  add_library(seam_torch_pch STATIC ${PROJECT_SOURCE_DIR}/cmake/torch_pch.cpp)
  target_link_libraries(seam_torch_pch PUBLIC torch)
  target_precompile_headers(seam_torch_pch PRIVATE <torch/torch.h>)
  seam_warnings(seam_torch_pch)
endif()
