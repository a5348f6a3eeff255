# The one place agentexec's install, build and test steps live.
#
#   make demo     install tool dependencies, build, and run the main job with the
#                 embedded default policy (check, then a sandboxed launch)
#   make test     gofmt, vet, lint (.golangci.yml) and the whole test suite (host tiers)
#   make vmtest   run the VM tier (QEMU guests with pure cgroup v2; see docs/vmtest.md)
#   make ci       what .ci/run runs

GO        ?= go
BIN       ?= bin/agentexec
# The full build, beside BIN: BIN is the lean build (-tags agentexec_lean: no MCP SDK,
# no NATS client, a faster start for every process), which hands mcp, worker and
# ci/check --nats to this one (docs/cli.md, "Two binaries").
BIN_FULL  ?= $(dir $(BIN))agentexec-full
# Spawners restrict every thread of their process; static builds keep the binary
# self-contained (the VM tier boots it in a busybox guest).
BUILDENV  ?= CGO_ENABLED=0
TESTFLAGS ?= -count=1 -timeout 20m

.PHONY: all setup setup-lint build demo test test-race vet fmt-check lint ci bench clean

# golangci-lint, pinned; `make setup-lint` builds it into bin/tools from the Go module
# proxy (about two minutes the first time; .golangci.yml is its configuration).
GOLANGCI_LINT_VERSION ?= v2.15.0
GOLANGCI_LINT ?= bin/tools/golangci-lint

all: build

# Host packages the tests and the example policies use. Idempotent; needs root.
setup:
	@missing=""; \
	for c in rg git python3 gcc; do command -v $$c >/dev/null 2>&1 || missing="$$missing $$c"; done; \
	if [ -n "$$missing" ]; then \
		echo "setup: installing:$$missing"; \
		pkgs=""; for c in $$missing; do case $$c in rg) pkgs="$$pkgs ripgrep";; gcc) pkgs="$$pkgs gcc libc6-dev";; *) pkgs="$$pkgs $$c";; esac; done; \
		(apt-get install -y --no-install-recommends $$pkgs || (apt-get update && apt-get install -y --no-install-recommends $$pkgs)) >/dev/null; \
	fi

# The linter `make lint` runs (not needed by `make demo`).
setup-lint:
	@if ! $(GOLANGCI_LINT) version 2>/dev/null | grep -q "version $(GOLANGCI_LINT_VERSION:v%=%) "; then \
		echo "setup: building golangci-lint $(GOLANGCI_LINT_VERSION) into bin/tools"; \
		GOBIN=$(CURDIR)/bin/tools $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION); \
	fi

build:
	$(BUILDENV) $(GO) build -trimpath -tags agentexec_lean -o $(BIN) ./cmd/agentexec
	$(BUILDENV) $(GO) build -trimpath -o $(BIN_FULL) ./cmd/agentexec

demo: setup build
	./$(BIN) check
	./$(BIN) run -- ls -la

vet:
	$(GO) vet ./...
	$(GO) vet -tags agentexec_lean ./cmd/agentexec

lint: setup-lint
	$(GOLANGCI_LINT) run ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# AGENTEXEC_STRICT=1 turns skips of what this kind of machine has (root, Landlock,
# cgroup v2) into failures.
# Each go test run goes through scripts/testsummary (-json in, go test's usual lines
# out), which closes with the pass/fail/skip counts of all runs so far and every
# skip's reason; the recipe keeps go test's own exit status.
TESTSUMMARY = bin/testsummary -state bin/testsummary.json -step
test: setup fmt-check vet lint build
	$(GO) build -o bin/testsummary ./scripts/testsummary && rm -f bin/testsummary.json
	{ AGENTEXEC_STRICT=$${AGENTEXEC_STRICT:-1} AGENTEXEC_BIN=$(CURDIR)/$(BIN) $(GO) test -json $(TESTFLAGS) ./...; echo $$? >bin/.test-rc; } | $(TESTSUMMARY) unit; exit $$(cat bin/.test-rc)
	{ AGENTEXEC_STRICT=$${AGENTEXEC_STRICT:-1} AGENTEXEC_BIN=$(CURDIR)/$(BIN) $(GO) test -json -race -short $(TESTFLAGS) . ./internal/spawner ./internal/serve ./internal/cgroup; echo $$? >bin/.test-rc; } | $(TESTSUMMARY) race; exit $$(cat bin/.test-rc)
	{ CGO_ENABLED=1 $(GO) test -json -count=1 ./internal/sys/...; echo $$? >bin/.test-rc; } | $(TESTSUMMARY) cgo; exit $$(cat bin/.test-rc)

# The 100,000-denial flood (denials_more_test.go), alone: while it streams every
# audit reader on the host overflows, so it cannot run beside the other packages'
# kernel-denial tests in make test.
.PHONY: flood-test
flood-test: build
	$(GO) build -o bin/testsummary ./scripts/testsummary
	{ AGENTEXEC_STRICT=$${AGENTEXEC_STRICT:-1} AGENTEXEC_DENIAL_FLOOD=1 AGENTEXEC_BIN=$(CURDIR)/$(BIN) $(GO) test -json -count=1 -run '^TestKernelDenialsFlood100k$$' .; echo $$? >bin/.test-rc; } | $(TESTSUMMARY) flood; exit $$(cat bin/.test-rc)

# Fuzz the parsers of untrusted input, the three text ones each for FUZZTIME (about
# 4 minutes in all on 2 cores, builds included). A crasher is written to the package's
# testdata/fuzz/FuzzX/ and fails the run; commit it: plain go test replays it.
# scripts/fuzz.sh counts Go's own end-of-run deadline race (golang/go#75804, a bare
# "context deadline exceeded" with no failing input) as a pass, and bounds the
# minimization of each new input (FUZZMINIMIZETIME, 5s: Go's 60s stalled the runs).
# FuzzSOCKSRequest, FuzzCheckUserAuth and FuzzUntrustedField (the egress proxy's
# SOCKS5 request parser, the forwarded ssh-agent's signing filter, and audit records
# carrying names a tool chose: input sandboxed tools control) are small:
# FUZZTIME_SMALL.
FUZZTIME ?= 50s
FUZZTIME_SMALL ?= 15s
.PHONY: fuzz
fuzz:
	GO=$(GO) scripts/fuzz.sh ./internal/serve FuzzDecodeMessage $(FUZZTIME)
	GO=$(GO) scripts/fuzz.sh ./policy FuzzParse $(FUZZTIME)
	GO=$(GO) scripts/fuzz.sh ./internal/ci FuzzParseJob $(FUZZTIME)
	GO=$(GO) scripts/fuzz.sh ./internal/egress FuzzSOCKSRequest $(FUZZTIME_SMALL)
	GO=$(GO) scripts/fuzz.sh ./internal/egress FuzzCheckUserAuth $(FUZZTIME_SMALL)
	GO=$(GO) scripts/fuzz.sh ./internal/audit FuzzUntrustedField $(FUZZTIME_SMALL)

# The NATS fleet tests (docs/fleet.md): a real 3-node nats-server cluster embedded in
# the test binary on loopback, `agentexec worker` processes killed with SIGKILL, a
# node stopped, durable CI jobs through JetStream. Under a minute on 2 cores; the
# timeout holds it to 5. (Plain `make test` runs only the package's one-node tests.)
.PHONY: fleet-test
fleet-test: build
	AGENTEXEC_FLEET=1 AGENTEXEC_STRICT=$${AGENTEXEC_STRICT:-1} AGENTEXEC_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -timeout 5m -v ./internal/fleet

bench: build
	AGENTEXEC_BIN=$(CURDIR)/$(BIN) $(GO) test -run '^$$' -bench . -benchtime=200x ./...

# The peers `make bench-run` compares `agentexec run` with: bubblewrap from Debian
# (landrun is used when it is on PATH). Not part of `make setup`; needs root.
.PHONY: bench-setup bench-run
bench-setup:
	@command -v bwrap >/dev/null 2>&1 || { echo "bench-setup: installing bubblewrap"; \
		(apt-get install -y --no-install-recommends bubblewrap || (apt-get update && apt-get install -y --no-install-recommends bubblewrap)) >/dev/null; }

# `agentexec run`, one process per call, against a direct launch, bubblewrap,
# landrun (or llrun, scripts/llrun, a Landlock-only launcher of its kind, built by
# runbench), `agentexec serve` through a client and run's Runtime path, interleaved
# (docs/performance.md, "agentexec run, one-shot" and "Peers").
RUNBENCH_CALLS ?= 40
bench-run: bench-setup build
	$(GO) run ./scripts/runbench -bin $(BIN) -workspace . -calls $(RUNBENCH_CALLS)

ci: test vmtest

# The official MCP conformance suite (server scenarios, over streamable HTTP) and
# the inspector CLI (over stdio) against `agentexec mcp`; both from npm, pinned in
# scripts/mcp-conformance/package-lock.json (docs/mcp.md, "Conformance").
.PHONY: setup-mcp mcp-conformance
setup-mcp:
	cd scripts/mcp-conformance && npm ci --no-audit --no-fund --loglevel=error

mcp-conformance: setup-mcp build
	scripts/mcp-conformance/run.sh $(BIN)

clean:
	rm -rf bin

-include mk/vmtest.mk
