# python_package.cmake — what `pip install .` (scikit-build-core, see pyproject.toml) puts into the wheel, as
# the install component "python" (the only one the wheel takes):
#   hope_attn/libhope_attn.so   the library, one file inside the package, where python/hope_attn/_lib.py looks
#                               first (HOPE_ATTN_LIBRARY still wins); loaded by path, so no versioned names
#   <dist-info>/hope_attn_build.json   the wheel's record of its build, which hope_attn.build_info() reports
# Included from the top-level CMakeLists.txt when scikit-build-core drives the build (SKBUILD).

install(FILES $<TARGET_FILE:hope_attn> DESTINATION hope_attn RENAME libhope_attn.so COMPONENT python)
if(HOPE_CUDA_MODE STREQUAL "CUDA")
  # cuBLAS is a shared library: the packaged copy finds it in the toolkit it was built against. Linked with that
  # RUNPATH directly (nothing runs from this build tree), so the file is copied as built, without padding.
  set_target_properties(hope_attn PROPERTIES BUILD_WITH_INSTALL_RPATH ON INSTALL_RPATH "${CUDAToolkit_LIBRARY_DIR}")
endif()

if(HOPE_HAVE_NVTX)
  set(_hope_nvtx on)
else()
  set(_hope_nvtx off)
endif()
file(WRITE ${PROJECT_BINARY_DIR}/hope_attn_build.json "{
  \"version\": \"${PROJECT_VERSION}\",
  \"cuda\": \"${HOPEI_BUILD_CUDA}\",
  \"cuda_version\": \"${HOPEI_BUILD_CUDA_VERSION}\",
  \"cuda_architectures\": \"${HOPEI_BUILD_CUDA_ARCHITECTURES}\",
  \"nvtx\": \"${_hope_nvtx}\",
  \"build_type\": \"${CMAKE_BUILD_TYPE}\",
  \"compiler\": \"${CMAKE_C_COMPILER_ID} ${CMAKE_C_COMPILER_VERSION}\",
  \"system\": \"${CMAKE_SYSTEM_NAME}-${CMAKE_SYSTEM_PROCESSOR}\"
}
")
install(FILES ${PROJECT_BINARY_DIR}/hope_attn_build.json DESTINATION ${SKBUILD_METADATA_DIR} COMPONENT python)
