#!/usr/bin/env bash
# README's main job: set up .venv, run the quick suite (resumable), print its results.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup.sh
.venv/bin/optbench run suites/quick.toml
.venv/bin/optbench results suites/quick.toml
