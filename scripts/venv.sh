#!/usr/bin/env bash
# Creates (or refreshes) .venv with the Python-side test tools: grpcurl, the
# Helm SDK, kubernetes-validate, a PromQL parser (the chart's alerts and
# dashboard) and pytest. Idempotent: re-running is cheap once
# requirements-dev.txt has not changed.
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=.venv/.requirements.sha256
want=$(sha256sum requirements-dev.txt | cut -d' ' -f1)
if [[ -x .venv/bin/python && -f $stamp && $(cat "$stamp") == "$want" ]]; then
  exit 0
fi
python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
echo "$want" > "$stamp"
