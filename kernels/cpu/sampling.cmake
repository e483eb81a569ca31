# The sampler (kernels/cpu/sampler.h), included by kernels/CMakeLists.txt into pagoda_kernels.
target_sources(pagoda_kernels PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/cpu/sampler.cc)
# What sampler.h and sampler.cc use; repeating a dependency pagoda_kernels already has is harmless.
target_link_libraries(pagoda_kernels PUBLIC pagoda_common absl::flat_hash_map absl::flat_hash_set
                      absl::span absl::status absl::str_format)
pagoda_add_test(sampler_test SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/cpu/sampler_test.cc DEPS pagoda_kernels)
pagoda_add_benchmark(sampler_benchmark SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/cpu/sampler_benchmark.cc DEPS pagoda_kernels)
# sampler_fuzz_replay replays the committed corpus as the ctest sampler_fuzz_corpus (label unit);
# with PAGODA_FUZZ=ON (clang) sampler_fuzz is a libFuzzer binary.
pagoda_add_fuzz_target(sampler_fuzz SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/cpu/sampler_fuzz.cc
                       DEPS pagoda_kernels
                       CORPUS ${CMAKE_CURRENT_SOURCE_DIR}/cpu/testdata/sampler_fuzz_corpus)
