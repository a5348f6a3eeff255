package templates

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// openFDs lists this process's open fds with their targets.
func openFDs() map[string]string {
	ents, _ := os.ReadDir("/proc/self/fd")
	out := map[string]string{}
	for _, e := range ents {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil {
			continue // the directory fd of ReadDir itself, closed by now
		}
		out[e.Name()] = target
	}
	return out
}

// TestMain fails the run (exit 99) when the tests leak file descriptors: templates own
// fds, and every Close and recreate must release them.
func TestMain(m *testing.M) {
	// Warm up what the runtime opens lazily (netpoller, pidfd support).
	if r, w, err := os.Pipe(); err == nil {
		r.Close()
		w.Close()
	}
	_ = exec.Command("/bin/true").Run()
	before := openFDs()
	code := m.Run()
	after := openFDs()
	for fd, target := range after {
		if _, ok := before[fd]; !ok && code == 0 {
			fmt.Fprintf(os.Stderr, "leaked fd %s → %s\n", fd, target)
			code = 99
		}
	}
	os.Exit(code)
}
