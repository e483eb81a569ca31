#!/usr/bin/env bash
# Packs the CUDA kernels' test and benchmark binaries, with the shared libraries they need that a
# GPU machine may lack (Abseil), into one directory with a runner script, so that they run on a
# GPU machine without the Debian packages or a build tree.
#
#   kernels/cuda/package_gpu_tests.sh [BUILD_DIR] [OUT_DIR]
#       BUILD_DIR defaults to build-cuda, OUT_DIR to BUILD_DIR/gpu-package.
#   OUT_DIR/run_gpu_tests.sh [--memcheck|--racecheck|--bench]   (on the GPU machine)
#       --bench also compares with PyTorch's SDPA (bench/cuda/torch_sdpa_compare.py, copied into
#       OUT_DIR) when python3 there can import torch; results in OUT_DIR/bench-results.
#
# Not packed: glibc, libstdc++ and libgcc_s (the binaries need glibc >= 2.34 and GLIBCXX_3.4.29,
# e.g. Ubuntu 22.04 or newer), the CUDA driver, and cuBLASLt (500 MB; cuda_gemm_test alone needs
# it, and the runner looks for libcublasLt.so.13 in a CUDA 13 toolkit or a pip "nvidia" wheel:
# scripts/find_cublaslt.sh, copied into OUT_DIR).
# The CUDA runtime is linked statically. Debug info is stripped; device line info stays.
set -euo pipefail

BUILD_DIR=${1:-build-cuda}
OUT_DIR=${2:-$BUILD_DIR/gpu-package}
BINARIES=(cuda_buffer_test cuda_paged_attention_test cuda_elementwise_test cuda_gemm_test
          cuda_paged_attention_plan_test cuda_kernel_emulation_test cuda_paged_attention_benchmark)

rm -rf "$OUT_DIR"
mkdir -p "$OUT_DIR/bin" "$OUT_DIR/lib"
for name in "${BINARIES[@]}"; do
  path="$BUILD_DIR/kernels/$name"
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
cp "$(dirname "$0")/../../scripts/find_cublaslt.sh" "$OUT_DIR/"
# Our attention against PyTorch's SDPA, run by run_gpu_tests.sh --bench.
cp "$(dirname "$0")/../../bench/cuda/torch_sdpa_compare.py" "$OUT_DIR/"
cat > "$OUT_DIR/run_gpu_tests.sh" <<'RUNNER'
#!/usr/bin/env bash
# Runs the packed CUDA tests (default), the tests under compute-sanitizer (--memcheck,
# --racecheck), or the benchmarks (--bench). Exit status: non-zero if any run failed.
set -uo pipefail
DIR=$(cd "$(dirname "$0")" && pwd)
MODE=${1:-tests}

# cuBLASLt (for cuda_gemm_test only): a CUDA 13 toolkit or a pip nvidia wheel.
source "$DIR/find_cublaslt.sh"
# python3 (torch) runs with the caller's library path, not the packed libraries.
CALLER_LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}
export LD_LIBRARY_PATH="$DIR/lib${CUBLASLT_DIR:+:$CUBLASLT_DIR}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

TESTS=(cuda_paged_attention_plan_test cuda_kernel_emulation_test cuda_buffer_test
       cuda_elementwise_test cuda_paged_attention_test cuda_gemm_test)
# Under the sanitizers: everything but the 32k-token cases (slow there, same code paths).
SANITIZER_FILTER='-*32k*'
SANITIZER=$(command -v compute-sanitizer || echo "${CUDA_HOME:-/usr/local/cuda}/bin/compute-sanitizer")

failed=0
run() {
  echo "== $*"
  "$@" || { echo "FAILED: $*"; failed=1; }
}
for t in "${TESTS[@]}"; do
  if [[ $t == cuda_gemm_test && -z $CUBLASLT_DIR ]]; then
    echo "== $t skipped: libcublasLt.so.13 not found (set CUDA_HOME or LD_LIBRARY_PATH)"
    continue
  fi
  case "$MODE" in
    tests) run "$DIR/bin/$t" ;;
    --memcheck) run "$SANITIZER" --tool memcheck --leak-check full --error-exitcode 1 \
                  "$DIR/bin/$t" --gtest_filter="$SANITIZER_FILTER" ;;
    --racecheck) run "$SANITIZER" --tool racecheck --error-exitcode 1 \
                   "$DIR/bin/$t" --gtest_filter="$SANITIZER_FILTER" ;;
    --bench) ;;
    *) echo "usage: $0 [--memcheck|--racecheck|--bench]"; exit 2 ;;
  esac
done
if [[ $MODE == --bench ]]; then
  RESULTS=$DIR/bench-results
  mkdir -p "$RESULTS"
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
exit $failed
RUNNER
chmod +x "$OUT_DIR/run_gpu_tests.sh"
du -sh "$OUT_DIR"
