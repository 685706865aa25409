#!/usr/bin/env bash
# ensure-cargo-tool.sh SUBCOMMAND CRATE VERSION
#
# Makes `cargo SUBCOMMAND` available: does nothing when it already runs,
# otherwise `cargo install --locked CRATE --version VERSION` (a few minutes
# on two cores, once per machine). An installed version other than VERSION
# is used as it is, with a note: the pinned VERSION is what CI installs.
set -euo pipefail
sub=$1 crate=$2 version=$3
if installed=$(cargo "$sub" --version 2>/dev/null); then
  case $installed in
    *" $version"*) ;;
    *) echo "note: using $installed (this repository pins $crate $version)" >&2 ;;
  esac
  exit 0
fi
echo "installing $crate $version (cargo install --locked; takes a few minutes, once)" >&2
cargo install --locked "$crate" --version "$version"
cargo "$sub" --version >/dev/null
