#!/usr/bin/env bash
# rust-toolchain.toml pins the compiler. Machines here have exactly one
# toolchain and cannot download another, so when the pinned name is missing
# but the installed stable compiler is that version, name it: rustup then
# finds the pinned toolchain instead of failing to fetch it.
set -euo pipefail
cd "$(dirname "$0")/.."
want=$(sed -n 's/^channel = "\(.*\)"/\1/p' rust-toolchain.toml)
if rustup toolchain list | grep -q "^${want}-"; then
  exit 0
fi
have=$(rustc +stable --version | awk '{print $2}')
if [[ "$have" != "$want" ]]; then
  echo "warning: rust-toolchain.toml pins $want but this machine has $have and cannot fetch another; building with $have" >&2
fi
rustup toolchain link "$want" "$(rustc +stable --print sysroot)"
