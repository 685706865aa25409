#!/usr/bin/env bash
# make audit: the supply-chain checks of deny.toml.
#
#   1. licenses, bans, sources   offline; always run; any error fails
#   2. advisories                RustSec advisory database, fetched fresh
#
# `scripts/audit.sh offline` (make deny, part of make test) runs step 1 only.
#
# When the advisory database cannot be fetched (no route to github.com),
# step 2 is reported as NOT RUN, in those words, and never as passed. With
# AUDIT_REQUIRE_ADVISORIES=1 (CI sets it) that is a failure (exit 3).
# A database cloned earlier is used only with AUDIT_ALLOW_STALE_DB=1, and
# the report then says how old it is.
set -uo pipefail
cd "$(dirname "$0")/.."

# renovate: datasource=crate depName=cargo-deny
CARGO_DENY_VERSION=${CARGO_DENY_VERSION:-0.20.2}
require=${AUDIT_REQUIRE_ADVISORIES:-0}
allow_stale=${AUDIT_ALLOW_STALE_DB:-0}
db_root=${CARGO_HOME:-$HOME/.cargo}/advisory-dbs

./scripts/ensure-cargo-tool.sh deny cargo-deny "$CARGO_DENY_VERSION" || exit 1

declare -A result
status=0

echo "== cargo deny check licenses bans sources"
if cargo deny --locked check licenses bans sources; then
  result[offline]="passed"
else
  result[offline]="FAILED"
  status=1
fi
if [[ ${1:-} == offline ]]; then
  exit $status
fi

echo "== cargo deny check advisories"
fetch_log=$(mktemp)
trap 'rm -f "$fetch_log"' EXIT
if cargo deny fetch db >"$fetch_log" 2>&1; then
  db=$(ls -d "$db_root"/*/ 2>/dev/null | head -n1)
  when=$(git -C "$db" log -1 --format=%cI 2>/dev/null || echo "unknown date")
  if cargo deny --locked check advisories; then
    result[advisories]="passed (advisory database fetched now, last change $when)"
  else
    result[advisories]="FAILED (advisory database fetched now, last change $when)"
    status=1
  fi
else
  reason=$(grep -m1 "fatal:" "$fetch_log" || grep -m1 -iE "error" "$fetch_log" || true)
  reason=$(printf '%s' "$reason" | sed -E 's/^[0-9-]+ [0-9:]+ //; s/^fatal: //')
  echo "cargo deny fetch db failed: ${reason:-see below}" >&2
  sed 's/^/  | /' "$fetch_log" >&2
  db=$(ls -d "$db_root"/*/ 2>/dev/null | head -n1)
  if [[ -n $db && $allow_stale == 1 ]]; then
    when=$(git -C "$db" log -1 --format=%cI 2>/dev/null || echo "unknown date")
    echo "AUDIT_ALLOW_STALE_DB=1: checking against the database already on disk (last change $when)" >&2
    if cargo deny --locked --offline check advisories; then
      result[advisories]="passed against a STALE database (last change $when; could not fetch a fresh one)"
    else
      result[advisories]="FAILED against a STALE database (last change $when)"
      status=1
    fi
    [[ $require == 1 ]] && status=$((status == 0 ? 3 : status))
  else
    result[advisories]="NOT RUN: the RustSec advisory database could not be fetched (${reason:-fetch failed}); no vulnerability check has been made"
    [[ $require == 1 ]] && status=$((status == 0 ? 3 : status))
  fi
fi

echo
echo "audit summary (cargo-deny $(cargo deny --version | cut -d' ' -f2), deny.toml)"
echo "  licenses, bans, sources: ${result[offline]}"
echo "  advisories:              ${result[advisories]}"
if [[ ${result[advisories]} == NOT\ RUN* ]]; then
  if [[ $require == 1 ]]; then
    echo "  AUDIT_REQUIRE_ADVISORIES=1: failing because advisories were not checked" >&2
  else
    echo "  (set AUDIT_REQUIRE_ADVISORIES=1 to make this a failure, as CI does)"
  fi
fi
exit $status
