package spawner

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// A spawner started with CLONE_NEWNS has a mount namespace of its own, shared by all
// its tools. Before it restricts itself it applies a MountPlan there: first every
// mount becomes a slave (mounts made here never propagate back to the host; the
// host's later mounts still show here), then the plan's operations run in order.
// Tools cannot undo them: they have no capabilities, the seccomp filter refuses
// mount(2) and its relatives, and Landlock denies changes to the mount topology.

// MountKind is what a MountOp does.
type MountKind string

const (
	// MountBind binds Source (Target when Source is empty) onto Target, with every
	// mount beneath it (a recursive bind), after setting AttrSet on the new mounts.
	// A path bound onto itself becomes a mount point: rename(2), rmdir(2) and
	// unlink(2) of it fail with EBUSY in this namespace.
	MountBind MountKind = "bind"
)

// MountOp is one mount operation of a MountPlan.
type MountOp struct {
	Kind MountKind `json:"kind"`
	// Source is the path to bind ("": Target itself).
	Source string `json:"source,omitempty"`
	// Target is where the new mount goes. Its last component is not followed when
	// it is a symbolic link (the operation then fails).
	Target string `json:"target"`
	// AttrSet are MOUNT_ATTR_* flags set on the new mounts before they are attached
	// (MOUNT_ATTR_RDONLY: read-only). Kernels without mount_setattr (before 5.12) get
	// the equivalent MS_* remount, of the top mount only.
	AttrSet uint64 `json:"attr_set,omitempty"`
	// Optional ops whose Source or Target no longer exists are skipped (and named on
	// the spawner's stderr) rather than failing the spawner: the plan is computed when
	// the runtime starts, and the host may have removed a path since.
	Optional bool `json:"optional,omitempty"`
}

// NSID identifies a namespace: the device and inode of its /proc/PID/ns file.
type NSID struct {
	Dev uint64 `json:"dev"`
	Ino uint64 `json:"ino"`
}

// MountPlan is the mount setup of a spawner's private mount namespace, applied by
// one function (apply) in the order given.
type MountPlan struct {
	// HostNS is the main process's mount namespace: a spawner that finds itself in it
	// (not started with CLONE_NEWNS) refuses to apply the plan rather than change the
	// host's mounts.
	HostNS NSID      `json:"host_ns"`
	Ops    []MountOp `json:"ops"`
}

// CurrentMountNS returns the calling process's mount namespace.
func CurrentMountNS() (NSID, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/mnt", &st); err != nil {
		return NSID{}, fmt.Errorf("stat /proc/self/ns/mnt: %w", err)
	}
	return NSID{Dev: st.Dev, Ino: st.Ino}, nil
}

// apply runs in the spawner, first thing in setup: it makes every mount a slave, then
// applies the operations. It refuses to run in the host's namespace.
func (p *MountPlan) apply() error {
	ns, err := CurrentMountNS()
	if err != nil {
		return err
	}
	if ns == p.HostNS {
		return errors.New("the spawner shares the agent's mount namespace (not started with CLONE_NEWNS); refusing to mount")
	}
	// Nothing below may propagate to the host's namespace. MS_SLAVE keeps receiving
	// the host's mount events (a private mount would not).
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return fmt.Errorf("mount --make-rslave /: %w", err)
	}
	for i := range p.Ops {
		op := &p.Ops[i]
		err := op.apply()
		if err != nil && op.Optional && errors.Is(err, unix.ENOENT) {
			fmt.Fprintf(os.Stderr, "agentexec spawner: %s gone since the runtime started; not mounted: %v\n", op.Target, err)
			continue
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// noMountSetattr is set once the kernel turned out not to have the new mount API
// (open_tree, mount_setattr, move_mount: Linux 5.12); a test sets it to exercise the
// fallback.
var noMountSetattr bool

func (op *MountOp) apply() error {
	if op.Kind != MountBind {
		return fmt.Errorf("mount %s: unknown kind %q", op.Target, op.Kind)
	}
	src := op.Source
	if src == "" {
		src = op.Target
	}
	if !noMountSetattr {
		err := bindNew(src, op.Target, op.AttrSet)
		if !errors.Is(err, unix.ENOSYS) {
			return err
		}
		noMountSetattr = true
	}
	return bindClassic(src, op.Target, op.AttrSet)
}

// bindNew clones the tree at src (without following a final symbolic link), sets attr
// on the whole clone and attaches it at target: the mount is read-only from the
// moment it is visible.
func bindNew(src, target string, attr uint64) error {
	fd, err := unix.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE|unix.AT_SYMLINK_NOFOLLOW)
	if err != nil {
		return fmt.Errorf("open_tree(%s): %w", src, err)
	}
	defer unix.Close(fd)
	if attr != 0 {
		ma := unix.MountAttr{Attr_set: attr}
		if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &ma); err != nil {
			return fmt.Errorf("mount_setattr(%s, %#x): %w", src, attr, err)
		}
	}
	if err := unix.MoveMount(fd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("move_mount(%s → %s): %w", src, target, err)
	}
	return nil
}

// statfsFlags maps the per-mount flags statfs(2) reports to the MS_* flags a bind
// remount must repeat to keep them.
var statfsFlags = []struct{ st, ms uintptr }{
	{unix.ST_NOSUID, unix.MS_NOSUID},
	{unix.ST_NODEV, unix.MS_NODEV},
	{unix.ST_NOEXEC, unix.MS_NOEXEC},
	{unix.ST_NOATIME, unix.MS_NOATIME},
	{unix.ST_NODIRATIME, unix.MS_NODIRATIME},
	{unix.ST_RELATIME, unix.MS_RELATIME},
}

// bindClassic is bindNew with mount(2): a recursive bind, then a remount of the new top
// mount with attr's flags added to those it had.
func bindClassic(src, target string, attr uint64) error {
	var st unix.Stat_t
	if err := unix.Lstat(target, &st); err != nil {
		return fmt.Errorf("lstat %s: %w", target, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return fmt.Errorf("mount %s: %w (a symbolic link)", target, unix.ELOOP)
	}
	if err := unix.Mount(src, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("mount --rbind %s %s: %w", src, target, err)
	}
	if attr == 0 {
		return nil
	}
	if attr&^unix.MOUNT_ATTR_RDONLY != 0 {
		return fmt.Errorf("mount %s: attributes %#x need mount_setattr (Linux 5.12)", target, attr)
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(target, &sfs); err != nil {
		return fmt.Errorf("statfs %s: %w", target, err)
	}
	flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY)
	for _, f := range statfsFlags {
		if uintptr(sfs.Flags)&f.st != 0 {
			flags |= f.ms
		}
	}
	if err := unix.Mount("", target, "", flags, ""); err != nil {
		return fmt.Errorf("mount -o remount,bind,ro %s: %w", target, err)
	}
	return nil
}
