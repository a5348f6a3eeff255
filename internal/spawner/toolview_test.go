package spawner

import (
	"os"
	"path/filepath"
	"testing"
)

// PlanToolView maps what the tool identity cannot use by its permission bits and
// covers directories it cannot search with a shim holding only the roots.
func TestPlanToolView(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make directories owned by another uid")
	}
	const uid, gid = 4000001, 4000001
	base := t.TempDir() // mode 0700, owned by root: not searchable by uid
	if err := os.Chmod(filepath.Dir(base), 0o755); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(base, "open")
	mk := func(p string, mode os.FileMode) string {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ws := mk(filepath.Join(base, "ws"), 0o755)
	out := mk(filepath.Join(ws, "out"), 0o755)
	shared := mk(filepath.Join(base, "shared"), 0o1777)
	mk(open, 0o755)
	if err := os.Chmod(base, 0o711); err != nil { // searchable: no shim needed
		t.Fatal(err)
	}
	v := PlanToolView([]string{ws, shared, "/usr"}, []string{out, shared, "/dev/null", filepath.Join(base, "absent")}, nil, uid, gid)
	if len(v.Shims) != 0 {
		t.Errorf("shims %+v, want none (every ancestor is searchable)", v.Shims)
	}
	if len(v.Mapped) != 1 || v.Mapped[0].Path != out || v.Mapped[0].Map == nil || v.Mapped[0].Map.UID != 0 {
		t.Errorf("mapped %+v, want only %s (root-owned 0755 write root)", v.Mapped, out)
	}

	if err := os.Chmod(base, 0o700); err != nil {
		t.Fatal(err)
	}
	v = PlanToolView([]string{ws, "/usr"}, []string{out}, nil, uid, gid)
	if len(v.Shims) != 1 || v.Shims[0].Dir != base {
		t.Fatalf("shims %+v, want one over %s", v.Shims, base)
	}
	roots := v.Shims[0].Roots
	if len(roots) != 2 || roots[0].Path != ws || roots[0].Map != nil || roots[1].Path != out || roots[1].Map == nil {
		t.Errorf("shim roots %+v, want %s (plain) then %s (mapped)", roots, ws, out)
	}
	if len(v.Mapped) != 0 {
		t.Errorf("mapped %+v, want none outside the shim", v.Mapped)
	}
	// A root that is itself the blocked directory's child of a mapped root: the
	// scan stops at roots, so a 0700 workspace is mapped, not shimmed over.
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(ws, 0o700); err != nil {
		t.Fatal(err)
	}
	v = PlanToolView([]string{ws}, []string{out}, nil, uid, gid)
	if len(v.Shims) != 0 || len(v.Mapped) != 1 || v.Mapped[0].Path != ws {
		t.Errorf("view %+v, want %s mapped (covering %s) and no shim", v, ws, out)
	}
}
