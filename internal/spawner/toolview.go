package spawner

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// ToolView is what a spawner mounts, in a mount namespace of its own, so that tools
// running as the runtime's unprivileged tool identity (UID/GID, no supplementary
// groups) can use the policy's roots as the policy means them, without a change on
// disk:
//
//   - A root that identity may not use by its permission bits (a write root it
//     cannot create entries in, a read or exec root it cannot read or search) is
//     covered by an idmapped bind mount of itself (mount_setattr MOUNT_ATTR_IDMAP)
//     under which the root's on-disk owner and group appear as UID/GID. Files a
//     tool creates there are stored as owned by that owner, exactly as if the owner
//     had made them. Other ids show as the overflow id and grant their "other" bits.
//   - A directory above roots that the identity cannot search (a workspace under a
//     mode 0700 /root) is covered by a small tmpfs holding only the path to each
//     root beneath it, where a bind mount of the root (idmapped where needed) is
//     attached. Everything else in that directory is hidden from the tools, which
//     Landlock would refuse them anyway.
//
// Landlock rules are made after these mounts, through the same paths, so they
// attach to the same inodes.
type ToolView struct {
	UID uint32 `json:"uid"`
	GID uint32 `json:"gid"`
	// Shims are directories the identity cannot search, covered by a tmpfs.
	Shims []Shim `json:"shims,omitempty"`
	// Mapped are roots outside any shim mounted idmapped over themselves.
	Mapped []ViewRoot `json:"mapped,omitempty"`
}

// Shim covers Dir with a tmpfs that holds only Roots.
type Shim struct {
	Dir   string     `json:"dir"`
	Roots []ViewRoot `json:"roots"`
}

// ViewRoot is one root the view mounts.
type ViewRoot struct {
	Path string `json:"path"`
	Dir  bool   `json:"dir"`
	// Map, when set, is the on-disk owner the mount shows as the tool identity.
	Map *Owner `json:"map,omitempty"`
}

// Owner is an on-disk owner and group.
type Owner struct {
	UID uint32 `json:"uid"`
	GID uint32 `json:"gid"`
}

// Empty reports whether the view mounts nothing.
func (v *ToolView) Empty() bool { return v == nil || len(v.Shims)+len(v.Mapped) == 0 }

// Describe lists what the view does, for check and results.
func (v *ToolView) Describe() []string {
	if v.Empty() {
		return nil
	}
	var out []string
	for _, s := range v.Shims {
		var roots []string
		for _, r := range s.Roots {
			roots = append(roots, r.Path)
		}
		out = append(out, fmt.Sprintf("%s: not searchable by uid %d; tools see only %s there", s.Dir, v.UID, strings.Join(roots, ", ")))
	}
	for _, r := range v.Mapped {
		out = append(out, fmt.Sprintf("%s: idmapped, owner %d:%d seen as %d:%d", r.Path, r.Map.UID, r.Map.GID, v.UID, v.GID))
	}
	for _, s := range v.Shims {
		for _, r := range s.Roots {
			if r.Map != nil {
				out = append(out, fmt.Sprintf("%s: idmapped, owner %d:%d seen as %d:%d", r.Path, r.Map.UID, r.Map.GID, v.UID, v.GID))
			}
		}
	}
	return out
}

// PlanToolView decides the view for tools running as uid/gid from the profile's
// read, write and exec roots. Roots absent on this host are left out (Landlock
// skips them too).
func PlanToolView(read, write, exec []string, uid, gid uint32) *ToolView {
	v := &ToolView{UID: uid, GID: gid}
	writable := map[string]bool{}
	all := map[string]bool{}
	for _, r := range write {
		writable[r], all[r] = true, true
	}
	for _, r := range append(append([]string(nil), read...), exec...) {
		all[r] = true
	}
	roots := make([]string, 0, len(all))
	for r := range all {
		roots = append(roots, r)
	}
	sort.Strings(roots)
	// First what each root needs by its own permission bits, then, for each root,
	// the outermost directory above it that stays unsearchable: a directory beneath
	// a root mapped with owner O is seen as the tool's own when O owns it too.
	var vrs []ViewRoot
	mapped := map[string]Owner{}
	for _, r := range roots {
		var st unix.Stat_t
		if err := unix.Stat(r, &st); err != nil {
			continue
		}
		vr := ViewRoot{Path: r, Dir: st.Mode&unix.S_IFMT == unix.S_IFDIR}
		if !usable(&st, uid, gid, writable[r]) {
			vr.Map = &Owner{UID: st.Uid, GID: st.Gid}
			if vr.Dir {
				mapped[r] = *vr.Map
			}
		}
		vrs = append(vrs, vr)
	}
	shims := map[string]*Shim{}
	var shimOrder []string
	for _, vr := range vrs {
		if b := blockedAncestor(vr.Path, uid, gid, mapped); b != "" {
			s := shims[b]
			if s == nil {
				s = &Shim{Dir: b}
				shims[b] = s
				shimOrder = append(shimOrder, b)
			}
			s.Roots = append(s.Roots, vr)
			continue
		}
		if vr.Map != nil && !coveredBy(v.Mapped, vr) {
			v.Mapped = append(v.Mapped, vr)
		}
	}
	// A shim beneath another shim is covered by the outer one's roots.
	sort.Strings(shimOrder)
	var outer []string
	for _, b := range shimOrder {
		inner := false
		for _, o := range outer {
			if strings.HasPrefix(b, o+"/") {
				shims[o].Roots = append(shims[o].Roots, shims[b].Roots...)
				inner = true
				break
			}
		}
		if !inner {
			outer = append(outer, b)
		}
	}
	for _, b := range outer {
		s := shims[b]
		sort.Slice(s.Roots, func(i, j int) bool { return s.Roots[i].Path < s.Roots[j].Path })
		v.Shims = append(v.Shims, *s)
	}
	return v
}

// coveredBy reports whether r lies beneath an earlier mapped root with the same
// mapping (which its mount already carries).
func coveredBy(mapped []ViewRoot, r ViewRoot) bool {
	for _, m := range mapped {
		if strings.HasPrefix(r.Path, m.Path+"/") && sameMap(m.Map, r.Map) {
			return true
		}
	}
	return false
}

func sameMap(a, b *Owner) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// perm returns the permission bits (rwx) that apply to uid/gid (no supplementary
// groups, no capabilities).
func perm(st *unix.Stat_t, uid, gid uint32) uint32 {
	switch {
	case st.Uid == uid:
		return (st.Mode >> 6) & 7
	case st.Gid == gid:
		return (st.Mode >> 3) & 7
	default:
		return st.Mode & 7
	}
}

// usable reports whether uid/gid may use a root by its permission bits: read (and
// search, for a directory), and create entries in a writable directory.
func usable(st *unix.Stat_t, uid, gid uint32, write bool) bool {
	p := perm(st, uid, gid)
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return p&4 != 0 && (!write || p&2 != 0)
	}
	return p&5 == 5 && (!write || p&3 == 3)
}

// blockedAncestor returns the outermost directory above path that uid/gid cannot
// search, "" if every one can be. Beneath a root in mapped (an idmapped mount),
// entries owned by that root's on-disk owner are seen as owned by uid/gid.
func blockedAncestor(path string, uid, gid uint32, mapped map[string]Owner) string {
	parts := strings.Split(strings.TrimPrefix(filepath.Clean(path), "/"), "/")
	dir := "/"
	var under *Owner
	for _, p := range parts[:len(parts)-1] {
		dir = filepath.Join(dir, p)
		var st unix.Stat_t
		if err := unix.Stat(dir, &st); err != nil {
			return ""
		}
		if o, ok := mapped[dir]; ok {
			under = &o
		}
		if under != nil {
			if st.Uid == under.UID {
				st.Uid = uid
			}
			if st.Gid == under.GID {
				st.Gid = gid
			}
		}
		if perm(&st, uid, gid)&1 == 0 {
			return dir
		}
	}
	return ""
}

// userNSHoldFlag makes a spawner invocation a placeholder process that only keeps a
// user namespace alive until its stdin closes (see idmapUserNS).
const userNSHoldFlag = "--userns-hold"

// apply makes the view's mounts. It runs in the spawner, in its private mount
// namespace (already a slave of the host's, so nothing propagates back), as root,
// before capabilities are dropped. A root the filesystem cannot idmap (tmpfs before
// Linux 6.3, say) is left as it is, out of the tool identity's reach, and returned
// in degraded: tools get less than the policy grants, never more.
func (v *ToolView) apply() (degraded []string, err error) {
	ns := map[Owner]int{}
	defer func() {
		for _, fd := range ns {
			unix.Close(fd)
		}
	}()
	userns := func(o *Owner) (int, error) {
		if fd, ok := ns[*o]; ok {
			return fd, nil
		}
		fd, err := idmapUserNS(*o, Owner{UID: v.UID, GID: v.GID})
		if err != nil {
			return -1, err
		}
		ns[*o] = fd
		return fd, nil
	}
	// clone returns a detached copy of the root's mount tree, idmapped when asked;
	// mapped is false when the filesystem refused the idmapping.
	clone := func(r ViewRoot) (tree int, mapped bool, err error) {
		tree, err = unix.OpenTree(unix.AT_FDCWD, r.Path, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
		if err != nil {
			return -1, false, fmt.Errorf("tool view: clone %s: open_tree: %w", r.Path, err)
		}
		if r.Map == nil {
			return tree, false, nil
		}
		fd, err := userns(r.Map)
		if err != nil {
			unix.Close(tree)
			return -1, false, err
		}
		attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(fd)}
		if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &attr); err != nil {
			if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
				degraded = append(degraded, fmt.Sprintf("view: %s is not usable by the tool identity: its filesystem refuses idmapped mounts (%v); `user: root` for this profile keeps uid 0 tools", r.Path, err))
				return tree, false, nil
			}
			unix.Close(tree)
			return -1, false, fmt.Errorf("tool view: idmapped mount of %s: mount_setattr(MOUNT_ATTR_IDMAP): %w", r.Path, err)
		}
		return tree, true, nil
	}
	attach := func(tree int, target string) error {
		defer unix.Close(tree)
		if err := unix.MoveMount(tree, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
			return fmt.Errorf("tool view: attach %s: move_mount: %w", target, err)
		}
		return nil
	}
	for _, s := range v.Shims {
		// Every root is cloned while its path is still reachable, then the tmpfs
		// goes over the directory and the clones are attached inside it.
		trees := make([]int, len(s.Roots))
		for i, r := range s.Roots {
			t, _, err := clone(r)
			if err != nil {
				for _, fd := range trees[:i] {
					unix.Close(fd)
				}
				return degraded, err
			}
			trees[i] = t
		}
		if err := unix.Mount("agentexec-view", s.Dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0755,size=1m"); err != nil {
			for _, fd := range trees {
				unix.Close(fd)
			}
			return degraded, fmt.Errorf("tool view: tmpfs over %s: %w", s.Dir, err)
		}
		var mounted []ViewRoot
		for i, r := range s.Roots {
			if covered(mounted, r) {
				unix.Close(trees[i])
				continue
			}
			if err := makeTarget(s.Dir, r); err != nil {
				unix.Close(trees[i])
				return degraded, err
			}
			if err := attach(trees[i], r.Path); err != nil {
				return degraded, err
			}
			mounted = append(mounted, r)
		}
	}
	for _, r := range v.Mapped {
		t, mapped, err := clone(r)
		if err != nil {
			return degraded, err
		}
		if !mapped {
			unix.Close(t) // unmappable: left as it is
			continue
		}
		if err := attach(t, r.Path); err != nil {
			return degraded, err
		}
	}
	return degraded, nil
}

// covered reports whether r lies beneath a mounted root with the same mapping: its
// content is there already.
func covered(mounted []ViewRoot, r ViewRoot) bool {
	for _, m := range mounted {
		if strings.HasPrefix(r.Path, m.Path+"/") && sameMap(m.Map, r.Map) {
			return true
		}
	}
	return false
}

// makeTarget creates the mount point for r inside a shim's tmpfs (or finds it in a
// root mounted there before).
func makeTarget(shimDir string, r ViewRoot) error {
	if _, err := os.Lstat(r.Path); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(r.Path), 0o755); err != nil {
		return fmt.Errorf("tool view: under %s: %w", shimDir, err)
	}
	if r.Dir {
		return os.Mkdir(r.Path, 0o755)
	}
	f, err := os.OpenFile(r.Path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("tool view: under %s: %w", shimDir, err)
	}
	return f.Close()
}

// idmapUserNS returns an fd of a user namespace whose id maps send the on-disk
// owner to the tool identity. Only a process can be put in a new user namespace and
// have its maps written (by its parent), so a placeholder is started in one with
// the maps, its namespace opened, and the placeholder ended: the namespace lives
// on through the fd.
//
// The placeholder never runs a single instruction of its own: it is started under
// PTRACE_TRACEME (os/exec writes the maps, then the child execs this binary and
// stops at once with SIGTRAP, before its first instruction), and killed. That costs
// a fork and the kernel's part of an exec, not the Go runtime's start-up of a 26 MB
// program (~4-6 ms here: docs/performance.md, "Start-up"). Where ptrace is refused
// (Yama's ptrace_scope 3, a seccomp filter or LSM of the host), the placeholder is
// this binary run as `SPAWNER --userns-hold`, which waits for its stdin to close.
func idmapUserNS(from, to Owner) (int, error) {
	self, err := os.Executable()
	if err != nil {
		self = "/proc/self/exe"
	}
	fd, err := stoppedUserNS(self, from, to)
	if err == nil {
		spawnerTimeline.mark("user namespace (stopped placeholder)")
		return fd, nil
	}
	fd, herr := heldUserNS(self, from, to)
	if herr != nil {
		return -1, fmt.Errorf("tool view: user namespace for an idmapped mount: %w (a stopped placeholder: %w)", herr, err)
	}
	return fd, nil
}

// userNSAttr is the placeholder's namespace: in it, id From is kernel id To, so
// that on-disk From is seen as To through a mount idmapped with it, and To writes
// as From.
func userNSAttr(from, to Owner) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: int(from.UID), HostID: int(to.UID), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: int(from.GID), HostID: int(to.GID), Size: 1}},
		Pdeathsig:   syscall.SIGKILL,
	}
}

// stoppedUserNS makes the namespace with a placeholder that is stopped by ptrace
// right after its exec (see idmapUserNS), then kills and reaps it.
func stoppedUserNS(self string, from, to Owner) (int, error) {
	attr := userNSAttr(from, to)
	attr.Ptrace = true
	// No fds, no environment; its arguments would make it wait on a closed stdin
	// and exit, should it ever run.
	p, err := os.StartProcess(self, []string{self, SpawnerCommand, userNSHoldFlag}, &os.ProcAttr{Env: []string{}, Sys: attr})
	if err != nil {
		return -1, err
	}
	defer func() {
		_ = p.Kill()
		_, _ = p.Wait()
	}()
	return openUserNS(p.Pid)
}

// heldUserNS makes the namespace with a placeholder that runs until its stdin
// closes (holdUserNS).
func heldUserNS(self string, from, to Owner) (int, error) {
	cmd := exec.Command(self, SpawnerCommand, userNSHoldFlag)
	cmd.Env = []string{}
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = userNSAttr(from, to)
	in, err := cmd.StdinPipe()
	if err != nil {
		return -1, err
	}
	if err := cmd.Start(); err != nil {
		return -1, err
	}
	defer func() {
		in.Close()
		_ = cmd.Wait()
	}()
	return openUserNS(cmd.Process.Pid)
}

func openUserNS(pid int) (int, error) {
	fd, err := unix.Open(fmt.Sprintf("/proc/%d/ns/user", pid), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open the placeholder's user namespace: %w", err)
	}
	return fd, nil
}

// holdUserNS is the placeholder's whole life: wait for stdin to close.
func holdUserNS() {
	_, _ = io.Copy(io.Discard, os.Stdin)
	unix.Exit(0) // os.Exit sleeps a second in -race builds
}
