# Helpers that give every Pagoda target the same warnings, sanitizers and test wiring.

# Flags for code we write (generated code gets pagoda_generated_options instead).
add_library(pagoda_options INTERFACE)
target_compile_options(pagoda_options INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor
                            -Wimplicit-fallthrough -Wno-missing-field-initializers>)
if(PAGODA_WERROR)
  target_compile_options(pagoda_options INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-Werror>)
endif()
# GCC 12 at -O3 (Release) reports -Wrestrict inside libstdc++'s string copies wherever a short
# literal is copied, e.g. in protobuf's generated setters (GCC bug 105329, false positives); the
# other configurations do not inline that far and keep the warning.
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
  target_compile_options(pagoda_options INTERFACE
                         $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<CONFIG:Release>>:-Wno-restrict>)
endif()
# nvcc's warnings for our .cu files, as errors under PAGODA_WERROR.
if(PAGODA_WERROR)
  set(PAGODA_CUDA_WARNINGS --Werror=all-warnings -Xcompiler=-Wall,-Wextra,-Werror)
else()
  set(PAGODA_CUDA_WARNINGS -Xcompiler=-Wall,-Wextra)
endif()
add_library(pagoda_generated_options INTERFACE)

if(PAGODA_SANITIZE)
  set(_pagoda_san -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
  foreach(_lib pagoda_options pagoda_generated_options)
    target_compile_options(${_lib} INTERFACE $<$<COMPILE_LANGUAGE:CXX>:${_pagoda_san}>)
    target_link_options(${_lib} INTERFACE ${_pagoda_san})
  endforeach()
endif()

if(PAGODA_FUZZ)
  # Coverage instrumentation for all our code, so libFuzzer is guided by the libraries too.
  set(_pagoda_fuzz -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer)
  target_compile_options(pagoda_options INTERFACE $<$<COMPILE_LANGUAGE:CXX>:${_pagoda_fuzz}>)
  target_link_options(pagoda_options INTERFACE -fsanitize=address,undefined)
endif()

# Where optional test models live (e.g. stories260K/, a tiny trained Llama in Hugging Face
# format); absent on most machines, and then the tests that need them skip.
set(PAGODA_SHARED_MODELS_DIR "${PROJECT_SOURCE_DIR}/../shared/models" CACHE PATH
    "Folder of optional test models (stories260K/); tests that need one skip without it")

# The built-in model (models/pagoda-kjv, docs/model_card.md) in this source tree, and where
# `cmake --install` puts it (models/CMakeLists.txt).
include(GNUInstallDirs)
set(PAGODA_BUILTIN_MODEL_SOURCE_DIR "${PROJECT_SOURCE_DIR}/models/pagoda-kjv")
set(PAGODA_BUILTIN_MODEL_INSTALL_DIR "${CMAKE_INSTALL_FULL_DATADIR}/pagoda/models/pagoda-kjv")

# pagoda_use_shared_models(TARGET...): defines PAGODA_SHARED_MODELS_DIR for the targets that exist.
function(pagoda_use_shared_models)
  foreach(_target ${ARGN})
    if(TARGET ${_target})
      target_compile_definitions(${_target} PRIVATE
                                 PAGODA_SHARED_MODELS_DIR="${PAGODA_SHARED_MODELS_DIR}")
    endif()
  endforeach()
endfunction()

# pagoda_add_library(NAME SOURCES ... [DEPS ...] [PRIVATE_DEPS ...])
# One folder = one library = one namespace pagoda::<folder>. Includes are rooted at the repo,
# e.g. #include "block_manager/block_pool.h".
function(pagoda_add_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(${name} ${ARG_SOURCES})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR})
  target_link_libraries(${name} PUBLIC ${ARG_DEPS} PRIVATE pagoda_options ${ARG_PRIVATE_DEPS})
endfunction()

# pagoda_add_test(NAME SOURCES ... [DEPS ...] [LABELS ...])
# A GoogleTest binary whose tests ctest discovers when it runs (so a binary that needs a GPU is
# never executed at build time).
function(pagoda_add_test name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gtest_main GTest::gmock pagoda_options)
  # GPU tests are labelled "gpu" only, so `ctest -LE gpu` and `ctest -L unit` leave them out.
  if(ARG_LABELS)
    set(_labels ${ARG_LABELS})
  else()
    set(_labels unit)
  endif()
  if("unit" IN_LIST _labels)
    set_property(GLOBAL APPEND PROPERTY PAGODA_UNIT_TEST_TARGETS ${name})
  endif()
  # A list inside PROPERTIES must keep its semicolons escaped through gtest_discover_tests.
  string(REPLACE ";" "\\;" _labels "${_labels}")
  gtest_discover_tests(${name} DISCOVERY_MODE PRE_TEST DISCOVERY_TIMEOUT 60
                       PROPERTIES LABELS "${_labels}")
endfunction()

# pagoda_add_benchmark(NAME SOURCES ... [DEPS ...] [SMOKE_ARGS ...])
# Also registers a smoke run (label "benchmark") so benchmarks keep building and running;
# their figures are read by hand (docs/benchmarks.md), never asserted. The smoke run passes
# SMOKE_ARGS (default --benchmark_min_time=0.001), e.g. a --benchmark_filter for small cases.
function(pagoda_add_benchmark name)
  if(NOT PAGODA_BUILD_BENCHMARKS)
    return()
  endif()
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS;SMOKE_ARGS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} benchmark::benchmark pagoda_options)
  if(NOT ARG_SMOKE_ARGS)
    set(ARG_SMOKE_ARGS --benchmark_min_time=0.001)
  endif()
  add_test(NAME ${name}_smoke COMMAND ${name} ${ARG_SMOKE_ARGS})
  set_tests_properties(${name}_smoke PROPERTIES LABELS "benchmark")
endfunction()

# pagoda_add_fuzz_target(NAME SOURCES ... DEPS ... CORPUS dir)
# SOURCES define LLVMFuzzerTestOneInput. Always builds NAME_replay, which runs every file of
# CORPUS as a ctest (label "fuzz"); with PAGODA_FUZZ=ON and clang also builds NAME, a real
# libFuzzer binary: ./NAME CORPUS_DIR to fuzz and grow the corpus.
function(pagoda_add_fuzz_target name)
  cmake_parse_arguments(ARG "" "CORPUS" "SOURCES;DEPS" ${ARGN})
  add_executable(${name}_replay ${ARG_SOURCES}
                 ${PROJECT_SOURCE_DIR}/common/testing/fuzz_replay_main.cc)
  target_link_libraries(${name}_replay PRIVATE ${ARG_DEPS} pagoda_options)
  add_test(NAME ${name}_corpus COMMAND ${name}_replay ${ARG_CORPUS})
  set_tests_properties(${name}_corpus PROPERTIES LABELS "unit;fuzz")
  set_property(GLOBAL APPEND PROPERTY PAGODA_UNIT_TEST_TARGETS ${name}_replay)
  if(PAGODA_FUZZ)
    if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
      message(FATAL_ERROR "PAGODA_FUZZ needs clang (configure with CXX=clang++)")
    endif()
    add_executable(${name} ${ARG_SOURCES})
    target_link_libraries(${name} PRIVATE ${ARG_DEPS} pagoda_options)
    target_compile_options(${name} PRIVATE -fsanitize=fuzzer,address,undefined)
    target_link_options(${name} PRIVATE -fsanitize=fuzzer,address,undefined)
  endif()
endfunction()

# pagoda_add_unit_tests_target(): the target `unit_tests` builds every binary that `ctest -L
# unit` runs and nothing else (the sanitizer run of `make test` builds only these). Called once,
# after every folder has added its tests.
function(pagoda_add_unit_tests_target)
  get_property(_targets GLOBAL PROPERTY PAGODA_UNIT_TEST_TARGETS)
  add_custom_target(unit_tests)
  add_dependencies(unit_tests ${_targets})
endfunction()
