#!/usr/bin/env bash
# Builds, here, everything scripts/gpu_session.sh runs on a GPU machine, and packs it into one
# folder small enough to carry there (the device tool takes 64 MiB with the working tree):
#
#   scripts/make_gpu_session.sh [BUILD_DIR] [SESSION_DIR]
#       BUILD_DIR defaults to build-cuda (configured for sm_90 with CUDA if it is not yet),
#       SESSION_DIR to BUILD_DIR/gpu-session: tests/ (kernels/cuda/package_gpu_tests.sh),
#       pagoda/ (scripts/package_pagodad.sh, with pagoda-bench), and both packs' shared
#       libraries once, in lib/ (tests/lib and pagoda/lib link to it).
#       and SESSION_DIR.tar.xz, the same folder in one file to carry.
#   scripts/gpu_session.sh SESSION_DIR OUT_DIR       (there; here it is a dry run)
set -euo pipefail

SOURCE_DIR=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${1:-build-cuda}
SESSION_DIR=${2:-$BUILD_DIR/gpu-session}
TARGETS=(cuda_buffer_test cuda_paged_attention_test cuda_elementwise_test cuda_gemm_test
         cuda_paged_attention_plan_test cuda_kernel_emulation_test cuda_paged_attention_benchmark
         cuda_model_runner_test engine_benchmark pagodad pagoda-cli pagoda-bench)

if [[ ! -f $BUILD_DIR/build.ninja ]]; then
  cmake -S "$SOURCE_DIR" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DPAGODA_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90
fi
ninja -C "$BUILD_DIR" "${TARGETS[@]}"

rm -rf "$SESSION_DIR"
mkdir -p "$SESSION_DIR/lib"
"$SOURCE_DIR/kernels/cuda/package_gpu_tests.sh" "$BUILD_DIR" "$SESSION_DIR/tests"
"$SOURCE_DIR/scripts/package_pagodad.sh" "$BUILD_DIR" "$SESSION_DIR/pagoda"
# One copy of each library: the two packs share most of theirs (Abseil, protobuf, ICU, ...).
for pack in tests pagoda; do
  for lib in "$SESSION_DIR/$pack"/lib/*; do
    [[ -e $SESSION_DIR/lib/$(basename "$lib") ]] || mv "$lib" "$SESSION_DIR/lib/"
  done
  rm -rf "$SESSION_DIR/$pack/lib"
  ln -s ../lib "$SESSION_DIR/$pack/lib"
done
# One copy of the built-in model too.
rm -rf "$SESSION_DIR/tests/models"
ln -s ../pagoda/share/pagoda/models "$SESSION_DIR/tests/models"
du -shL "$SESSION_DIR"
du -sh "$SESSION_DIR"
# What the device tool carries, with the working tree, in 64 MiB: xz (the GPU machine has no
# zstd for sure; it unpacks with tar -xJf, or python3 -m tarfile -e where xz is missing). gzip
# made 51 MB of it once the 8-bit KV kernels came, xz makes about half.
rm -f "$SESSION_DIR.tgz"
tar -C "$(dirname "$SESSION_DIR")" -cf - "$(basename "$SESSION_DIR")" | xz -T0 -6 \
  > "$SESSION_DIR.tar.xz"
ls -l "$SESSION_DIR.tar.xz"
