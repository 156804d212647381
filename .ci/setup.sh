#!/usr/bin/env bash
# Creates .venv and installs optbench (with its dev, postgres, parquet, export and docs extras) into it; safe to run again.
# torch is pinned first: the CPU build of 2.13.0 lies on these machines, while an open range pulls a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check "torch==2.13.0"
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[dev,postgres,parquet,export,docs]"
