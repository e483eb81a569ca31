# Model config (HF config.json), safetensors loading and deterministic dummy weights.
# Included at the end of model/CMakeLists.txt, after pagoda_model is defined.
find_package(Threads REQUIRED)

target_sources(pagoda_model PRIVATE
  ${CMAKE_CURRENT_SOURCE_DIR}/model_config.cc
  ${CMAKE_CURRENT_SOURCE_DIR}/safetensors.cc
  ${CMAKE_CURRENT_SOURCE_DIR}/model_weights.cc
  ${CMAKE_CURRENT_SOURCE_DIR}/dummy_weights.cc)
# MakeDummyWeights fills tensors on all hardware threads.
target_link_libraries(pagoda_model PRIVATE Threads::Threads)

pagoda_add_test(model_weights_test
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/dtype_test.cc
          ${CMAKE_CURRENT_SOURCE_DIR}/model_config_test.cc
          ${CMAKE_CURRENT_SOURCE_DIR}/safetensors_test.cc
          ${CMAKE_CURRENT_SOURCE_DIR}/model_weights_test.cc
          ${CMAKE_CURRENT_SOURCE_DIR}/dummy_weights_test.cc
  DEPS pagoda_model)
target_compile_definitions(model_weights_test PRIVATE
  PAGODA_SHARED_MODELS_DIR="${PROJECT_SOURCE_DIR}/../shared/models")

# safetensors_fuzz_replay replays the committed corpus as the ctest safetensors_fuzz_corpus;
# with PAGODA_FUZZ=ON (clang) safetensors_fuzz is a libFuzzer binary.
pagoda_add_fuzz_target(safetensors_fuzz
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/safetensors_fuzz.cc
  DEPS pagoda_model
  CORPUS ${CMAKE_CURRENT_SOURCE_DIR}/testdata/safetensors_fuzz_corpus)
