# The one place agentexec's install, build and test steps live.
#
#   make demo     install tool dependencies, build, and run the main job with the
#                 embedded default policy (check, then a sandboxed launch)
#   make test     vet and run the whole test suite (host tiers)
#   make vmtest   run the VM tier (QEMU guests with pure cgroup v2; see docs/vmtest.md)
#   make ci       what .ci/run runs

GO        ?= go
BIN       ?= bin/agentexec
# Spawners restrict every thread of their process; static builds keep the binary
# self-contained (the VM tier boots it in a busybox guest).
BUILDENV  ?= CGO_ENABLED=0
TESTFLAGS ?= -count=1 -timeout 20m

.PHONY: all setup build demo test test-race vet fmt-check ci bench clean

all: build

# Host packages the tests and the example policies use. Idempotent; needs root.
setup:
	@missing=""; \
	for c in rg git python3; do command -v $$c >/dev/null 2>&1 || missing="$$missing $$c"; done; \
	if [ -n "$$missing" ]; then \
		echo "setup: installing:$$missing"; \
		pkgs=""; for c in $$missing; do case $$c in rg) pkgs="$$pkgs ripgrep";; *) pkgs="$$pkgs $$c";; esac; done; \
		(apt-get install -y --no-install-recommends $$pkgs || (apt-get update && apt-get install -y --no-install-recommends $$pkgs)) >/dev/null; \
	fi

build:
	$(BUILDENV) $(GO) build -trimpath -o $(BIN) ./cmd/agentexec

demo: setup build
	./$(BIN) check
	./$(BIN) run -- ls -la

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# AGENTEXEC_STRICT=1 turns skips of what this kind of machine has (root, Landlock,
# cgroup v2) into failures.
test: setup fmt-check vet build
	AGENTEXEC_STRICT=$${AGENTEXEC_STRICT:-1} AGENTEXEC_BIN=$(CURDIR)/$(BIN) $(GO) test $(TESTFLAGS) ./...
	AGENTEXEC_STRICT=$${AGENTEXEC_STRICT:-1} AGENTEXEC_BIN=$(CURDIR)/$(BIN) $(GO) test -race -short $(TESTFLAGS) . ./internal/spawner ./internal/serve ./internal/cgroup
	CGO_ENABLED=1 $(GO) test -count=1 ./internal/sys/...

bench: build
	AGENTEXEC_BIN=$(CURDIR)/$(BIN) $(GO) test -run '^$$' -bench . -benchtime=200x ./...

ci: test vmtest

clean:
	rm -rf bin

-include mk/vmtest.mk
