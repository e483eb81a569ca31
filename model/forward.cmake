# The Llama-family forward pass over the paged KV cache (model/llama_model.h), on the CPU
# kernels. Included at the end of model/CMakeLists.txt, after pagoda_model is defined.
target_sources(pagoda_model PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/llama_model.cc)
target_link_libraries(pagoda_model PUBLIC pagoda_kernels)

pagoda_add_test(llama_model_test SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/llama_model_test.cc
                DEPS pagoda_model)

pagoda_add_benchmark(llama_model_benchmark
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/llama_model_benchmark.cc DEPS pagoda_model)

# Against the independent NumPy reference (needs /usr/bin/python3 with numpy; skips without).
pagoda_add_test(llama_reference_test SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/llama_reference_test.cc
                DEPS pagoda_model)
target_compile_definitions(llama_reference_test PRIVATE
  PAGODA_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
  PAGODA_SHARED_MODELS_DIR="${PROJECT_SOURCE_DIR}/../shared/models")
