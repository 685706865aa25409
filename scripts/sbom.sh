#!/usr/bin/env bash
# make sbom: CycloneDX 1.5 SBOM (JSON) of the `identity` release binary's
# dependency graph -> target/sbom/identity.cdx.json, which the Dockerfile
# copies into the image as /sbom.cdx.json (label identity.sbom.path).
#
# What it describes: the `identity` binary (cargo-cyclonedx --describe
# binaries) for one target triple (SBOM_TARGET, default the host), with
# its normal dependencies; build-time-only crates (code generators, build
# scripts' dependencies) and dev-dependencies are left out, as they do not
# ship. Every crates.io component carries its purl, license and the SHA-256
# of its .crate from Cargo.lock.
#
# Reproducible: the timestamp is the last commit's (SOURCE_DATE_EPOCH) and
# the checkout's absolute path is replaced by `.`, so the same commit gives
# the same file wherever it is checked out.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

# renovate: datasource=crate depName=cargo-cyclonedx
CARGO_CYCLONEDX_VERSION=${CARGO_CYCLONEDX_VERSION:-0.5.9}
target=${SBOM_TARGET:-$(rustc -vV | sed -n 's/^host: //p')}
out=target/sbom/identity.cdx.json

./scripts/ensure-cargo-tool.sh cyclonedx cargo-cyclonedx "$CARGO_CYCLONEDX_VERSION"

# cargo-cyclonedx writes next to the package's Cargo.toml; run it on a
# scratch copy of the manifests so that nothing appears in the source tree.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp Cargo.toml Cargo.lock "$work"/
[[ -f rust-toolchain.toml ]] && cp rust-toolchain.toml "$work"/
tar -cf - --exclude=target services | tar -xf - -C "$work"

export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
cargo cyclonedx --manifest-path "$work/Cargo.toml" \
  --format json --spec-version 1.5 \
  --describe binaries --target "$target" --no-build-deps -q
generated=$(find "$work/services" -name 'identity_bin.cdx.json' | head -n1)
[[ -n $generated ]] || { echo "sbom: cargo-cyclonedx wrote no SBOM" >&2; exit 1; }

mkdir -p target/sbom
sed "s|file://$work|file://.|g; s|$work|.|g" "$generated" > "$out.tmp"

# The SBOM must describe what Cargo.lock resolves for the binary: every
# normal dependency of `identity` for this target is a component.
cargo tree --locked -e normal --target "$target" --prefix none --no-dedupe -p identity \
  | sed 's/ (.*//; s/ v/@/' | sort -u > "$work/tree.txt"
python3 - "$out.tmp" "$work/tree.txt" "$target" <<'PY'
import json, sys
path, tree, target = sys.argv[1:]
bom = json.load(open(path))
assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"] == "1.5", "not CycloneDX 1.5"
main = bom["metadata"]["component"]
assert main["name"] == "identity" and main["type"] == "application", main
components = bom.get("components", [])
have = {f"{c['name']}@{c['version']}" for c in components}
want = {l.strip() for l in open(tree) if l.strip()} - {f"identity@{main['version']}"}
missing = sorted(want - have)
assert not missing, f"dependencies missing from the SBOM: {missing}"
registry = [c for c in components if c["bom-ref"].startswith("registry+")]
unhashed = [c["name"] for c in registry if not c.get("hashes")]
assert not unhashed, f"components without a checksum: {unhashed}"
unlicensed = [c["name"] for c in components if not c.get("licenses")]
assert not unlicensed, f"components without a license: {unlicensed}"
leaked = [c["bom-ref"] for c in components if "/tmp/" in c["bom-ref"]]
assert not leaked, leaked
print(f"sbom: identity {main['version']} for {target}: {len(components)} components "
      f"({len(registry)} from crates.io, all with SHA-256 and license), "
      f"{len(bom.get('dependencies', []))} dependency entries")
PY
mv "$out.tmp" "$out"
echo "sbom: wrote $out"
