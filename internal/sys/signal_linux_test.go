package sys

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"unsafe"
)

func TestKernelSigactionLayout(t *testing.T) {
	var a KernelSigaction
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"size", unsafe.Sizeof(a), 32},
		{"handler", unsafe.Offsetof(a.Handler), 0},
		{"flags", unsafe.Offsetof(a.Flags), 8},
		{"restorer", unsafe.Offsetof(a.Restorer), 16},
		{"mask", unsafe.Offsetof(a.Mask), 24},
	} {
		if c.got != c.want {
			t.Errorf("%s: %d, want %d", c.name, c.got, c.want)
		}
	}
}

// In a child process that starts with SIGHUP and SIGINT ignored (inherited SIG_IGN;
// the Go runtime leaves those two as it finds them), ResetIgnoredSignals restores
// their defaults and reports them: an exec'd program then shows no ignored signals.
func TestResetIgnoredSignals(t *testing.T) {
	if os.Getenv("SYS_TEST_RESET_SIGNALS") == "1" {
		reset, err := ResetIgnoredSignals()
		if err != nil {
			t.Fatal(err)
		}
		for _, sig := range []syscall.Signal{syscall.SIGHUP, syscall.SIGINT} {
			if !slices.Contains(reset, sig) {
				t.Errorf("reset %v, want it to include %v (ignored at start)", reset, sig)
			}
		}
		out, err := exec.Command("/bin/grep", "SigIgn", "/proc/self/status").Output()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(out), "0000000000000000") {
			t.Fatalf("after reset of %v: %s", reset, out)
		}
		return
	}
	// Start the child with the two signals ignored (the shell's trap '' does it).
	cmd := exec.Command("/bin/sh", "-c", `trap '' HUP INT; exec "$0" -test.run=TestResetIgnoredSignals -test.v`, os.Args[0])
	cmd.Env = append(os.Environ(), "SYS_TEST_RESET_SIGNALS=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(string(out), "PASS") {
		t.Fatalf("child did not pass:\n%s", out)
	}
}
