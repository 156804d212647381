#!/usr/bin/env bash
# Sets up .venv, brings what the tests need (PostgreSQL on loopback, Chromium), runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup.sh
OPTBENCH_TEST_POSTGRES="$(bash .ci/postgres.sh)"
OPTBENCH_TEST_CHROMIUM="$(bash .ci/chromium.sh)"
export OPTBENCH_TEST_POSTGRES OPTBENCH_TEST_CHROMIUM
export OPTBENCH_DATA_DIR="${OPTBENCH_DATA_DIR:-../shared/data}"
.venv/bin/python -m pytest "$@"
