package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
)

// ciCommands are the commands the CI machine has: `make setup` installs them (rg from
// the ripgrep package). Under AGENTEXEC_STRICT=1 a test that needs one of them fails
// when it is missing instead of skipping.
var ciCommands = []string{"git", "python3", "rg"}

// RequireCommand returns the path of the named command (exec.LookPath) and skips the
// test, with the reason, when it is missing. A command the CI machine has (see
// ciCommands) fails the test instead under AGENTEXEC_STRICT=1.
func RequireCommand(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		SkipMissingCommand(t, name, "requires %s: %v", name, err)
	}
	return p
}

// SkipMissingCommand skips the test because the named command is missing or
// unusable, with the reason given by format and args; for a command the CI machine
// has (see ciCommands) it fails the test under AGENTEXEC_STRICT=1. It is for tests
// that find a command by other means than exec.LookPath (a policy's path, say).
func SkipMissingCommand(t testing.TB, name, format string, args ...any) {
	t.Helper()
	skipOrFail(t, slices.Contains(ciCommands, name), format, args...)
}

// built is the binary AgentexecBinary built.
var built struct {
	once sync.Once
	path string
	err  error
}

// AgentexecBinary returns the agentexec binary under test: $AGENTEXEC_BIN when set
// (the Makefile sets it), otherwise one built on first use (go build with
// CGO_ENABLED=0 of this module's cmd/agentexec, as make build does: the lean build,
// with the full build beside it as agentexec-full) into a temporary directory and
// shared by every test of the process. A build failure fails the test. A package
// that uses it should call RemoveAgentexecBinary from TestMain after m.Run.
func AgentexecBinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("AGENTEXEC_BIN"); p != "" {
		return p
	}
	built.once.Do(func() {
		dir, err := os.MkdirTemp("", "agentexec-e2e-")
		if err != nil {
			built.err = err
			return
		}
		built.path = filepath.Join(dir, "agentexec")
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		// As make build: the lean build, and the full one beside it (docs/cli.md).
		for _, b := range [][]string{{"-tags", "agentexec_lean", "-o", built.path}, {"-o", filepath.Join(dir, "agentexec-full")}} {
			cmd := exec.Command("go", append(append([]string{"build"}, b...), "./cmd/agentexec")...)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				built.err = fmt.Errorf("go build: %w\n%s", err, out)
				return
			}
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.path
}

// RemoveAgentexecBinary removes the binary AgentexecBinary built, if it built one.
func RemoveAgentexecBinary() {
	if built.path != "" {
		os.RemoveAll(filepath.Dir(built.path))
	}
}
