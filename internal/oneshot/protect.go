package oneshot

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec/internal/spawner"
)

// The repository metadata in a profile's writable roots and its protect: paths
// are kept read-only for the tool (docs/security.md, "Repository metadata"), as a
// spawner keeps them: in a mount namespace of the tool's own. Here the forking
// thread unshares it (a thread of a Go process may: unshare(CLONE_NEWNS) also
// unshares the thread's filesystem attributes), makes every mount a slave of the
// host's and binds each protected path read-only onto itself; the tool inherits the
// namespace, and nothing of it is seen outside. The thread ends with the launch.

// protection is what a launch protects: the spawner package's plan and the
// sentinel paths swept after the launch.
type protection struct {
	plan      *spawner.Protection
	sentinels []string
	// accounts bind copies of /etc/passwd and /etc/group that name the tool
	// identity: kept in accountCacheDir, or written to accountsDir, which the
	// session removes at its end (the binds keep the files for the tool).
	accounts    []spawner.MountOp
	accountsDir string
}

// planProtection scans the profile as a Runtime does (agentexec's protect.go): an
// empty hooks/ or info/ is made in a repository that lacks it, so that it exists to
// be kept read-only. It needs a private mount namespace, so root; without one the
// caller leaves the launch to the Runtime path (which lists the gap).
func (l *Launch) planProtection() (*protection, error) {
	facts := spawner.ScanProtection(l.prof)
	prot := spawner.PlanProtection(facts)
	if prot.Empty() {
		return &protection{plan: prot}, nil
	}
	if os.Geteuid() != 0 {
		return nil, fallbackf("profile %s: protected repository metadata needs a private mount namespace (root)", l.prof.Name)
	}
	if made, _ := spawner.EnsureHookDirs(facts); len(made) > 0 {
		facts = spawner.ScanProtection(l.prof)
		prot = spawner.PlanProtection(facts)
	}
	return &protection{plan: prot, sentinels: spawner.Sentinels(facts)}, nil
}

// threadNS identifies the calling thread's mount namespace.
func threadNS() (spawner.NSID, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/mnt", &st); err != nil {
		return spawner.NSID{}, fmt.Errorf("stat /proc/thread-self/ns/mnt: %w", err)
	}
	return spawner.NSID{Dev: st.Dev, Ino: st.Ino}, nil
}

// applyOnThread gives the calling, locked thread a mount namespace of its own
// with the protection's mounts. It runs before the thread drops its capabilities.
func (p *protection) applyOnThread() error {
	if p == nil || p.plan.Empty() && len(p.accounts) == 0 {
		return nil
	}
	host, err := threadNS()
	if err != nil {
		return err
	}
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("unshare(CLONE_NEWNS): %w", err)
	}
	plan := p.plan.MountPlan(host)
	if plan == nil {
		plan = &spawner.MountPlan{HostNS: host}
	}
	plan.Ops = append(plan.Ops, p.accounts...)
	ns, err := threadNS()
	if err != nil {
		return err
	}
	if ns == plan.HostNS {
		return errors.New("the forking thread is still in the host's mount namespace; refusing to mount")
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return fmt.Errorf("mount --make-rslave /: %w", err)
	}
	for _, op := range plan.Ops {
		err := bindReadOnly(op)
		if err != nil && op.Optional && errors.Is(err, unix.ENOENT) {
			continue // gone since the scan: nothing to protect
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// bindReadOnly applies one operation of a spawner's mount plan with the new mount
// API (Linux 5.12), as the spawner does: the clone of the tree at the source, with
// the attributes set on all of it before it is attached, so that it is read-only
// from the moment it is visible. A kernel without it leaves the launch to the
// Runtime path (ENOSYS, checked by the caller before the fork).
func bindReadOnly(op spawner.MountOp) error {
	if op.Kind != spawner.MountBind {
		return fmt.Errorf("mount %s: unknown kind %q", op.Target, op.Kind)
	}
	src := op.Source
	if src == "" {
		src = op.Target
	}
	fd, err := unix.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE|unix.AT_SYMLINK_NOFOLLOW)
	if err != nil {
		return fmt.Errorf("open_tree(%s): %w", src, err)
	}
	defer unix.Close(fd)
	if op.AttrSet != 0 {
		ma := unix.MountAttr{Attr_set: op.AttrSet}
		if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &ma); err != nil {
			return fmt.Errorf("mount_setattr(%s, %#x): %w", src, op.AttrSet, err)
		}
	}
	if err := unix.MoveMount(fd, "", unix.AT_FDCWD, op.Target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("move_mount(%s → %s): %w", src, op.Target, err)
	}
	return nil
}

// sweep removes what the launch planted at a sentinel path (a .git/commondir, say,
// which would send the caller's next git command to a config of the tool's
// making), once the tool's tree is dead, as a Runtime does after every launch.
func (p *protection) sweep() {
	if p == nil {
		return
	}
	for _, s := range p.sentinels {
		if _, err := os.Lstat(s); err == nil {
			_ = os.RemoveAll(s)
		}
	}
}

// addAccounts gives the tool identity uid:gid an account in the tool's view
// (read-only copies of /etc/passwd and /etc/group bound over the originals in the
// forking thread's mount namespace), as a Runtime's spawner does. The copies come
// from the cache of earlier runs (cachedAccountBinds), or, where it cannot be used,
// from a directory of this run's (accountsDir, removed at the end).
func (p *protection) addAccounts(uid, gid uint32) error {
	ops, ok, err := cachedAccountBinds(uid, gid)
	if ok || err != nil {
		p.accounts = ops
		return err
	}
	dir, err := os.MkdirTemp("", "agentexec-accounts-")
	if err != nil {
		return err
	}
	p.accountsDir = dir
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	p.accounts, err = spawner.AccountBinds(dir, uid, gid)
	return err
}
