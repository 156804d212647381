#!/usr/bin/env bash
# Installs Debian's Chromium (once, as root) for the report's browser test; prints its path.
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1; then
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
command -v chromium
