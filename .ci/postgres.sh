#!/usr/bin/env bash
# Starts (once) a throwaway PostgreSQL server from Debian's packages on 127.0.0.1 for the distributed
# tests and prints its URL. Needs root the first time (apt-get, and the server runs as user postgres).
set -euo pipefail
PORT="${OPTBENCH_PG_PORT:-54329}"
DIR="${OPTBENCH_PG_DIR:-/tmp/optbench-pg}"
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
BIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
as_postgres() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi; }
if ! "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT"; then
  rm -rf "$DIR" && mkdir -p "$DIR"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$DIR"
  as_postgres "'$BIN/initdb' -D '$DIR/data' -A trust -U postgres" >/dev/null
  as_postgres "'$BIN/pg_ctl' -D '$DIR/data' -o \"-h 127.0.0.1 -p $PORT -k $DIR -c max_connections=200\" -l '$DIR/log' -w start" >/dev/null
fi
if ! "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='optbench_test'" | grep -q 1; then
  "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres optbench_test
fi
echo "postgresql://postgres@127.0.0.1:$PORT/optbench_test"
