#!/usr/bin/env bash
# Packs the CUDA kernels' and the CUDA model runner's test and benchmark binaries, with the shared
# libraries they need that a GPU machine may lack (Abseil, ICU, pcre2, ...), and the built-in
# model (models/pagoda-kjv, which cuda_model_runner_test reads), into one directory with a runner
# script, so that they run on a GPU machine without the Debian packages or a build tree.
#
#   kernels/cuda/package_gpu_tests.sh [BUILD_DIR] [OUT_DIR]
#       BUILD_DIR defaults to build-cuda, OUT_DIR to BUILD_DIR/gpu-package. Build the binaries
#       first (kernels/cuda/README.md lists the targets): they are packed as they are.
#   OUT_DIR/run_gpu_tests.sh [--memcheck|--racecheck|--bench|--bench-kernels|--bench-engine|
#                             --profile-decode CSV]   (on the GPU machine)
#       --bench-kernels runs the attention benchmark and compares it with PyTorch's SDPA
#       (bench/cuda/torch_sdpa_compare.py, copied into OUT_DIR) when python3 there can import
#       torch; --bench-engine runs the engine's offline-throughput benchmarks on the CUDA runner
#       (engine_benchmark's BM_CudaOfflineThroughput); --bench both. JSON results in
#       OUT_DIR/bench-results. --profile-decode times every kernel of a few llama-3.1-8b decode
#       steps at 256 requests with Nsight Compute (ncu) into CSV.
#       PAGODA_GPU_TESTS="a b" limits the tests (and sanitizer runs) to those binaries.
#
# Not packed: glibc, libstdc++ and libgcc_s (the binaries need glibc >= 2.34 and GLIBCXX_3.4.29,
# e.g. Ubuntu 22.04 or newer), the CUDA driver, and cuBLASLt (500 MB; cuda_gemm_test,
# cuda_model_runner_test and engine_benchmark need it, and the runner looks for libcublasLt.so.13
# in a CUDA 13 toolkit or a pip "nvidia" wheel: scripts/find_cublaslt.sh, copied into OUT_DIR).
# The CUDA runtime is linked statically. Debug info is stripped; device line info stays.
set -euo pipefail

BUILD_DIR=${1:-build-cuda}
OUT_DIR=${2:-$BUILD_DIR/gpu-package}
SOURCE_DIR=$(cd "$(dirname "$0")/../.." && pwd)
# Paths under BUILD_DIR; each is packed as bin/<its file name>.
BINARIES=(kernels/cuda_buffer_test kernels/cuda_paged_attention_test
          kernels/cuda_elementwise_test kernels/cuda_gemm_test
          kernels/cuda_paged_attention_plan_test kernels/cuda_kernel_emulation_test
          kernels/cuda_paged_attention_benchmark engine/cuda_model_runner_test
          engine/engine_benchmark)

rm -rf "$OUT_DIR"
mkdir -p "$OUT_DIR/bin" "$OUT_DIR/lib"
for binary in "${BINARIES[@]}"; do
  path="$BUILD_DIR/$binary"
  name=$(basename "$binary")
  if [[ ! -x "$path" ]]; then
    echo "missing $path: build it first (ninja -C $BUILD_DIR $name)" >&2
    exit 1
  fi
  cp "$path" "$OUT_DIR/bin/"
  strip --strip-debug "$OUT_DIR/bin/$name"
  # Every resolved dependency except glibc's, the C++ runtime's and CUDA's own.
  ldd "$path" | awk '/=> \// {print $3}' | while read -r lib; do
    case "$(basename "$lib")" in
      libc.so* | libm.so* | libpthread.so* | libdl.so* | librt.so* | ld-linux* | \
        libstdc++.so* | libgcc_s.so* | libcuda.so* | libcublas*) ;;
      *) cp -n -L "$lib" "$OUT_DIR/lib/" ;;
    esac
  done
done

# The runner's search for cuBLASLt, shared with scripts/package_pagodad.sh.
cp "$SOURCE_DIR/scripts/find_cublaslt.sh" "$OUT_DIR/"
# Our attention against PyTorch's SDPA, run by run_gpu_tests.sh --bench.
cp "$SOURCE_DIR/bench/cuda/torch_sdpa_compare.py" "$OUT_DIR/"
# The built-in model (7 MB): cuda_model_runner_test looks for it at its source path, then at
# models/pagoda-kjv under the current directory, which the runner makes OUT_DIR.
mkdir -p "$OUT_DIR/models"
cp -r "$SOURCE_DIR/models/pagoda-kjv" "$OUT_DIR/models/"
cat > "$OUT_DIR/run_gpu_tests.sh" <<'RUNNER'
#!/usr/bin/env bash
# Runs the packed CUDA tests (default), the tests under compute-sanitizer (--memcheck,
# --racecheck), or the benchmarks (--bench). Exit status: non-zero if any run failed.
set -uo pipefail
DIR=$(cd "$(dirname "$0")" && pwd)
MODE=${1:-tests}
# cuda_model_runner_test finds the built-in model at models/pagoda-kjv from here.
cd "$DIR" || exit 1

# cuBLASLt (cuda_gemm_test, cuda_model_runner_test, engine_benchmark): a CUDA 13 toolkit or a
# pip nvidia wheel.
source "$DIR/find_cublaslt.sh"
# python3 (torch) runs with the caller's library path, not the packed libraries.
CALLER_LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}
export LD_LIBRARY_PATH="$DIR/lib${CUBLASLT_DIR:+:$CUBLASLT_DIR}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

TESTS=(cuda_paged_attention_plan_test cuda_kernel_emulation_test cuda_buffer_test
       cuda_elementwise_test cuda_paged_attention_test cuda_gemm_test cuda_model_runner_test)
if [[ -n ${PAGODA_GPU_TESTS:-} ]]; then read -r -a TESTS <<< "$PAGODA_GPU_TESTS"; fi
# Under the sanitizers: everything but the 32k-token cases (slow there, same code paths), and for
# the model runner all but the whole-engine test (hundreds of engine steps; the runner's other
# tests cover the same kernels and buffers). Racecheck skips the runner: it finds shared-memory
# races inside kernels, which the kernel tests check on more shapes.
sanitizer_filter() {
  case "$1" in
    cuda_model_runner_test) echo '-*EngineServesConcurrentRequestsOnTheGpu*' ;;
    *) echo '-*32k*' ;;
  esac
}
SANITIZER=$(command -v compute-sanitizer || echo "${CUDA_HOME:-/usr/local/cuda}/bin/compute-sanitizer")
# Whether a packed binary links cuBLASLt and it was not found.
lacks_cublaslt() { [[ $(ldd "$DIR/bin/$1") == *'libcublasLt.so.13 => not found'* ]]; }

failed=0
run() {
  echo "== $*"
  "$@" || { echo "FAILED: $*"; failed=1; }
}
case "$MODE" in
  tests | --memcheck | --racecheck) ;;
  *) TESTS=() ;;
esac
for t in "${TESTS[@]}"; do
  if lacks_cublaslt "$t"; then
    echo "== $t skipped: libcublasLt.so.13 not found (set CUDA_HOME or LD_LIBRARY_PATH)"
    continue
  fi
  case "$MODE" in
    tests) run "$DIR/bin/$t" ;;
    --memcheck) run "$SANITIZER" --tool memcheck --leak-check full --error-exitcode 1 \
                  "$DIR/bin/$t" --gtest_filter="$(sanitizer_filter "$t")" ;;
    --racecheck)
      if [[ $t == cuda_model_runner_test ]]; then
        echo "== $t skipped under racecheck (its kernels are racechecked by the kernel tests)"
      else
        run "$SANITIZER" --tool racecheck --error-exitcode 1 \
          "$DIR/bin/$t" --gtest_filter="$(sanitizer_filter "$t")"
      fi ;;
  esac
done
RESULTS=$DIR/bench-results
mkdir -p "$RESULTS"
case "$MODE" in
  tests | --memcheck | --racecheck | --bench | --bench-kernels | --bench-engine) ;;
  --profile-decode) [[ -n ${2:-} ]] || { echo "usage: $0 --profile-decode CSV"; exit 2; } ;;
  *) echo "usage: $0 [--memcheck|--racecheck|--bench|--bench-kernels|--bench-engine|" \
       "--profile-decode CSV]"; exit 2 ;;
esac
if [[ $MODE == --bench || $MODE == --bench-kernels ]]; then
  rm -f "$RESULTS/cuda_paged_attention_benchmark.json"
  run "$DIR/bin/cuda_paged_attention_benchmark" --benchmark_counters_tabular=true \
    --benchmark_out="$RESULTS/cuda_paged_attention_benchmark.json" --benchmark_out_format=json
  # PyTorch's SDPA on the same shapes, set against the run above (not run a second time).
  if ! LD_LIBRARY_PATH=$CALLER_LD_LIBRARY_PATH python3 -c 'import torch' 2>/dev/null; then
    echo "== torch_sdpa_compare.py skipped: python3 cannot import torch"
  elif [[ ! -s $RESULTS/cuda_paged_attention_benchmark.json ]]; then
    echo "== torch_sdpa_compare.py skipped: the benchmark wrote no results (no device?)"
  else
    run env LD_LIBRARY_PATH="$CALLER_LD_LIBRARY_PATH" python3 "$DIR/torch_sdpa_compare.py" \
      --ours-json "$RESULTS/cuda_paged_attention_benchmark.json" \
      --json-out "$RESULTS/torch_sdpa_compare.json"
  fi
fi
if [[ $MODE == --bench || $MODE == --bench-engine ]]; then
  # Offline throughput of the whole engine on the CUDA runner: llama-110m, llama-3.2-1b and
  # llama-3.1-8b (dummy weights; the 8B's are 16 GB, drawn on the host), with and without CUDA
  # graphs, at max_num_seqs 1 to 256, two timed iterations each after a short warm-up; each
  # engine takes gpu_memory_utilization 0.9 of the device, one at a time. Expected to take a few
  # minutes (not yet timed). Without a device each case reports "no CUDA device" and it exits 0.
  rm -f "$RESULTS/engine_benchmark.json"
  if lacks_cublaslt engine_benchmark; then
    echo "== engine_benchmark skipped: libcublasLt.so.13 not found (set CUDA_HOME or" \
      "LD_LIBRARY_PATH)"
  else
    # PAGODA_ENGINE_BENCH_FILTER narrows it (a regex over the names above).
    run "$DIR/bin/engine_benchmark" \
      --benchmark_filter="${PAGODA_ENGINE_BENCH_FILTER:-^BM_CudaOfflineThroughput/}" \
      --benchmark_counters_tabular=true \
      --benchmark_out="$RESULTS/engine_benchmark.json" --benchmark_out_format=json
  fi
fi
if [[ $MODE == --profile-decode ]]; then
  # llama-3.1-8b, eager (ncu sees each launch), 256 requests of 128 in / 128 out: the warm-up and
  # the first iteration's prefill come first (some 35 steps of about 370 launches, then decodes
  # of all 256), so 20000 launches are skipped and the next 1200 (about three decode steps) are
  # timed, clocks left as they are.
  NCU=$(command -v ncu || echo "${CUDA_HOME:-/usr/local/cuda}/bin/ncu")
  run "$NCU" --clock-control none --metrics gpu__time_duration.sum --launch-skip 20000 \
    --launch-count 1200 --csv --page raw --log-file "$2" --print-units base \
    "$DIR/bin/engine_benchmark" \
    --benchmark_filter='^BM_CudaOfflineThroughput/llama-3.1-8b/eager/max_num_seqs:256/' \
    > "$2.benchmark-log"
fi
exit $failed
RUNNER
chmod +x "$OUT_DIR/run_gpu_tests.sh"
du -sh "$OUT_DIR"
