#!/usr/bin/env bash
# Installs what the tests drive from outside Rust: grpcurl, pytest and the
# Helm SDK (Python venv), buf and Better-Auth (npm), jq, psql, PgBouncer,
# libfaketime and Go (Debian packages; tests/e2e/pgbouncer.rs starts
# PgBouncers of its own, tests/e2e/refresh_grace.rs a replica with its clock
# behind, tests/e2e/go_client.rs builds the README's Go example).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/venv.sh
if [[ ! -x tools/node_modules/.bin/buf ]]; then
  (cd tools && npm ci --silent --no-audit --no-fund)
fi
# A real Better-Auth for the ExchangeToken tests (tests/e2e/exchange/).
# better-sqlite3 compiles against the local Node headers (about 1.5 min,
# once); no prebuilt binary is downloaded.
if [[ ! -f tests/provider/node_modules/.package-lock.json ]] \
  || [[ tests/provider/package-lock.json -nt tests/provider/node_modules/.package-lock.json ]]; then
  (cd tests/provider && npm_config_build_from_source=true npm ci --silent --no-audit --no-fund)
fi
missing=()
command -v jq >/dev/null || missing+=(jq)
command -v psql >/dev/null || missing+=(postgresql-client)
[[ -x /usr/sbin/pgbouncer ]] || command -v pgbouncer >/dev/null || missing+=(pgbouncer)
compgen -G '/usr/lib/*/faketime/libfaketime.so.1' >/dev/null || missing+=(faketime)
# Go, the two buf plugins and the sources the stubs build against, from
# Debian: no machine of this project reaches the Go module proxy. grpc 1.33
# accepts golang/protobuf 1.3 or 1.5; only 1.5 (on google.golang.org/protobuf)
# handles the messages protoc-gen-go 1.28 generates, so it is named.
command -v go >/dev/null || missing+=(golang-go)
command -v protoc-gen-go >/dev/null || missing+=(protoc-gen-go)
command -v protoc-gen-go-grpc >/dev/null || missing+=(protoc-gen-go-grpc)
[[ -d /usr/share/gocode/src/google.golang.org/grpc ]] || missing+=(golang-google-grpc-dev)
[[ -d /usr/share/gocode/src/google.golang.org/protobuf ]] || missing+=(golang-google-protobuf-dev)
dpkg -s golang-github-golang-protobuf-1-5-dev >/dev/null 2>&1 \
  || missing+=(golang-github-golang-protobuf-1-5-dev)
if ((${#missing[@]})); then
  apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
fi
