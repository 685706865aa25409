#!/usr/bin/env bash
# Installs what the tests drive from outside Rust: grpcurl, pytest and the
# Helm SDK (Python venv), buf (npm), jq and psql (Debian packages).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/venv.sh
if [[ ! -x tools/node_modules/.bin/buf ]]; then
  (cd tools && npm ci --silent --no-audit --no-fund)
fi
missing=()
command -v jq >/dev/null || missing+=(jq)
command -v psql >/dev/null || missing+=(postgresql-client)
if ((${#missing[@]})); then
  apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
fi
