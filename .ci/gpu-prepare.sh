#!/usr/bin/env bash
# Run HERE (a machine with network), before .ci/gpu-check.sh is sent to the GPU machine, which has no network:
# the GPU image holds torch, pandas, scipy, seaborn, jinja2, rich, tokenizers, pytest-benchmark and hypothesis
# (/work/.library/device/KINDS.md) but not optuna and its database layer, lion-pytorch, schedulefree or cmaes.
# Writes their wheels (Python 3.12, x86-64) to .whl/ and the corpus to .gpu-data/; both are git-ignored and
# travel with `carry: [".whl", ".gpu-data"]`.
set -euo pipefail
cd "$(dirname "$0")/.."
PIP=(python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp
     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl)
mkdir -p .whl .gpu-data
# The versions this project's CPU environment resolved (pip show in .venv, 2026-11-29).
"${PIP[@]}" optuna==5.0.0 alembic==1.20.1 SQLAlchemy==2.1.9 Mako==1.4.3 colorlog==6.12.0 \
    lion-pytorch==0.2.5 schedulefree==1.4.1 cmaes==0.13.1
data="${OPTBENCH_DATA_DIR:-../shared/data}"
cp "$data/tinyshakespeare.txt" .gpu-data/
ls -l .whl .gpu-data
