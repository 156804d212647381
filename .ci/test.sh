#!/usr/bin/env bash
# Sets up .venv, starts the services the tests need (PostgreSQL on loopback), runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup.sh
OPTBENCH_TEST_POSTGRES="$(bash .ci/postgres.sh)"
export OPTBENCH_TEST_POSTGRES
export OPTBENCH_DATA_DIR="${OPTBENCH_DATA_DIR:-../shared/data}"
.venv/bin/python -m pytest "$@"
