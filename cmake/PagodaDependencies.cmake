# Every third-party dependency comes from a Debian package (scripts/install-deps.sh).
find_package(absl CONFIG REQUIRED)
find_package(Protobuf REQUIRED)  # module mode: Debian ships no config file
find_package(gRPC CONFIG REQUIRED)
find_package(GTest REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(XXHASH REQUIRED IMPORTED_TARGET libxxhash)
if(PAGODA_BUILD_BENCHMARKS)
  find_package(benchmark CONFIG REQUIRED)
endif()
include(GoogleTest)
