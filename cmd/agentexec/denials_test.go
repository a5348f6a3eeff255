package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/internal/testutil"
	"github.com/agentexec/agentexec/policy"
)

// denialsFixture is a policy file whose tool cat may read the workspace only, and
// a world-readable file outside every root (only Landlock refuses it: a file
// behind a directory the tool cannot search would fail DAC first, unlogged).
type denialsFixture struct {
	ws, secret string
}

func newDenialsFixture(t *testing.T) *denialsFixture {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "agentexec-run-denial-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	f := &denialsFixture{ws: t.TempDir(), secret: filepath.Join(dir, "secret")}
	if err := os.WriteFile(f.secret, []byte("top secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// policy writes the policy file with the given top-level lines.
func (f *denialsFixture) policy(t *testing.T, top string) string {
	t.Helper()
	src := fmt.Sprintf(`version: 1
%sdefaults:
  filesystem:
    read: [/usr, /lib, /lib64, /bin, /etc/ld.so.cache, /dev/null, "${WORKSPACE}"]
    write: [/dev/null]
    exec: [/usr, /bin, /lib, /lib64]
  limits: {timeout: 30s}
tools:
  cat: {}
`, top)
	p := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// run runs the agentexec binary in the workspace (the Runtime path: the one-shot
// path does not collect denials).
func (f *denialsFixture) run(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(testutil.AgentexecBinary(t), args...)
	cmd.Dir = f.ws
	cmd.Env = append(os.Environ(), "AGENTEXEC_RUN_NO_FAST=1")
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return so.String(), se.String(), code
}

// `agentexec run` prints, after the tool's own output, one line per denial the
// launch met with its hint (issue 16): a read outside the roots under
// kernel_denials: on (or --kernel-denials) names the file and the policy change
// that would allow it. Controls: without kernel denials the same refusal is only
// the tool's "Permission denied"; -q silences the lines; --json carries them.
func TestRunPrintsKernelDenials(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireLandlockABI(t, policy.LandlockABIAuditFlags)
	f := newDenialsFixture(t)
	on := f.policy(t, "kernel_denials: on\n")
	off := f.policy(t, "")
	want := fmt.Sprintf(`agentexec run: denied: landlock fs.read_file %s; to allow it: add %q to tools.cat.filesystem.read`, f.secret, f.secret)

	// --json carries the denials and their status in the result object.
	stdout, _, _ := f.run(t, "run", "--json", "--policy", on, "--", "cat", f.secret)
	var r agentexec.ResultJSON
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("run --json: %v\n%s", err, stdout)
	}
	if r.DenialsStatus != nil && r.DenialsStatus.State == "unavailable" {
		// Root and Landlock ABI 7, but no audit (CONFIG_AUDIT off, a container).
		if testutil.Strict() {
			t.Fatalf("AGENTEXEC_STRICT=1: kernel denials unavailable: %s", r.DenialsStatus.Reason)
		}
		t.Skipf("kernel denials unavailable on this host: %s", r.DenialsStatus.Reason)
	}
	if len(r.Denials) != 1 || r.Denials[0].Layer != "landlock" || r.Denials[0].Access != "fs.read_file" || r.Denials[0].Object.Path != f.secret ||
		r.Denials[0].Hint == nil || len(r.Denials[0].Hint.Patch) != 1 || r.Denials[0].Hint.Patch[0].Field != "tools.cat.filesystem.read" {
		t.Errorf("run --json denials %+v", r.Denials)
	}
	if r.DenialsStatus == nil || r.DenialsStatus.State != "complete" {
		t.Errorf("run --json denials_status %+v, want complete", r.DenialsStatus)
	}
	stdout, _, _ = f.run(t, "run", "--json", "--policy", off, "--", "cat", f.secret)
	r = agentexec.ResultJSON{}
	if err := json.Unmarshal([]byte(stdout), &r); err != nil || len(r.Denials) != 0 || r.DenialsStatus == nil ||
		r.DenialsStatus.State != "unavailable" || r.DenialsStatus.Reason != "kernel_denials: off" {
		t.Errorf("run --json without kernel denials: %v denials %+v status %+v", err, r.Denials, r.DenialsStatus)
	}

	stdout, stderr, code := f.run(t, "run", "--policy", on, "--", "cat", f.secret)
	if code != 1 || stdout != "" {
		t.Fatalf("cat of a file outside the roots: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	perm := strings.Index(stderr, "Permission denied")
	line := strings.Index(stderr, want+"\n")
	if perm < 0 || line < 0 || line < perm {
		t.Errorf("stderr lacks the tool's error followed by %q:\n%s", want, stderr)
	}
	if n := strings.Count(stderr, "agentexec run: denied:"); n != 1 {
		t.Errorf("%d denial lines, want exactly 1:\n%s", n, stderr)
	}

	// Control: kernel denials off, the tool fails the same, and nothing names why.
	_, stderr, code = f.run(t, "run", "--policy", off, "--", "cat", f.secret)
	if code != 1 || !strings.Contains(stderr, "Permission denied") || strings.Contains(stderr, "denied: landlock") {
		t.Errorf("without kernel denials: exit %d, stderr %q", code, stderr)
	}
	// --kernel-denials turns them on for a policy that does not.
	_, stderr, _ = f.run(t, "run", "--kernel-denials", "--policy", off, "--", "cat", f.secret)
	if !strings.Contains(stderr, want+"\n") {
		t.Errorf("--kernel-denials: stderr lacks %q:\n%s", want, stderr)
	}
	// -q: the tool's own stderr only.
	_, stderr, _ = f.run(t, "run", "-q", "--policy", on, "--", "cat", f.secret)
	if strings.Contains(stderr, "agentexec run:") {
		t.Errorf("-q: stderr %q", stderr)
	}
	// An allowed read: no denial, no note.
	if err := os.WriteFile(filepath.Join(f.ws, "ok.txt"), []byte("fine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code = f.run(t, "run", "--policy", on, "--", "cat", "ok.txt")
	if code != 0 || stdout != "fine\n" || strings.Contains(stderr, "denied") {
		t.Errorf("allowed read: exit %d stdout %q stderr %q", code, stdout, stderr)
	}

}
