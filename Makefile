# identity — the two commands a newcomer needs are `make run` and `make test`.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo
export PATH := $(CURDIR)/.venv/bin:$(CURDIR)/tools/node_modules/.bin:$(PATH)

.PHONY: toolchain run test lint proto-lint proto-breaking fmt tools postgres migrate unit e2e helm-test helm-template keygen clean bench

## run: serve in development mode on 127.0.0.1:50051 (SQLite under ./data), the JWKS on http://127.0.0.1:8080
run: toolchain
	IDENTITY_HTTP_LISTEN_ADDR=$${IDENTITY_HTTP_LISTEN_ADDR:-127.0.0.1:8080} $(CARGO) run --bin identity -- serve --dev

## test: everything CI checks — proto lint, Rust unit and end-to-end tests, chart tests
test: tools postgres proto-lint proto-breaking
	# every target's crates, so that `cargo metadata --offline` (tests/e2e/crate_walls.rs) resolves on a fresh machine
	$(CARGO) fetch --locked
	$(CARGO) test --workspace --locked -- --test-threads=4
	$(MAKE) helm-test
	$(MAKE) deny checklist

## lint: buf lint, rustfmt and clippy (warnings are errors)
lint: tools proto-lint
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

proto-lint: tools
	cd proto && buf lint

## proto-breaking: the proto against the previous commit's (buf.yaml's breaking rules), and the proof that the rules refuse
proto-breaking: tools
	if git rev-parse -q --verify HEAD~1 >/dev/null; then \
	  cd proto && buf breaking --against '../.git#ref=HEAD~1,subdir=proto'; \
	else \
	  echo "proto-breaking: this clone has no previous commit to compare with" >&2; \
	fi
	.venv/bin/pytest -q tests/proto

fmt:
	$(CARGO) fmt --all

toolchain:
	./scripts/ensure-toolchain.sh

tools: toolchain
	./scripts/ensure-tools.sh

postgres:
	./scripts/ensure-postgres.sh

## bench: load benchmark on PostgreSQL against a bare tonic baseline (BENCHMARKS.md);
## `make bench QUICK=1` is the short run. Table on stdout, JSON in target/bench/results.json
bench: postgres
	command -v h2load >/dev/null || (apt-get update -qq && apt-get install -y -qq nghttp2-client >/dev/null)
	$(CARGO) build --release --locked -p identity -p identity-bench
	target/release/bench $(if $(QUICK),--quick) --out target/bench/results.json

## migrate: apply migrations to IDENTITY_DATABASE_URL
migrate:
	$(CARGO) run --bin identity -- migrate

## keygen: write a new Ed25519 signing key to ./signing-key.pem
keygen:
	$(CARGO) run --bin identity -- keygen --out signing-key.pem

helm-test: tools
	.venv/bin/pytest -q tests/helm

## helm-template: render the chart (every option on) into target/helm-template for review
helm-template: tools
	.venv/bin/python tests/helm/template.py target/helm-template

clean:
	$(CARGO) clean
	rm -rf data

## image: build the container image (needs a Docker engine; none runs on the dev machines here)
image:
	@command -v docker >/dev/null && docker info >/dev/null 2>&1 || { echo "make image: no Docker engine here; the Dockerfile is reviewed by tests/helm" >&2; exit 1; }
	mkdir -p target/sbom && test -f target/sbom/identity.cdx.json || echo '{}' > target/sbom/identity.cdx.json
	docker build --build-arg VERSION=$$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1) -t identity:latest-build .

# --- security operations (issue 9): supply chain, SBOM, audit checklist ---
.PHONY: deny audit sbom checklist

## deny: cargo-deny's offline checks (licenses, bans, sources; deny.toml) and the proof that they refuse
deny:
	./scripts/audit.sh offline
	./scripts/venv.sh
	.venv/bin/pytest -q tests/supply_chain

## audit: deny + RustSec advisories; says NOT RUN when the advisory database cannot be fetched (AUDIT_REQUIRE_ADVISORIES=1 makes that fatal)
audit:
	./scripts/audit.sh

## sbom: CycloneDX SBOM of the release binary's dependency graph -> target/sbom/identity.cdx.json
sbom:
	./scripts/sbom.sh

## checklist: every test cited by docs/security-checklist.md and docs/threat-model.md exists
checklist:
	./scripts/venv.sh
	.venv/bin/python scripts/check-checklist.py
	.venv/bin/pytest -q tests/checklist
