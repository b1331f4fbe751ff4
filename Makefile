# Drydock: two commands matter. `make dev` runs everything locally; `make test`
# runs every test. Both install what they need (the Temporal CLI is built from
# the Go module proxy on first use into ~/.cache/drydock; it takes minutes once).

SHELL := /bin/bash
GO ?= go
BIN := bin
TEMPORAL_CLI_SCRIPT := scripts/temporal-cli.sh
# Chromium for the browser end-to-end test (apt-get install chromium when missing).
CHROMIUM_SCRIPT := scripts/chromium.sh
# Prometheus and promtool for the alert-rule and dashboard tests (apt-get install
# prometheus when missing); the script prints the two paths, one a line.
PROMETHEUS_SCRIPT := scripts/prometheus.sh
# Graphviz's dot for make docs (apt-get install graphviz when missing).
GRAPHVIZ_SCRIPT := scripts/graphviz.sh
STATICCHECK_VERSION := v0.8.2
CACHE := $(or $(DRYDOCK_CACHE_DIR),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/drydock)
STATICCHECK := $(CACHE)/staticcheck/$(STATICCHECK_VERSION)/staticcheck

.PHONY: dev test build vet lint bench chaos temporal-cli clean help record-histories cluster test-cluster docs

help:
	@echo "make dev    run Temporal, the Dedalus emulator, the worker and the webhook server locally"
	@echo "make test   go vet + unit, workflow and end-to-end tests (-race)"
	@echo "make lint   gofmt + go vet + staticcheck"
	@echo "make bench  measure intake, wakes, router, runner dispatch, scale and cost; table in docs/performance.md"
	@echo "make chaos  crash, fault and redelivery run; exits non-zero when an invariant breaks"
	@echo "make build  build the binaries into $(BIN)/"
	@echo "make docs   render docs/architecture.svg (the README's picture) from docs/architecture.dot"
	@echo "make test-cluster  the e2e suite and a chaos run (two of each binary, cluster faults) on a new make cluster"
	@echo "make cluster  a production-shaped Temporal (PostgreSQL, separate services) on 127.0.0.1:7233; Ctrl-C stops it"

build:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ ./worker ./webhook ./router ./starter ./cmd/emulator ./cmd/dev

temporal-cli:
	@$(TEMPORAL_CLI_SCRIPT) >/dev/null

dev: build
	@cli="$$($(TEMPORAL_CLI_SCRIPT))" && TEMPORAL_CLI="$$cli" exec $(BIN)/dev

vet:
	$(GO) vet ./...

test: vet
	@cli="$$($(TEMPORAL_CLI_SCRIPT))" && chromium="$$($(CHROMIUM_SCRIPT))" && prom=($$($(PROMETHEUS_SCRIPT))) && \
		TEMPORAL_CLI="$$cli" CHROMIUM="$$chromium" PROMETHEUS="$${prom[0]}" PROMTOOL="$${prom[1]}" $(GO) test -race -count=1 -timeout 30m ./...

# Record, from the end-to-end tests, a new set of the workflow histories that
# workflows/replay_test.go replays: workflows/testdata/histories/<set>/. Older
# sets are kept: they stand for the runs the earlier code started.
HISTORIES_SET ?= $(shell date -u +%Y-%m-%d-%H%M)
record-histories:
	@cli="$$($(TEMPORAL_CLI_SCRIPT))" && TEMPORAL_CLI="$$cli" DRYDOCK_RECORD_HISTORIES=$(CURDIR)/workflows/testdata/histories/$(HISTORIES_SET) $(GO) test -count=1 -timeout 30m ./e2e/

# Figures with same-run baselines; prints the table, writes bench/results.json
# and the table in docs/performance.md. BENCH_FLAGS="-only coldwake -scale 0.1"
# narrows it.
bench:
	@cli="$$($(TEMPORAL_CLI_SCRIPT))" && TEMPORAL_CLI="$$cli" $(GO) run ./bench -out bench/results.json -doc docs/performance.md $(BENCH_FLAGS)

# Crashes, Dedalus faults, a Temporal restart and redelivered webhooks, then
# the invariants (nothing lost, leaked, duplicated or stuck); non-zero exit
# when one breaks. CHAOS_FLAGS="-seed N" repeats a run.
chaos:
	@cli="$$($(TEMPORAL_CLI_SCRIPT))" && TEMPORAL_CLI="$$cli" $(GO) run ./chaos $(CHAOS_FLAGS)

# A production-shaped Temporal without Docker (scripts/cluster.sh): PostgreSQL,
# 4 history shards, frontend/history/matching/worker as separate processes,
# the compose file's dynamic config and search attributes. Point make dev at
# it with TEMPORAL_ADDRESS=127.0.0.1:7233 make dev. CLUSTER_DIR, CLUSTER_PORT
# and CLUSTER_PG_PORT move it; `scripts/cluster.sh start|stop` runs it in the
# background.
cluster:
	@scripts/cluster.sh run

# The architecture picture: docs/architecture.svg from its Graphviz source.
# The .svg records the SHA-256 of the source it was rendered from, which
# docs/docs_test.go compares with docs/architecture.dot (no Graphviz needed there).
ARCH_DOT := docs/architecture.dot
ARCH_SVG := docs/architecture.svg
docs:
	@dot="$$($(GRAPHVIZ_SCRIPT))" && tmp="$$(mktemp)" && trap 'rm -f "$$tmp"' EXIT && \
		"$$dot" -Tsvg $(ARCH_DOT) -o "$$tmp" && sum="$$(sha256sum $(ARCH_DOT) | cut -d' ' -f1)" && \
		sed "1a <!-- rendered from $(ARCH_DOT) sha256:$$sum by make docs -->" "$$tmp" > $(ARCH_SVG) && \
		echo "$(ARCH_SVG) rendered from $(ARCH_DOT)"

# The e2e suite and `make chaos -cluster` on a fresh cluster (scripts/test-cluster.sh).
test-cluster:
	@scripts/test-cluster.sh

$(STATICCHECK):
	@echo "Installing staticcheck $(STATICCHECK_VERSION) into $(dir $(STATICCHECK)) (first time only)"
	@mkdir -p $(dir $(STATICCHECK))
	cd $$(mktemp -d) && GOBIN=$(dir $(STATICCHECK)) GOFLAGS=-mod=mod $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

lint: vet $(STATICCHECK)
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(STATICCHECK) ./...

clean:
	rm -rf $(BIN)
