package agentexec_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentexec/agentexec/internal/audit"
	"github.com/agentexec/agentexec/internal/sys"
	"github.com/agentexec/agentexec/internal/testutil"
	"github.com/agentexec/agentexec/policy"
)

func auditEnabled(t *testing.T) uint32 {
	t.Helper()
	c, err := sys.OpenAudit(0, 0)
	if err != nil {
		t.Skipf("audit netlink socket: %v", err)
	}
	defer c.Close()
	st, err := c.GetStatus(2 * time.Second)
	if err != nil {
		t.Skipf("AUDIT_GET: %v", err)
	}
	return st.Enabled
}

// liveAuditHolders is how many live processes hold the host's audit on through the
// shared state (audit.LiveHolders).
func liveAuditHolders(t *testing.T) int {
	t.Helper()
	n, err := audit.LiveHolders("")
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// With kernel_denials: on, a read the sandbox refuses comes back as a Landlock
// denial of that launch, naming the file, with the policy change that would
// allow it; the same tool reading an allowed file has none (the control), and a
// launch without the setting reports denials unavailable. The host's audit state
// is what it was once the runtime is closed (when no other process held it on).
func TestKernelDenials(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireLandlockABI(t, 7)
	before := auditEnabled(t)
	// Other processes (other packages' tests, agentexec runs) may hold the host's
	// audit on through the shared state: then what we saw is not the host's own
	// setting, and the last holder, maybe not this runtime, restores that.
	pristine := liveAuditHolders(t) == 0
	// A world-readable file outside the policy's roots: only Landlock refuses it
	// (a file behind a directory the tool's uid cannot search fails DAC first and
	// is never logged by Landlock).
	dir, err := os.MkdirTemp("/tmp", "agentexec-denial-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, ws := testPolicyTop(t, "kernel_denials: on\n")
	allowed := filepath.Join(ws, "allowed")
	if err := os.WriteFile(allowed, []byte("y"), 0o644); err != nil {
		t.Fatal(err)
	}
	rt := newRuntime(t, p)

	r := run(t, rt, "self", "-helper", "read", secret)
	if r.ExitCode == 0 {
		t.Fatalf("read of %s outside the roots succeeded", secret)
	}
	if r.DenialsStatus.State != "complete" {
		t.Errorf("denials status %+v, want complete", r.DenialsStatus)
	}
	i := slices.IndexFunc(r.Denials, func(d policy.Denial) bool {
		return d.Layer == policy.LayerLandlock && d.Access == "fs.read_file" && d.Object.Path == secret
	})
	if i < 0 {
		t.Fatalf("denials %+v: want landlock fs.read_file on %s", r.Denials, secret)
	}
	if h := r.Denials[i].Hint; h == nil || h.ByDesign || len(h.Patch) == 0 || !strings.Contains(h.Patch[0].Field, "filesystem.read") {
		t.Errorf("hint %+v, want a patch adding the file to a filesystem.read list", h)
	}

	// A grandchild's denial is the launch's too (sh runs cat): the launch's own
	// Landlock domain names every record of its tree.
	r = run(t, rt, "sh", "-c", "cat "+secret+"; exit 0")
	if !slices.ContainsFunc(r.Denials, func(d policy.Denial) bool { return d.Access == "fs.read_file" && d.Object.Path == secret }) {
		t.Errorf("sh -c cat: denials %+v, want the grandchild's read of %s", r.Denials, secret)
	}

	// The control: an allowed read has no denial of its file. (The Go runtime of
	// the helper itself reads files outside the roots at start, such as
	// /sys/kernel/mm/transparent_hugepage/hpage_pmd_size: those are real denials
	// too, and listed.)
	r = run(t, rt, "self", "-helper", "read", allowed)
	if r.ExitCode != 0 || r.DenialsStatus.State != "complete" || slices.ContainsFunc(r.Denials, func(d policy.Denial) bool { return d.Object.Path == allowed || d.Object.Path == secret }) {
		t.Errorf("allowed read: exit %d, denials %+v, status %+v", r.ExitCode, r.Denials, r.DenialsStatus)
	}
	if err := rt.Close(); err != nil {
		t.Fatal(err)
	}
	if after := auditEnabled(t); pristine && liveAuditHolders(t) == 0 && after != before {
		t.Errorf("audit enabled=%d after Close, was %d", after, before)
	}

	// Without kernel_denials, results say why there are none.
	p2, _ := testPolicy(t, "")
	rt2 := newRuntime(t, p2)
	r = run(t, rt2, "self", "-helper", "read", secret)
	if r.DenialsStatus.State != "unavailable" || !strings.Contains(r.DenialsStatus.Reason, "kernel_denials: off") || len(r.Denials) != 0 {
		t.Errorf("kernel_denials off: %+v %+v", r.Denials, r.DenialsStatus)
	}
}
