#!/usr/bin/env bash
# optbench's first run on a GPU, in under ten minutes on one H200 (stage time limits sum to 560 s), printing
# what it measured. Not yet run on a GPU: no session so far was lent one.
#
#   here (network):      bash .ci/gpu-prepare.sh               # wheels -> .whl/, corpus -> .gpu-data/
#   on the GPU machine:  set -o pipefail; bash .ci/gpu-check.sh [STAGE ...] 2>&1 | tee "$OUT/gpu-check.log"
#                        (carry .whl and .gpu-data; default: every stage; files land in $OUT/gpu-check/)
#
# Stages, each under its own `timeout`, each printing a summary even when the next one fails:
#   env      torch, CUDA, driver, the GPU's identity and the peak-table entry it matches (or none)
#   tests    `pytest -m device`: the device logic (tests/test_devices.py, and the device tests in the files
#            of the modules they test: kernels, workers, executor, train), with the one test that trains on
#            the real GPU
#   kernels  `optbench kernels --device cuda`: every kernel checked against its CPU float64 reference
#            (defect 1), timed with CUDA events over many launches per synchronize (5), memory-bound inputs
#            cycled past L2 (5), % of the exact GPU's peak (4); exits non-zero if nothing was timed (8)
#   train    `optbench train suites/nanogpt_gpu.toml`: nanoGPT's shakespeare_char GPU recipe, base preset, bf16
#            autocast, 5000 steps; nanoGPT's published best validation loss is 1.4697
#   suite    `optbench run suites/gpu_workers.toml --workers 2 --workers-per-gpu 2`: `auto` resolved to cuda
#            (7), two spawned workers given cuda:0 with set_device (2, 9), their sharing recorded (2), fused
#            Adagrad only where torch has it (9), EMA runs (3)
#
# CUDA pitfalls this script avoids, line by line:
# - a fresh results folder per run (OPTBENCH_RESULTS_DIR, outside $OUT so the few files that come back are
#   the ones below): nothing copied from an older store or a CPU run;
# - PYTHONUNBUFFERED: output reaches the caller even when a stage is killed at its limit;
# - no `| tail` after a timed command (a kill takes the whole pipeline's output); long logs go to files;
# - every figure printed is read back from the JSON the stage wrote, never typed in;
# - CUDA_VISIBLE_DEVICES is left as the machine gives it; set_device picks each worker's GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
CHECK="${GPU_CHECK_DIR:-${OUT:-results}/gpu-check}"
rm -rf "$CHECK" && mkdir -p "$CHECK"
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export OPTBENCH_RESULTS_DIR=/tmp/optbench-gpu-check
rm -rf "$OPTBENCH_RESULTS_DIR"
export OPTBENCH_DATA_DIR="${OPTBENCH_DATA_DIR:-$PWD/.gpu-data}"
if ! "$PY" -c "import optuna, lion_pytorch, schedulefree, cmaes" 2>/dev/null; then  # see .ci/gpu-prepare.sh
    compgen -G ".whl/*.whl" >/dev/null || { echo "missing packages: run .ci/gpu-prepare.sh first, carry .whl"; exit 2; }
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/optbench-site \
        .whl/*.whl || exit 2
    export PYTHONPATH="$PYTHONPATH:/tmp/optbench-site"
fi
STAGES=("$@")
[ ${#STAGES[@]} -gt 0 ] || STAGES=(env tests kernels train suite)
status=0

stage_env() {
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader || true
    "$PY" - <<'PY'
import torch
from bench import devices, kernels
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, "
      f"{devices.cuda_count()} GPU(s)")
if devices.cuda_count() == 0:
    raise SystemExit(f"no GPU: {devices.why_no_cuda()}")
for i in range(devices.cuda_count()):
    name, sms, mib = kernels.gpu_identity(f"cuda:{i}")
    entry = kernels.peak_entry(f"cuda:{i}")
    print(f"cuda:{i}: {name}, {sms} SMs, {mib} MiB, L2 {kernels.l2_bytes(f'cuda:{i}') / 2**20:.0f} MiB, "
          f"peak entry: {entry if entry else 'none: add this identity to bench/kernels.py GPU_PEAKS'}")
print("precision defaults:", devices.precision("cuda", "bf16", 64, 6))
PY
}

stage_tests() {
    timeout 60 "$PY" -m pytest tests -m device -q -rs -p no:cacheprovider
}

stage_kernels() {
    # pytest's own output (failures, skip reasons) to a file; the summary below reads the JSON
    timeout 190 "$PY" -m bench kernels --device cuda --verbose --json "$CHECK/kernels.json" >"$CHECK/kernels.txt" 2>&1
    local rc=$?
    grep -E "error|FAILED|ERROR|SKIPPED|[0-9]+ (passed|failed|skipped)|no kernel was timed" "$CHECK/kernels.txt" | head -40
    [ -s "$CHECK/kernels.json" ] || return 1
    "$PY" - "$CHECK/kernels.json" <<'PY'
import json, sys
data = json.load(open(sys.argv[1]))
info, rows = data["machine_info"], data["benchmarks"]
print(f"kernels timed: {len(rows)} on {info.get('gpu')} ({info.get('gpu_device')}), peak entry "
      f"{info.get('gpu_peak_entry')}, timer {rows[0]['options']['timer'] if rows else '-'}")
for group in ("linear", "attention_sdpa", "layer_norm", "softmax", "train_step"):
    for b in rows:
        e = b["extra_info"]
        if b["group"] == group and "base" in b["name"]:
            print(f"  {b['name']}: median {b['stats']['median'] * 1e6:.1f} us over {e.get('launches_per_round')} "
                  f"launches/round; {e.get('gflops_per_s') or 0:.0f} GFLOP/s, GB/s {'-' if e.get('gb_per_s') is None else round(e['gb_per_s'])}, "
                  f"% peak {100 * (e.get('peak_flops_fraction') or 0):.1f}, input copies {e.get('input_copies', 1)}")
PY
    return "$rc"
}

stage_train() {
    timeout 230 "$PY" -m bench train suites/nanogpt_gpu.toml --json >"$CHECK/train.json"
    local rc=$?
    [ -s "$CHECK/train.json" ] || return 1
    "$PY" - "$CHECK/train.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"nanogpt_gpu: {r['status']}, best val {r['best_val_loss']}, final val {r['final_val_loss']} "
      f"(nanoGPT published best: 1.4697), {r['steps']} steps; train_time {r['train_time']:.1f} s after "
      f"{r['warmup_steps']} warm-up steps of {r['warmup_time']:.2f} s; {r['tokens_per_second']:,.0f} tok/s; "
      f"wall {r['wall_time']:.1f} s; peak {r['peak_memory_mb']:.0f} MiB")
print("env:", json.dumps(r["env"]))
PY
    return "$rc"
}

stage_suite() {
    local store="$CHECK/gpu_workers.journal"
    timeout 80 "$PY" -m bench run suites/gpu_workers.toml --workers 2 --workers-per-gpu 2 --storage "$store" \
        --no-report --quiet
    local rc=$?
    "$PY" - "$store" <<'PY'
import sys
from bench.results import suite_results
from bench.suite import Suite
frame = suite_results(Suite.load("suites/gpu_workers.toml"), sys.argv[1])
for _, row in frame.iterrows():
    env = row["env"] or {}
    print(f"  {row['arm']}: {row['status']}, val {row['value']}, device {env.get('device')} "
          f"({env.get('device_name')}), workers on it {env.get('gpu_workers')}, "
          f"train_time {row['train_time']:.2f} s, sdpa {env.get('precision', {}).get('sdpa_backend')}")
PY
    return "$rc"
}

for stage in "${STAGES[@]}"; do
    echo "== $stage ($(date -u +%H:%M:%S))"
    start=$SECONDS
    "stage_$stage"
    rc=$?
    echo "== $stage: exit $rc in $((SECONDS - start)) s"
    [ "$stage" != env ] || [ "$rc" -eq 0 ] || exit 2  # no GPU: nothing else can tell the truth
    [ "$rc" -eq 0 ] || status=1
done
exit "$status"
