# The VM test tier (docs/vmtest.md): Go test packages run inside QEMU guests booted
# from Debian's 6.12 and 6.1 cloud kernels with a pure cgroup v2 hierarchy.
#
#   make -f mk/vmtest.mk vmtest         # or `make vmtest` from the top-level Makefile
#   make vmtest VMTEST_PKGS=./internal/cgroup VMTEST_RUN=TestMemory VMTEST_KERNELS=6.1
#   make vmtest-deps                    # install/fetch/build prerequisites only
#   make vmtest-rfc                     # the spawn_template RFC kernel tier (docs/vmtest.md)
#
# Exit status of the harness: 0 pass, 1 fail, 2 usage, 3 skipped (prerequisites
# cannot be had; 0 with VMTEST_ALLOW_SKIP=1). make itself reports any of 1-3 as
# "Error N" and exits 2.

VMTEST_CACHE ?= $(if $(XDG_CACHE_HOME),$(XDG_CACHE_HOME),$(HOME)/.cache)/agentexec-vmtest
VMTEST_HARNESS ?= $(VMTEST_CACHE)/bin/vmtest
VMTEST_GO ?= go
# The guest runs under software emulation: the long soak tests (10,000 launches) run
# their short form there; the host tier runs them in full.
VMTEST_ARGS ?= -test.short
export VMTEST_ARGS

# The RFC tier boots the test kernel that carries the spawn_template RFC series. Only
# its image is taken from outside the checkout; without it the tier says
# "SKIP: no RFC kernel image at PATH" and exits 0, except under CI=true, where a
# missing image fails (the tier must not skip in CI).
VMTEST_RFC_KERNEL ?= $(abspath $(CURDIR)/../shared/rfc-kernel/bzImage)

.PHONY: vmtest vmtest-deps vmtest-harness vmtest-rfc

vmtest-harness:
	@mkdir -p "$(dir $(VMTEST_HARNESS))"
	CGO_ENABLED=0 $(VMTEST_GO) build -o "$(VMTEST_HARNESS)" ./scripts/vmtest

vmtest: vmtest-harness
	VMTEST_CACHE="$(VMTEST_CACHE)" "$(VMTEST_HARNESS)" run

vmtest-deps: vmtest-harness
	VMTEST_CACHE="$(VMTEST_CACHE)" "$(VMTEST_HARNESS)" deps

vmtest-rfc: vmtest-harness
	VMTEST_CACHE="$(VMTEST_CACHE)" VMTEST_KERNELS=rfc VMTEST_RFC_KERNEL="$(VMTEST_RFC_KERNEL)" \
	  VMTEST_ALLOW_SKIP="$(if $(filter true,$(CI)),,1)" "$(VMTEST_HARNESS)" run

# Issue 21's guest benchmark: `cat /dev/null` through the whole runtime, kernel vs userspace
# backend, interleaved in 5 rounds (BenchmarkKernelVsUserspace; docs/performance.md).
.PHONY: vmtest-rfc-bench
vmtest-rfc-bench: vmtest-harness
	VMTEST_CACHE="$(VMTEST_CACHE)" VMTEST_KERNELS=rfc VMTEST_RFC_KERNEL="$(VMTEST_RFC_KERNEL)" \
	  VMTEST_PKGS=. VMTEST_RUN='^$$' VMTEST_ARGS='-test.bench=^BenchmarkKernelVsUserspace$$ -test.benchtime=1x' \
	  "$(VMTEST_HARNESS)" run
