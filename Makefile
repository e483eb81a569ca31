# Pagoda's entry points. `make test` and `make run` install missing Debian packages first.
#
#   make test    build (release + ASan/UBSan unit tests) and run the whole test suite
#   make run     build and start the daemon on the built-in model
#   make build   configure and build into build/
#   make bench   run the micro-benchmarks
#   make format  clang-format the tree;  make tidy  clang-tidy our sources

BUILD_DIR ?= build
ASAN_DIR  ?= build-asan
JOBS      ?= $(shell nproc)
CMAKE_ARGS ?=
CTEST_ARGS ?= --output-on-failure --timeout 600 -j $(JOBS)

.PHONY: deps configure build asan asan-configure asan-unit test run bench format tidy clean

deps:
	@./scripts/install-deps.sh
	@./tests/tokenizer_parity/install.sh
	@./tests/openai_sdk/install.sh

configure: deps
	@cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_ARGS) >/dev/null

build: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS)

asan-configure: deps
	@cmake -S . -B $(ASAN_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPAGODA_SANITIZE=ON \
	  -DPAGODA_CUDA=OFF -DPAGODA_BUILD_BENCHMARKS=OFF $(CMAKE_ARGS) >/dev/null

asan: asan-configure
	@cmake --build $(ASAN_DIR) -j $(JOBS)

# Only what `ctest -L unit` runs (the target unit_tests): the sanitizer run needs no daemon,
# tools or load generator.
asan-unit: asan-configure
	@cmake --build $(ASAN_DIR) -j $(JOBS) --target unit_tests

# The sanitizer run comes first and the release run last, so the output closes on the full
# suite's ctest summary. Any sanitizer report aborts its test (-fno-sanitize-recover), so it
# fails the run. GPU tests run apart and skip cleanly without a device.
# The tests build with warnings as errors (PAGODA_WERROR); `make build` and `make run` do not.
test: CMAKE_ARGS += -DPAGODA_WERROR=ON
test: asan-unit build
	@echo "== unit tests under AddressSanitizer + UndefinedBehaviorSanitizer =="
	@cd $(ASAN_DIR) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest -L unit $(CTEST_ARGS)
	@echo "== GPU tests (skip without a CUDA device) =="
	@cd $(BUILD_DIR) && ctest -L gpu $(CTEST_ARGS) --no-tests=ignore
	@echo "== full test suite =="
	@cd $(BUILD_DIR) && ctest -LE gpu $(CTEST_ARGS)

# Builds only what the daemon needs, then serves the built-in model on 127.0.0.1:50051 (gRPC)
# and :9400 (/metrics) until Ctrl-C. Extra flags: make run RUN_ARGS="--model dummy:llama-110m".
RUN_ARGS ?=
run: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS) --target pagodad pagoda-cli
	@exec $(BUILD_DIR)/server/pagodad $(RUN_ARGS)

bench: build
	@$(BUILD_DIR)/block_manager/kv_cache_manager_benchmark
	@$(BUILD_DIR)/engine/engine_benchmark --benchmark_filter=Overhead

format:
	@git ls-files '*.h' '*.cc' '*.cu' '*.cuh' | xargs clang-format -i

tidy: configure
	@git ls-files '*.cc' | grep -v '_test.cc$$' | xargs clang-tidy -p $(BUILD_DIR) --quiet

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR)
