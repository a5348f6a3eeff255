package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"

	"github.com/agentexec/agentexec/internal/testutil"
)

// The test binary is llrun when LLRUN_TEST_MAIN is set.
func TestMain(m *testing.M) {
	if os.Getenv("LLRUN_TEST_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// llrun runs the test binary as llrun with args and returns its exit code and
// combined output.
func llrun(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "LLRUN_TEST_MAIN=1")
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, string(out)
}

// llrun is a peer in the benchmarks only if it restricts what landrun restricts:
// reads and writes outside its paths and TCP connections are refused, and what
// its paths grant works. Each refusal has its control: the same call allowed.
func TestLlrunRestricts(t *testing.T) {
	abi, err := ll.LandlockGetABIVersion()
	if err != nil || abi < 4 {
		t.Skipf("needs Landlock ABI 4 (TCP rules); this kernel: %d (%v)", abi, err)
	}
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sys := []string{"--rox", "/usr,/bin,/lib,/lib64", "--ro", "/etc", "--env", "PATH"}
	with := func(extra ...string) []string { return append(append([]string(nil), sys...), extra...) }

	if code, out := llrun(t, with("--", "cat", secret)...); code == 0 || !strings.Contains(out, "Permission denied") {
		t.Errorf("read outside the paths: exit %d, %q; want refused", code, out)
	}
	if code, out := llrun(t, with("--ro", dir, "--", "cat", secret)...); code != 0 || out != "s3cret\n" {
		t.Errorf("read under --ro: exit %d, %q; want the file", code, out)
	}
	target := filepath.Join(dir, "new")
	if code, _ := llrun(t, with("--ro", dir, "--", "sh", "-c", "echo x > "+target)...); code == 0 {
		t.Error("write under --ro succeeded")
	}
	if code, out := llrun(t, with("--rw", dir, "--", "sh", "-c", "echo x > "+target)...); code != 0 {
		t.Errorf("write under --rw: exit %d, %q", code, out)
	}

	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash for the TCP connection")
	}
	connect := "echo > /dev/tcp/127.0.0.1/" + strconv.Itoa(testutil.LoopbackTCP(t))
	if out, err := exec.Command(bash, "-c", connect).CombinedOutput(); err != nil {
		t.Fatalf("control: direct connect failed: %v %s", err, out)
	}
	if code, out := llrun(t, with("--", bash, "-c", connect)...); code == 0 || !strings.Contains(out, "Permission denied") {
		t.Errorf("TCP connect: exit %d, %q; want refused", code, out)
	}
}

func TestLlrunUsage(t *testing.T) {
	for _, args := range [][]string{{"--rox"}, {"--bogus", "x", "--", "true"}, {"--ro", "/etc"}, {"--ro", "/nonexistent-llrun", "--", "true"}} {
		if code, out := llrun(t, args...); code != 2 || !strings.HasPrefix(out, "llrun: ") {
			t.Errorf("llrun %q: exit %d, %q; want a usage error (2)", args, code, out)
		}
	}
}
