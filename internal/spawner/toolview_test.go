package spawner

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
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

// Both ways of making an idmapped mount's user namespace — the placeholder stopped
// at its exec (the usual one) and the exec'd --userns-hold placeholder (the
// fallback where ptrace is refused) — give a namespace under which root's files
// show as the tool identity's, and leave no process behind. The control, the same
// tree without the idmapping, shows them as root's.
func TestIdmapUserNS(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make user namespaces with other ids mapped and idmapped mounts")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	to := Owner{UID: 4000001, GID: 4000002}
	owner := func(userns int) (uint32, uint32) {
		t.Helper()
		tree, err := unix.OpenTree(unix.AT_FDCWD, dir, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
		if err != nil {
			t.Fatalf("open_tree: %v", err)
		}
		defer unix.Close(tree)
		if userns >= 0 {
			attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(userns)}
			if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH, &attr); err != nil {
				if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
					t.Skipf("the filesystem of %s refuses idmapped mounts: %v", dir, err)
				}
				t.Fatalf("mount_setattr(MOUNT_ATTR_IDMAP): %v", err)
			}
		}
		var st unix.Stat_t
		if err := unix.Fstatat(tree, "f", &st, 0); err != nil {
			t.Fatal(err)
		}
		return st.Uid, st.Gid
	}
	if uid, gid := owner(-1); uid != 0 || gid != 0 {
		t.Fatalf("control: %d:%d, want 0:0", uid, gid)
	}
	for name, mk := range map[string]func(string, Owner, Owner) (int, error){"stopped": stoppedUserNS, "held": heldUserNS} {
		fd, err := mk(self, Owner{}, to)
		if err != nil {
			t.Fatalf("%s placeholder: %v", name, err)
		}
		uid, gid := owner(fd)
		unix.Close(fd)
		if uid != to.UID || gid != to.GID {
			t.Errorf("%s placeholder: root's file shows as %d:%d, want %d:%d", name, uid, gid, to.UID, to.GID)
		}
		if _, err := unix.Wait4(-1, nil, unix.WNOHANG, nil); !errors.Is(err, unix.ECHILD) {
			t.Errorf("%s placeholder: a child is left (wait4: %v)", name, err)
		}
	}
}
