#!/usr/bin/env bash
# Everything a short loan of a GPU machine should run, in one go, each step under its own time
# limit, all output under OUT_DIR (issue 26).
#
#   scripts/make_gpu_session.sh                      # here: build, pack into build-cuda/gpu-session
#   scripts/gpu_session.sh SESSION_DIR OUT_DIR [STEPS]   # there (or here, as a dry run)
#
# SESSION_DIR holds tests/ (kernels/cuda/package_gpu_tests.sh) and pagoda/
# (scripts/package_pagodad.sh, with pagoda-bench). STEPS is a comma-separated subset of
#   tests      the gpu-labelled tests: kernels against the CPU reference, the runner against the
#              CPU runner, CUDA graphs against eager
#   memcheck   compute-sanitizer memcheck on the kernel tests
#   kernels    the attention benchmark against the read-bandwidth ceiling, and PyTorch SDPA
#   e2e        pagodad --device cuda on dummy llama-3.1-8b: health, greedy tokens equal to the
#              CPU runner's, pagoda-bench at c=1/64/256 (128/128), then 1000/1000 at c=256
#   engine     engine_benchmark's offline throughput on the CUDA runner (graphs and eager)
#   profile    ncu kernel times of decode steps, by kernel (where ncu runs)
# (default: tests,kernels,e2e,memcheck), run in the order given. BUDGET_S (default 480) bounds
# the whole run: each step's limit is cut to what is left, and a step with under 20 s left is
# skipped and listed as such. Without a CUDA device every GPU step says so and is skipped; the
# script exits 0 unless a step that ran failed.
set -uo pipefail

SESSION=$(cd "${1:?usage: gpu_session.sh SESSION_DIR OUT_DIR [STEPS]}" && pwd)
OUT=${2:?usage: gpu_session.sh SESSION_DIR OUT_DIR [STEPS]}
STEPS=${3:-tests,kernels,e2e,memcheck}
BUDGET_S=${BUDGET_S:-480}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
RESULTS=$OUT/results  # packed into results.tgz at the end
mkdir -p "$RESULTS"
T0=$(date +%s)
failed=()
skipped=()

log() { echo "[gpu_session +$(($(date +%s) - T0))s] $*"; }

# run_step NAME LIMIT_S COMMAND...: runs COMMAND under a time limit, its output to the terminal
# and to results/NAME.log; records a failure. (No pipe around it: `failed` must stay ours.)
run_step() {
  local name=$1 limit=$2
  shift 2
  local left=$((BUDGET_S - ($(date +%s) - T0) - 10))
  if ((left < 20)); then
    log "SKIP $name: ${left}s of the budget left"
    skipped+=("$name")
    return 1
  fi
  ((limit <= left)) || limit=$left
  log "BEGIN $name (limit ${limit}s): $*"
  local start rc
  start=$(date +%s)
  timeout -k 10 "$limit" "$@" > >(tee "$RESULTS/$name.log") 2>&1
  rc=$?
  sleep 0.2  # let tee finish
  log "END $name rc=$rc in $(($(date +%s) - start))s"
  ((rc == 0)) || failed+=("$name(rc=$rc)")
  return $rc
}

has_gpu=0
if command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
  has_gpu=1
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem \
    --format=csv | tee "$RESULTS/gpu.csv"
else
  log "no CUDA device (nvidia-smi finds none): the GPU steps are skipped"
fi
uname -a
nproc
free -g 2>/dev/null | head -2

TESTS=$SESSION/tests
PAGODA=$SESSION/pagoda
ready=0
[[ -x $TESTS/run_gpu_tests.sh && -x $PAGODA/bin/pagodad.sh ]] && ready=1
((ready)) || log "SESSION_DIR lacks tests/run_gpu_tests.sh or pagoda/bin/pagodad.sh"

# ---- 1. tests -------------------------------------------------------------------------------
step_tests() {
  run_step tests 240 "$TESTS/run_gpu_tests.sh"
}

# ---- 2. memcheck (the kernels; the runner's own test is left to the tests step) --------------
step_memcheck() {
  if ((has_gpu)); then
    run_step memcheck 180 env PAGODA_GPU_TESTS="cuda_buffer_test cuda_elementwise_test \
cuda_paged_attention_test" "$TESTS/run_gpu_tests.sh" --memcheck > /dev/null
    grep -E '^== |FAILED|ERROR SUMMARY|PASSED|SKIPPED' "$RESULTS/memcheck.log" | tail -n 40
  else
    log "memcheck skipped: no device"
  fi
}

# ---- 3. kernel benchmarks ---------------------------------------------------------------------
step_kernels() {
  run_step kernels 180 "$TESTS/run_gpu_tests.sh" --bench-kernels
  cp "$TESTS"/bench-results/*.json "$RESULTS/" 2>/dev/null
}

# ---- 4. end to end: pagodad on dummy llama-3.1-8b ---------------------------------------------
CLI=$PAGODA/bin/pagoda-cli.sh
BENCH=$PAGODA/bin/pagoda-bench.sh
PORT=50151
METRICS_PORT=9451
daemon_pid=""

# start_daemon NAME FLAGS...: starts pagodad in the background, waits until it answers.
start_daemon() {
  local name=$1
  shift
  log "starting pagodad ($name): $*"
  "$PAGODA/bin/pagodad.sh" --port $PORT --metrics-port $METRICS_PORT "$@" \
    > "$RESULTS/pagodad-$name.log" 2>&1 &
  daemon_pid=$!
  while (($(date +%s) - T0 < BUDGET_S - 30)); do
    if ! kill -0 "$daemon_pid" 2>/dev/null; then
      log "pagodad ($name) exited:"
      tail -n 20 "$RESULTS/pagodad-$name.log"
      daemon_pid=""
      return 1
    fi
    if "$CLI" --address 127.0.0.1:$PORT --timeout 2 model-info > /dev/null 2>&1; then
      log "pagodad ($name) is serving"
      grep -iE 'kv|pool|block|concurren|memory|graph' "$RESULTS/pagodad-$name.log" | head -n 20
      return 0
    fi
    sleep 1
  done
  log "pagodad ($name) did not answer within the budget"
  skipped+=("pagodad-$name")
  stop_daemon
  return 1
}

stop_daemon() {
  [[ -n $daemon_pid ]] || return 0
  kill -TERM "$daemon_pid" 2>/dev/null
  for _ in $(seq 1 30); do
    kill -0 "$daemon_pid" 2>/dev/null || break
    sleep 1
  done
  kill -KILL "$daemon_pid" 2>/dev/null
  wait "$daemon_pid" 2>/dev/null
  daemon_pid=""
}
trap stop_daemon EXIT

# The same greedy request to whichever daemon is up; the output token ids go to FILE.
PROMPT="In the beginning God created the heaven and the earth."
# greedy_tokens NAME: the ids go to results/NAME.txt, the summary to results/NAME.log.
greedy_tokens() {
  run_step "$1" 150 bash -c '"$0" --address "$1" --timeout 140 generate "$2" --max-tokens 20 \
    --temperature 0 --ignore-eos --no-stream --print-token-ids > "$3"' \
    "$CLI" "127.0.0.1:$PORT" "$PROMPT" "$RESULTS/$1.txt"
}

# bench_at NAME CONCURRENCY PROMPTS IN OUT MAX_S
bench_at() {
  run_step "bench-$1" "$(($6 + 60))" "$BENCH" --address 127.0.0.1:$PORT \
    --metrics-address 127.0.0.1:$METRICS_PORT --max-concurrency "$2" --num-prompts "$3" \
    --input-len "$4" --output-len "$5" --ignore-eos --max-duration "$6" --no-progress \
    --result-json "$RESULTS/bench-$1.json"
}

# E2E_MODEL and E2E_DEVICE=cpu let a machine without a GPU rehearse this step
# (E2E_MODEL=dummy:tiny E2E_DEVICE=cpu E2E_MAX_MODEL_LEN=512 scripts/gpu_session.sh ... e2e).
E2E_MODEL=${E2E_MODEL:-dummy:llama-3.1-8b}
E2E_DEVICE=${E2E_DEVICE:-cuda}
E2E_MAX_MODEL_LEN=${E2E_MAX_MODEL_LEN:-4096}
device_flags=(--device cuda --gpu-memory-utilization 0.9)
[[ $E2E_DEVICE == cpu ]] && device_flags=(--device cpu --kv-cache-memory 1GiB)
step_e2e() {
  if ((!has_gpu)) && [[ $E2E_DEVICE != cpu ]]; then
    log "e2e skipped: no device"
  else
    # The CPU runner's greedy tokens on the same dummy model (same seed), as the reference.
    if start_daemon cpu --model "$E2E_MODEL" --device cpu --max-model-len 512 \
      --kv-cache-memory 1GiB --max-num-seqs 4; then
      greedy_tokens greedy-cpu
      stop_daemon
    else
      failed+=("pagodad-cpu")
    fi
    if start_daemon "served-$E2E_DEVICE" --model "$E2E_MODEL" "${device_flags[@]}" \
      --max-model-len "$E2E_MAX_MODEL_LEN" --max-num-seqs 256 --max-num-batched-tokens 8192; then
      greedy_tokens "greedy-served-$E2E_DEVICE"
      python3 - "$RESULTS/greedy-cpu.txt" "$RESULTS/greedy-served-$E2E_DEVICE.txt" > "$RESULTS/greedy-compare.txt" <<'PY' 
import sys
a, b = (open(p).read().split() for p in sys.argv[1:3])
same = 0
while same < min(len(a), len(b)) and a[same] == b[same]:
    same += 1
print(f"cpu:    {' '.join(a)}\nserved: {' '.join(b)}\nequal prefix: {same} of {len(a)} tokens "
      f"({'PASS' if same >= 16 else 'FAIL'}: at least 16 must agree)")
sys.exit(0 if same >= 16 else 1)
PY
      (($? == 0)) || failed+=("greedy-compare")
      cat "$RESULTS/greedy-compare.txt"
      bench_at c1 1 8 128 128 60
      bench_at c64 64 256 128 128 30
      bench_at c256 256 1024 128 128 40
      ((E2E_MAX_MODEL_LEN >= 2000)) && bench_at c256-1k 256 512 1000 1000 60
      curl -s "127.0.0.1:$METRICS_PORT/metrics" > "$RESULTS/metrics-after.txt" 2>/dev/null
      stop_daemon
    else
      failed+=("pagodad-served-$E2E_DEVICE")
    fi
  fi
}

# ---- 5. the engine's offline throughput ---------------------------------------------------------
step_engine() {
  run_step engine 300 "$TESTS/run_gpu_tests.sh" --bench-engine
  cp "$TESTS"/bench-results/engine_benchmark.json "$RESULTS/" 2>/dev/null
}

# ---- 6. where a decode step's time goes (ncu) ---------------------------------------------------
step_profile() {
  if ((has_gpu)) && command -v ncu >/dev/null; then
    run_step profile 240 "$TESTS/run_gpu_tests.sh" --profile-decode "$RESULTS/ncu-decode.csv"
  else
    log "profile skipped: no device or no ncu"
  fi
}

if ((ready)); then
  IFS=, read -r -a ordered <<< "$STEPS"
  for step in "${ordered[@]}"; do
    if declare -F "step_$step" > /dev/null; then
      "step_$step"
    else
      log "unknown step '$step'"
      failed+=("$step(unknown)")
    fi
  done
fi
log "failed steps: ${failed[*]:-none}; skipped for lack of time: ${skipped[*]:-none}"
tar -C "$OUT" -czf "$OUT/results.tgz" results
((${#failed[@]} == 0))
