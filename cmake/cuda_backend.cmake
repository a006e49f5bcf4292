# cuda_backend.cmake — the one place that decides how hope_attn gets (or does without) its CUDA backend and
# its NVTX ranges. Included once from the top-level CMakeLists.txt, right after project().
#
#   HOPE_WITH_CUDA = AUTO (default) | ON | OFF
#     AUTO  ON when a working CUDA compiler is found (nvcc on PATH, or CUDACXX / CMAKE_CUDA_COMPILER) together
#           with the toolkit's libraries; otherwise OFF, with a message saying so.
#     ON    the CUDA toolkit is required (configure fails without it).
#     OFF   C and C++ only: no kernels, no CUDA runtime or cuBLAS; the host stand-ins of csrc/no_cuda.c make
#           every CUDA-backend entry point return HOPE_ERROR_NOT_SUPPORTED ("built without CUDA") and
#           hope_cuda_device_count report 0. The exported symbols are the same (same ABI).
#   HOPE_EMULATED_DEVICE = OFF (default) | ON
#     ON    the CUDA backend is built for the emulated GPU (emulator/, scripts/emulated-gpu.sh): the kernels
#           compiled by the host C++ compiler and run as fibers, linked against the emulator's CUDA runtime and
#           cuBLAS (libhope_emu.so). Needs the toolkit's headers, not nvcc and not a GPU. Implies the backend.
#   HOPE_SM90 = ON (default) | OFF
#     The Hopper fused-attention family (kernels/instances/*_sm90.cu: wgmma, TMA, mbarriers, setmaxnreg). In CUDA
#     mode those files form an object library of their own, compiled for HOPE_SM90_CUDA_ARCHITECTURES only
#     (default 90a-real: the instructions exist on sm_90a alone, whatever CMAKE_CUDA_ARCHITECTURES says; a
#     toolkit older than 12.0 cannot compile them and leaves them out with a warning). In EMULATED mode they are
#     compiled by the host compiler like every other kernel source, and the emulated GPU runs them. Either way
#     the library is built with HOPE_WITH_SM90=1 and the planner (kernels/attention/fused_launch.cu) runs them on
#     compute capability 9.x.
#   HOPE_WITH_NVTX = AUTO (default) | ON | OFF
#     The NVTX v3 ranges of every entry point (header-only nvtx3: the toolkit's, or any nvtx3/ directory found
#     on the include path or given as HOPE_NVTX3_INCLUDE_DIR). OFF, or AUTO without the headers: the ranges
#     compile out (HOPEI_NVTX_SCOPE is a no-op and csrc/nvtx.c is not built).
#
# What it leaves for the rest of the build:
#   HOPE_CUDA_MODE          CUDA, EMULATED or NONE (the mode in effect)
#   HOPE_HAS_CUDA_BACKEND   ON for CUDA and EMULATED: the CUDA-backend entry points, GPU tests and examples
#   hope_cuda_runtime       an interface target: the CUDA runtime that tests and examples link (they allocate
#                           device memory themselves): CUDA::cudart, or the emulator's
#   HOPE_C_SOURCES          the host C files of every mode (csrc/**/*.c less those named below)
#   HOPE_SM90_ENABLED       ON when the sm90 family is built (HOPE_SM90 and a backend that can build it)
#   HOPE_HAVE_NVTX          ON when the ranges are compiled in; HOPE_NVTX3_DIR is then an include directory
#                           that holds nvtx3/ only (never the rest of the toolkit); the headers need libdl
#   hope_use_backend(<target>)  adds the backend sources (kernels/**/*.cu + csrc/cuda/*.c, or csrc/no_cuda.c),
#                           csrc/nvtx.c when NVTX is on, the compile settings and the link libraries to a
#                           target built from csrc/ (libhope_attn.so, and the fuzzers' static copy)
#
# Host C files that call the CUDA runtime live in csrc/cuda/; csrc/no_cuda.c stands in for them and for the
# extern "C" kernel launchers of kernels/*/launch.h. Every other file in csrc/ builds in every mode.

set(HOPE_WITH_CUDA AUTO CACHE STRING "Build the CUDA backend: AUTO (when a CUDA toolkit is found), ON or OFF")
set_property(CACHE HOPE_WITH_CUDA PROPERTY STRINGS AUTO ON OFF)
set(HOPE_WITH_NVTX AUTO CACHE STRING
    "NVTX ranges around every entry point: AUTO (when nvtx3 headers are found), ON or OFF")
set_property(CACHE HOPE_WITH_NVTX PROPERTY STRINGS AUTO ON OFF)
string(TOUPPER "${HOPE_WITH_CUDA}" _hope_with_cuda)
string(TOUPPER "${HOPE_WITH_NVTX}" _hope_with_nvtx)
if(NOT _hope_with_cuda MATCHES "^(AUTO|ON|OFF)$")
  message(FATAL_ERROR "HOPE_WITH_CUDA is '${HOPE_WITH_CUDA}': expected AUTO, ON or OFF")
endif()
if(NOT _hope_with_nvtx MATCHES "^(AUTO|ON|OFF)$")
  message(FATAL_ERROR "HOPE_WITH_NVTX is '${HOPE_WITH_NVTX}': expected AUTO, ON or OFF")
endif()

option(HOPE_EMULATED_DEVICE "Build the CUDA backend for the emulated GPU (no nvcc, no GPU needed)" OFF)
option(HOPE_SM90 "Build the Hopper (sm_90a) fused attention kernels; compute capability 9.x devices run them" ON)
set(HOPE_SM90_CUDA_ARCHITECTURES "90a-real" CACHE STRING "CUDA architectures of the sm90 kernel family (sm_90a)")

# ---- CUDA: decide the mode ------------------------------------------------------------------------------
set(HOPE_CUDA_MODE NONE)
set(_hope_cuda_why "HOPE_WITH_CUDA=OFF")
if(HOPE_EMULATED_DEVICE)
  find_package(CUDAToolkit REQUIRED)  # the headers: the runtime API and half types the kernels and csrc/ use
  set(HOPE_CUDA_MODE EMULATED)
elseif(NOT _hope_with_cuda STREQUAL "OFF")
  if(_hope_with_cuda STREQUAL "AUTO" AND NOT DEFINED CMAKE_CUDA_COMPILER)
    include(CheckLanguage)
    check_language(CUDA) # sets CMAKE_CUDA_COMPILER, or CMAKE_CUDA_COMPILER-NOTFOUND
  endif()
  if(_hope_with_cuda STREQUAL "ON" OR CMAKE_CUDA_COMPILER)
    # Default GPU targets: the A100/H100 generation. 80-real is SASS for A100 (and the mma.sync kernels);
    # 90 is SASS for H100/H200 plus compute_90 PTX so newer GPUs can JIT it. Override with
    # -DCMAKE_CUDA_ARCHITECTURES=native on a GPU machine, or 80-real to only check that kernels compile.
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES "80-real;90" CACHE STRING "CUDA architectures to build")
    endif()
    enable_language(CUDA)
    set(CMAKE_CUDA_STANDARD 17)
    set(CMAKE_CUDA_STANDARD_REQUIRED ON)
    if(_hope_with_cuda STREQUAL "ON")
      find_package(CUDAToolkit REQUIRED)
    else()
      find_package(CUDAToolkit)
    endif()
    if(CUDAToolkit_FOUND)
      set(HOPE_CUDA_MODE CUDA)
    else()
      set(_hope_cuda_why "a CUDA compiler (${CMAKE_CUDA_COMPILER}) but no CUDA toolkit libraries were found")
    endif()
  else()
    set(_hope_cuda_why "no CUDA compiler found (nvcc is not on PATH; set CUDACXX or -DHOPE_WITH_CUDA=ON to insist)")
  endif()
endif()
set(HOPE_SM90_ENABLED OFF)
if(HOPE_SM90 AND HOPE_CUDA_MODE STREQUAL "EMULATED")
  set(HOPE_SM90_ENABLED ON)
elseif(HOPE_SM90 AND HOPE_CUDA_MODE STREQUAL "CUDA")
  if(CMAKE_CUDA_COMPILER_VERSION VERSION_LESS 12.0)
    message(WARNING "hope_attn: CUDA ${CMAKE_CUDA_COMPILER_VERSION} cannot compile sm_90a; the sm90 kernels are left out")
  else()
    set(HOPE_SM90_ENABLED ON)
  endif()
endif()
if(HOPE_CUDA_MODE STREQUAL "CUDA")
  message(STATUS "hope_attn: CUDA backend ON (CUDA ${CUDAToolkit_VERSION}, architectures ${CMAKE_CUDA_ARCHITECTURES})")
elseif(HOPE_CUDA_MODE STREQUAL "EMULATED")
  message(STATUS "hope_attn: CUDA backend ON for the emulated GPU (emulator/; toolkit headers ${CUDAToolkit_VERSION})")
else()
  message(STATUS "hope_attn: CUDA backend OFF (${_hope_cuda_why}): a CPU-only library; CUDA-backend calls "
                 "return HOPE_ERROR_NOT_SUPPORTED")
endif()

# ---- NVTX: header-only nvtx3, exposed through a directory that holds nothing else -------------------------
set(HOPE_HAVE_NVTX OFF)
if(NOT _hope_with_nvtx STREQUAL "OFF")
  set(_hope_nvtx_hints ${CUDAToolkit_INCLUDE_DIRS})
  find_program(_hope_nvcc_on_path nvcc NO_CACHE)
  foreach(root "$ENV{CUDAToolkit_ROOT}" "${CUDAToolkit_ROOT}" "$ENV{CUDA_PATH}")
    if(root)
      list(APPEND _hope_nvtx_hints "${root}/include")
    endif()
  endforeach()
  if(_hope_nvcc_on_path)
    get_filename_component(_hope_nvcc_dir "${_hope_nvcc_on_path}" REALPATH)
    get_filename_component(_hope_nvcc_dir "${_hope_nvcc_dir}" DIRECTORY)
    list(APPEND _hope_nvtx_hints "${_hope_nvcc_dir}/../include")
  endif()
  find_path(HOPE_NVTX3_INCLUDE_DIR nvtx3/nvToolsExt.h HINTS ${_hope_nvtx_hints}
            DOC "Directory holding nvtx3/nvToolsExt.h (header-only NVTX v3)")
  if(HOPE_NVTX3_INCLUDE_DIR)
    set(HOPE_HAVE_NVTX ON)
    # Only nvtx3/ becomes visible: a build without CUDA cannot pick up another toolkit header by accident.
    set(HOPE_NVTX3_DIR ${PROJECT_BINARY_DIR}/nvtx3_include)
    file(MAKE_DIRECTORY ${HOPE_NVTX3_DIR})
    file(CREATE_LINK ${HOPE_NVTX3_INCLUDE_DIR}/nvtx3 ${HOPE_NVTX3_DIR}/nvtx3 SYMBOLIC)
    message(STATUS "hope_attn: NVTX ranges ON (nvtx3 headers in ${HOPE_NVTX3_INCLUDE_DIR})")
  elseif(_hope_with_nvtx STREQUAL "ON")
    message(FATAL_ERROR "HOPE_WITH_NVTX=ON but nvtx3/nvToolsExt.h was not found: set HOPE_NVTX3_INCLUDE_DIR")
  else()
    message(STATUS "hope_attn: NVTX ranges OFF (no nvtx3 headers found): the ranges compile out")
  endif()
else()
  message(STATUS "hope_attn: NVTX ranges OFF (HOPE_WITH_NVTX=OFF): the ranges compile out")
endif()

set(HOPE_HAS_CUDA_BACKEND OFF)
if(HOPE_CUDA_MODE STREQUAL "CUDA" OR HOPE_CUDA_MODE STREQUAL "EMULATED")
  set(HOPE_HAS_CUDA_BACKEND ON)
endif()
add_library(hope_cuda_runtime INTERFACE)
if(HOPE_CUDA_MODE STREQUAL "EMULATED")
  add_subdirectory(${PROJECT_SOURCE_DIR}/emulator ${PROJECT_BINARY_DIR}/emulator)
  target_link_libraries(hope_cuda_runtime INTERFACE hope_emu)
elseif(HOPE_CUDA_MODE STREQUAL "CUDA")
  target_link_libraries(hope_cuda_runtime INTERFACE CUDA::cudart)
endif()

# ---- what a target built from csrc/ gets ----------------------------------------------------------------
# HOPE_C_SOURCES: the host C files every mode builds (csrc/**/*.c less the mode-specific ones below).
file(GLOB_RECURSE HOPE_C_SOURCES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/csrc/*.c)
list(FILTER HOPE_C_SOURCES EXCLUDE REGEX "/csrc/(cuda/.*|no_cuda\\.c|nvtx\\.c)$")
file(GLOB_RECURSE HOPE_CUDA_KERNEL_SOURCES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/kernels/*.cu)
file(GLOB HOPE_CUDA_HOST_SOURCES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/csrc/cuda/*.c)
# The sm90 family's instances: compiled apart (CUDA: their own architectures), or not at all.
file(GLOB HOPE_SM90_KERNEL_SOURCES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/kernels/instances/*_sm90.cu)
list(REMOVE_ITEM HOPE_CUDA_KERNEL_SOURCES ${HOPE_SM90_KERNEL_SOURCES})
if(HOPE_SM90_ENABLED)
  if(HOPE_CUDA_MODE STREQUAL "CUDA")
    message(STATUS "hope_attn: sm90 kernel family ON (architectures ${HOPE_SM90_CUDA_ARCHITECTURES})")
    # One object library serves every target hope_use_backend() builds; its own architectures (sm_90a only).
    add_library(hope_attn_sm90 OBJECT ${HOPE_SM90_KERNEL_SOURCES})
    target_include_directories(hope_attn_sm90 PRIVATE
      ${PROJECT_SOURCE_DIR}/include ${PROJECT_SOURCE_DIR}/csrc ${PROJECT_SOURCE_DIR}/kernels)
    target_compile_options(hope_attn_sm90 PRIVATE --expt-relaxed-constexpr -Xcompiler=-fvisibility=hidden -lineinfo)
    set_target_properties(hope_attn_sm90 PROPERTIES
      CUDA_ARCHITECTURES "${HOPE_SM90_CUDA_ARCHITECTURES}" CUDA_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN ON
      POSITION_INDEPENDENT_CODE ON CUDA_SEPARABLE_COMPILATION OFF)
  else()
    message(STATUS "hope_attn: sm90 kernel family ON (emulated)")
  endif()
else()
  message(STATUS "hope_attn: sm90 kernel family OFF (HOPE_SM90=${HOPE_SM90}, CUDA mode ${HOPE_CUDA_MODE})")
endif()

# What hope_build_info() reports about the build (csrc/build_info.c includes the generated header).
if(HOPE_CUDA_MODE STREQUAL "CUDA")
  set(HOPEI_BUILD_CUDA on)
  set(HOPEI_BUILD_CUDA_VERSION "${CUDAToolkit_VERSION}")
  set(HOPEI_BUILD_CUDA_ARCHITECTURES "${CMAKE_CUDA_ARCHITECTURES}")
  if(HOPE_SM90_ENABLED)
    set(HOPEI_BUILD_CUDA_ARCHITECTURES "${HOPEI_BUILD_CUDA_ARCHITECTURES} (sm90 family: ${HOPE_SM90_CUDA_ARCHITECTURES})")
  endif()
elseif(HOPE_CUDA_MODE STREQUAL "EMULATED")
  set(HOPEI_BUILD_CUDA on)
  set(HOPEI_BUILD_CUDA_VERSION "${CUDAToolkit_VERSION}")
  set(HOPEI_BUILD_CUDA_ARCHITECTURES "emulated")
else()
  set(HOPEI_BUILD_CUDA off)
  set(HOPEI_BUILD_CUDA_VERSION "")
  set(HOPEI_BUILD_CUDA_ARCHITECTURES "")
endif()
set(HOPEI_BUILD_ATTENTION_FAMILIES "")
if(HOPE_HAS_CUDA_BACKEND)
  set(HOPEI_BUILD_ATTENTION_FAMILIES "sm80")
  if(HOPE_SM90_ENABLED)
    set(HOPEI_BUILD_ATTENTION_FAMILIES "sm80,sm90")
  endif()
endif()
configure_file(${CMAKE_CURRENT_LIST_DIR}/hope_build_config.h.in ${PROJECT_BINARY_DIR}/generated/hope_build_config.h)

# The generated header and nvtx3 concern host C files only: the kernels' compile lines stay as they are.
function(hope_use_backend target)
  target_include_directories(${target} PRIVATE $<$<COMPILE_LANGUAGE:C>:${PROJECT_BINARY_DIR}/generated>)
  if(HOPE_CUDA_MODE STREQUAL "CUDA")
    target_sources(${target} PRIVATE ${HOPE_CUDA_KERNEL_SOURCES} ${HOPE_CUDA_HOST_SOURCES})
    target_compile_options(${target} PRIVATE
      $<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr -Xcompiler=-fvisibility=hidden -lineinfo>)
    set_target_properties(${target} PROPERTIES CUDA_VISIBILITY_PRESET hidden CUDA_RUNTIME_LIBRARY Static
                                               CUDA_SEPARABLE_COMPILATION OFF)
    target_link_libraries(${target} PRIVATE CUDA::cudart_static CUDA::cublas)
    if(HOPE_SM90_ENABLED)
      target_sources(${target} PRIVATE $<TARGET_OBJECTS:hope_attn_sm90>)
    endif()
  elseif(HOPE_CUDA_MODE STREQUAL "EMULATED")
    set(_hope_emulated ${HOPE_CUDA_KERNEL_SOURCES})
    if(HOPE_SM90_ENABLED)
      list(APPEND _hope_emulated ${HOPE_SM90_KERNEL_SOURCES})
    endif()
    target_sources(${target} PRIVATE ${_hope_emulated} ${HOPE_CUDA_HOST_SOURCES})
    hope_emulate_cuda_sources(${target} ${_hope_emulated})
    target_include_directories(${target} PRIVATE ${CUDAToolkit_INCLUDE_DIRS})
    target_link_libraries(${target} PRIVATE hope_emu)
    set_target_properties(${target} PROPERTIES INSTALL_RPATH "$ORIGIN")  # libhope_emu.so installs beside it
  else()
    target_sources(${target} PRIVATE ${PROJECT_SOURCE_DIR}/csrc/no_cuda.c)
  endif()
  if(HOPE_SM90_ENABLED)  # fused_launch.cu dispatches to the sm90 instances
    target_compile_definitions(${target} PRIVATE HOPE_WITH_SM90=1)
  endif()
  if(HOPE_HAVE_NVTX)
    target_sources(${target} PRIVATE ${PROJECT_SOURCE_DIR}/csrc/nvtx.c)
    target_compile_definitions(${target} PRIVATE $<$<COMPILE_LANGUAGE:C>:HOPE_HAVE_NVTX=1>)
    target_include_directories(${target} SYSTEM PRIVATE $<$<COMPILE_LANGUAGE:C>:${HOPE_NVTX3_DIR}>)
    target_link_libraries(${target} PRIVATE ${CMAKE_DL_LIBS})
  endif()
endfunction()
