#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers on 127.0.0.1:5432 for the tests:
# starts the machine's cluster if it is stopped, installs PostgreSQL if the
# machine has none. Never stops or reconfigures a running server.
set -euo pipefail
ready() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
if command -v pg_isready >/dev/null && ready; then exit 0; fi
if ! command -v pg_ctlcluster >/dev/null; then
  echo "installing PostgreSQL (apt-get)" >&2
  apt-get update -qq && apt-get install -y -qq postgresql postgresql-client >/dev/null
fi
version=$(ls /etc/postgresql | sort -V | tail -1)
# Trust auth on loopback, as the tests expect (only when we set it up).
hba=/etc/postgresql/$version/main/pg_hba.conf
if ! grep -q "identity-tests" "$hba" 2>/dev/null; then
  sed -i '1i host all all 127.0.0.1/32 trust # identity-tests' "$hba"
fi
pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
for _ in $(seq 1 30); do ready && exit 0; sleep 1; done
echo "PostgreSQL did not come up on 127.0.0.1:5432" >&2
exit 1
