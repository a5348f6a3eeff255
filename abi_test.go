package agentexec_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/internal/testutil"
	"github.com/agentexec/agentexec/policy"
)

// olderABIPolicy has TCP rules, which need Landlock ABI 4.
func olderABIPolicy(t *testing.T, enforcement string) *policy.Policy {
	ws := t.TempDir()
	y := fmt.Sprintf(`version: 1
workspace: %s
defaults:
  filesystem:
    read: [/usr, /lib, /lib64, /bin, /etc, "${WORKSPACE}"]
    exec: [/usr, /bin, /lib, /lib64]
  network: {connect_tcp: [443]}
  enforcement: {landlock: %s, cgroup: best_effort}
tools:
  sh: {exec: /bin/sh}
`, ws, enforcement)
	p, err := policy.Parse("abi.yaml", []byte(y), policy.Options{Workspace: ws, Home: "/root", CPUs: runtime.NumCPU()})
	if err != nil {
		t.Fatal(err)
	}
	if err := policy.Resolve(p); err != nil {
		t.Fatal(err)
	}
	return p
}

// On a kernel whose Landlock ABI lacks TCP rules (ABI < 4: Linux 6.1 in the VM
// tier), require refuses to start and names the feature; best_effort starts, reports
// what it does not enforce, and still enforces the filesystem rules.
func TestOlderLandlockABI(t *testing.T) {
	testutil.RequireRoot(t)
	abi, err := testutil.LandlockABI()
	if err != nil || abi == 0 {
		t.Skipf("requires Landlock: %v", err)
	}
	if abi >= 4 {
		t.Skipf("requires a Landlock ABI older than 4 (have %d); runs in the VM tier's 6.1 guest (make vmtest)", abi)
	}
	_, err = agentexec.New(context.Background(), olderABIPolicy(t, "require"))
	if err == nil {
		t.Fatal("landlock: require started on an ABI without TCP rules")
	}
	if !errors.Is(err, agentexec.ErrNotSupported) || !strings.Contains(err.Error(), "net_tcp (ABI 4)") {
		t.Fatalf("error %q does not name the missing feature net_tcp (ABI 4)", err)
	}
	rt, err := agentexec.New(context.Background(), olderABIPolicy(t, "best_effort"))
	if err != nil {
		t.Fatalf("best_effort: %v", err)
	}
	defer rt.Close()
	r, err := rt.Run(context.Background(), agentexec.Request{Tool: "sh", Args: []string{"-c", "cat /etc/hostname >/dev/null; echo hi > /tmp/x"}})
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(r.Unenforced, "; ")
	if !strings.Contains(joined, "net_tcp") {
		t.Errorf("unenforced %q does not report net_tcp", r.Unenforced)
	}
	if r.ExitCode == 0 {
		t.Errorf("write outside the write roots succeeded under best_effort on ABI %d", abi)
	}
	if _, err := os.Stat("/tmp/x"); err == nil {
		t.Errorf("/tmp/x was written")
	}
}
