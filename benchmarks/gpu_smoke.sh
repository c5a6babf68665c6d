#!/usr/bin/env bash
# One prepared check for a GPU machine (the `device` tool), 9 minutes at most: run it once when a GPU is lent,
# and copy the figures it prints into benchmarks/RESULTS.md. Never needed by a test.
#   bash benchmarks/gpu_smoke.sh [OUT_DIR]      (OUT_DIR default: ${OUT:-gpu-smoke}; the device tool sets $OUT)
# It runs, each with its own time limit, and goes on when one fails:
#   1. the tests that need CUDA (none is marked yet: the step reports that and moves on);
#   2. the default job for 5 steps with the fast engine, then with vLLM colocated in sleep mode, then the fast
#      engine with asynchronous rollouts (rollout.max_staleness 1), float32 and bf16 as `auto` chooses on the GPU;
#      metrics.jsonl's step time, generation time and peak CUDA memory per step;
#   3. benchmarks/gpu_vs_trl.py's LoRA rows (256 and 1024 completion tokens), groupwise against TRL;
#   4. benchmarks/memory.py's GPU row, when that script exists (issue 31).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-gpu-smoke}}
mkdir -p "$out"
python=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
log() { echo "[gpu_smoke $(date +%H:%M:%S)] $*" | tee -a "$out/summary.txt"; }
limited() { local seconds=$1; shift; timeout --signal=INT --kill-after=15 "$seconds" "$@"; }

log "machine: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo 'no nvidia-smi')"
"$python" - <<'EOF' 2>&1 | tee -a "$out/summary.txt"
import importlib.util, torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), "vllm installed:",
      importlib.util.find_spec("vllm") is not None)
EOF
if ! "$python" -c "import groupwise" 2>/dev/null; then
  log "installing groupwise itself (no dependencies: this machine cannot download)"
  "$python" -m pip install --quiet --no-deps -e . >>"$out/setup.log" 2>&1 || log "pip install -e . failed"
fi

log "1. tests that need CUDA"
limited 40 "$python" -m pytest -q -m cuda tests >"$out/cuda_tests.log" 2>&1
log "   exit $? ($(tail -1 "$out/cuda_tests.log"))"

job() {  # name, then --set overrides
  local name=$1; shift
  local sets=(); for item in "$@"; do sets+=(--set "$item"); done
  limited 85 "$python" -m groupwise.cli.main train --run-dir "$out/$name" --overwrite --set train.steps=5 \
    --set eval.before_after=false --set log.progress=false "${sets[@]}" >"$out/$name.log" 2>&1
  local code=$?
  "$python" - "$out/$name" "$name" "$code" <<'EOF' | tee -a "$out/summary.txt"
import json, statistics, sys
from pathlib import Path
run, name, code = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()] if (run / "metrics.jsonl").exists() else []
steady = rows[1:] or rows
med = lambda k: round(statistics.median([r[k] for r in steady if r.get(k) is not None] or [float("nan")]), 2)
peak = max([r.get("memory/peak_cuda_mb") or 0 for r in rows] or [0])
print(f"   {name}: exit {code}, {len(rows)} steps, step_s {med('step_s')}, generate_s {med('generate_s')}, "
      f"tokens/s {med('tokens_per_s')}, peak CUDA {peak:.0f} MiB")
EOF
}
log "2. the default job, 5 steps"
job fast rollout.engine=fast
job vllm rollout.engine=vllm rollout.vllm.enable_sleep_mode=true
job fast-async rollout.engine=fast rollout.max_staleness=1  # sampling the next batch during the update (docs/async.md)

log "3. gpu_vs_trl.py LoRA rows"
for completion in 256 1024; do
  limited 70 "$python" benchmarks/gpu_vs_trl.py --mode lora --completion "$completion" --steps 3 \
    --workdir "$out/bench-llama" --out "$out/lora$completion.json" >"$out/lora$completion.log" 2>&1
  log "   lora $completion: exit $? $(tail -3 "$out/lora$completion.log" | tr '\n' ' ')"
done

if [ -f benchmarks/memory.py ]; then
  log "4. memory.py GPU row"
  limited 120 "$python" benchmarks/memory.py --gpu --out "$out/memory.json" >"$out/memory.log" 2>&1
  log "   exit $? $(grep -E 'peak: (sampling|update)' "$out/memory.log" | tr '\n' ' ')"
fi
log "done: $out/summary.txt"
