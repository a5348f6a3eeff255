// Package testutil holds test helpers shared by agentexec's packages. It is imported
// only from _test.go files.
//
// Each Require* helper skips the test with the exact reason when the machine lacks
// what the test needs. When AGENTEXEC_STRICT=1 is set (as .ci/run does on the CI
// machine, which is root with Landlock), a missing requirement that the CI machine is
// known to have fails the test instead, so that a skip cannot hide a regression.
//
// It imports no agentexec package but itself (helpers only, no engine code).
package testutil

import (
	"fmt"
	"os"
	"strings"
	"testing"

	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"
)

// Strict reports whether skips of CI-available features must fail.
func Strict() bool { return os.Getenv("AGENTEXEC_STRICT") == "1" }

func skipOrFail(t testing.TB, ciHasIt bool, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if ciHasIt && Strict() {
		t.Fatalf("AGENTEXEC_STRICT=1: %s (the CI machine must have it)", msg)
	}
	t.Skip(msg)
}

// RequireRoot skips unless the test runs as uid 0.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, true, "requires root, running as uid %d", os.Geteuid())
	}
}

// LandlockABI returns the running kernel's Landlock ABI version (0 when Landlock is
// absent or disabled) and the probe's error.
func LandlockABI() (int, error) {
	return ll.LandlockGetABIVersion()
}

// RequireLandlockABI skips unless the kernel's Landlock ABI is at least min.
func RequireLandlockABI(t testing.TB, min int) {
	t.Helper()
	v, err := LandlockABI()
	if err != nil {
		skipOrFail(t, min <= 7, "requires Landlock ABI >= %d, probe failed: %v", min, err)
		return
	}
	if v < min {
		skipOrFail(t, min <= 7, "requires Landlock ABI >= %d, got %d", min, v)
	}
}

// Cgroup2Mount returns the cgroup v2 mount point: /sys/fs/cgroup on a pure v2 host,
// /sys/fs/cgroup/unified on a hybrid one, "" when there is none.
func Cgroup2Mount() string {
	for _, m := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		var st unix.Statfs_t
		if unix.Statfs(m, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			return m
		}
	}
	return ""
}

// RequireCgroup2 skips unless a cgroup v2 hierarchy is mounted.
func RequireCgroup2(t testing.TB) string {
	t.Helper()
	m := Cgroup2Mount()
	if m == "" {
		skipOrFail(t, true, "requires a cgroup v2 mount at /sys/fs/cgroup or /sys/fs/cgroup/unified")
	}
	return m
}

// RequireCgroup2Controller skips unless the v2 root offers the named controller
// (matched exactly: "cpu" does not match "cpuset"). The CI host has no memory, pids or
// cpu controller on its v2 hierarchy (hybrid layout), so these skip there and run in
// the VM tier.
func RequireCgroup2Controller(t testing.TB, name string) {
	t.Helper()
	m := RequireCgroup2(t)
	b, err := os.ReadFile(m + "/cgroup.controllers")
	if err != nil {
		t.Skipf("requires cgroup v2 controller %q: %v", name, err)
	}
	for _, c := range strings.Fields(string(b)) {
		if c == name {
			return
		}
	}
	t.Skipf("requires cgroup v2 controller %q; %s/cgroup.controllers has %q", name, m, strings.TrimSpace(string(b)))
}

// InVM reports whether the test runs inside agentexec's VM tier guest.
func InVM() bool { return os.Getenv("AGENTEXEC_VM") == "1" }
