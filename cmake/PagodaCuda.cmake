# Decides whether CUDA sources are compiled. Sets PAGODA_WITH_CUDA.
# AUTO compiles them when nvcc is found; ON requires it; OFF never looks.
set(PAGODA_WITH_CUDA OFF)
if(NOT PAGODA_CUDA STREQUAL "OFF")
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      # CUDA 13 has no sm_70, and "native" fails on a machine without a GPU.
      set(CMAKE_CUDA_ARCHITECTURES 80 90)
    endif()
    enable_language(CUDA)
    # CMake 3.25 does not know nvcc's C++20 flag.
    set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
    set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
    set(CMAKE_CUDA_STANDARD 20)
    set(CMAKE_CUDA_STANDARD_REQUIRED ON)
    find_package(CUDAToolkit REQUIRED)
    set(PAGODA_WITH_CUDA ON)
  elseif(PAGODA_CUDA STREQUAL "ON")
    message(FATAL_ERROR "PAGODA_CUDA=ON but no CUDA compiler (nvcc) was found")
  endif()
endif()
message(STATUS "Pagoda: CUDA kernels ${PAGODA_WITH_CUDA} (PAGODA_CUDA=${PAGODA_CUDA})")
