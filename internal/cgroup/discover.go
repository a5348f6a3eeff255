package cgroup

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Mode is the cgroup layout of the host.
type Mode string

const (
	// ModeUnified is a pure cgroup v2 host: cgroup2 mounted at /sys/fs/cgroup.
	ModeUnified Mode = "unified"
	// ModeHybrid is a host with v1 controllers at /sys/fs/cgroup/* and a v2 hierarchy at
	// /sys/fs/cgroup/unified (usually without the memory, pids and cpu controllers,
	// which v1 holds).
	ModeHybrid Mode = "hybrid"
	// ModeNone means no cgroup v2 hierarchy is mounted.
	ModeNone Mode = "none"
)

// Default mount points probed by Discover, in order.
const (
	unifiedMount = "/sys/fs/cgroup"
	hybridMount  = "/sys/fs/cgroup/unified"
)

// Info is what Discover found. It is read-only: producing it changes nothing on the
// host.
type Info struct {
	// Mode is the layout: unified, hybrid or none.
	Mode Mode
	// Mount is the cgroup v2 mount point ("" in ModeNone).
	Mount string
	// Self is this process's v2 cgroup relative to Mount, e.g. "/" (from the "0::" line
	// of /proc/self/cgroup, with the mount's root stripped when the mount shows only a
	// subtree, as in a container without a cgroup namespace).
	Self string
	// Dir is Mount joined with Self: the directory of this process's cgroup.
	Dir string
	// CanCreate reports whether this process may create child cgroups under Dir (root,
	// or an owned/delegated subtree, writable). Reason says why not when false.
	CanCreate bool
	Reason    string
	// Controllers is Dir's cgroup.controllers: the controllers children of Dir can get.
	Controllers []string
	// SubtreeControl is Dir's cgroup.subtree_control: the controllers already enabled
	// for Dir's children.
	SubtreeControl []string
	// SelfProcs is the number of processes in Dir's cgroup.procs (this one included).
	// Enabling controllers in a non-root cgroup with processes fails with EBUSY (the
	// no-internal-processes rule), so NewManager then moves this process into a leaf.
	SelfProcs int
	// HasKill reports whether the kernel has cgroup.kill (Linux 5.14). KillSource says
	// how that was established ("<path> exists", or the kernel version when no non-root
	// cgroup was at hand to look at; the root cgroup has no cgroup.kill).
	HasKill    bool
	KillSource string
	// HasFreeze reports whether the kernel has cgroup.freeze (Linux 5.2), used by the
	// Kill fallback.
	HasFreeze bool
	// Kernel is the running kernel's release (uname -r).
	Kernel string
	// Features is /sys/kernel/cgroup/features (e.g. nsdelegate, memory_recursiveprot).
	Features []string
}

// Has reports whether name is in Controllers (exact match: "cpu" is not "cpuset").
func (i *Info) Has(name string) bool { return contains(i.Controllers, name) }

// IsRoot reports whether Self is the root of the mounted v2 hierarchy (which is exempt
// from the no-internal-processes rule).
func (i *Info) IsRoot() bool { return i.Self == "/" }

// Lines renders Info for `agentexec check`, one "key: value" per line.
func (i *Info) Lines() []string {
	if i.Mode == ModeNone {
		return []string{"cgroup mode: none (no cgroup v2 hierarchy mounted)"}
	}
	l := []string{
		"cgroup mode: " + string(i.Mode),
		"cgroup v2 mount: " + i.Mount,
		"own cgroup: " + i.Self + " (" + strconv.Itoa(i.SelfProcs) + " processes)",
	}
	if i.CanCreate {
		l = append(l, "can create child cgroups: yes")
	} else {
		l = append(l, "can create child cgroups: no ("+i.Reason+")")
	}
	l = append(l,
		"controllers available: "+orNone(i.Controllers),
		"controllers enabled for children: "+orNone(i.SubtreeControl),
		fmt.Sprintf("cgroup.kill: %v (%s)", yesNo(i.HasKill), i.KillSource),
		"cgroup.freeze: "+yesNo(i.HasFreeze),
		"kernel: "+i.Kernel,
	)
	for _, c := range []string{"memory", "pids", "cpu"} {
		if !i.Has(c) {
			l = append(l, "limit not enforceable here: "+c+" (controller "+c+" absent from "+i.Dir+"/cgroup.controllers)")
		}
	}
	return l
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "(none)"
	}
	return strings.Join(s, " ")
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// Discover probes the host's cgroup v2 setup. It only reads: no directory is created
// and no file written. In ModeNone it returns an Info with Mode none and a nil error;
// errors are for unexpected failures (an unreadable /proc/self/cgroup, say).
func Discover() (*Info, error) {
	info := &Info{Mode: ModeNone}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return nil, os.NewSyscallError("uname", err)
	}
	info.Kernel = unix.ByteSliceToString(uts.Release[:])
	if b, err := os.ReadFile("/sys/kernel/cgroup/features"); err == nil {
		info.Features = strings.Fields(string(b))
	}
	switch {
	case isCgroup2(unifiedMount):
		info.Mode, info.Mount = ModeUnified, unifiedMount
	case isCgroup2(hybridMount):
		info.Mode, info.Mount = ModeHybrid, hybridMount
	default:
		return info, nil
	}

	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, fmt.Errorf("cgroup: discover: %w", err)
	}
	self, err := parseProcCgroup(b)
	if err != nil {
		return nil, err
	}
	root, err := mountRoot("/proc/self/mountinfo", info.Mount)
	if err != nil {
		return nil, err
	}
	if root != "/" && (self == root || strings.HasPrefix(self, root+"/")) {
		self = "/" + strings.TrimPrefix(strings.TrimPrefix(self, root), "/")
	}
	info.Self = self
	info.Dir = filepath.Join(info.Mount, self)

	if info.Controllers, err = readFields(filepath.Join(info.Dir, "cgroup.controllers")); err != nil {
		return nil, err
	}
	if info.SubtreeControl, err = readFields(filepath.Join(info.Dir, "cgroup.subtree_control")); err != nil {
		return nil, err
	}
	procs, err := readPids(filepath.Join(info.Dir, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	info.SelfProcs = len(procs)
	info.CanCreate, info.Reason = canCreate(info.Dir)
	info.HasKill, info.KillSource = probeInterfaceFile(info, "cgroup.kill", 5, 14)
	info.HasFreeze, _ = probeInterfaceFile(info, "cgroup.freeze", 5, 2)
	return info, nil
}

func isCgroup2(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
}

// parseProcCgroup returns the path of the "0::" (v2) line of /proc/PID/cgroup.
func parseProcCgroup(b []byte) (string, error) {
	for line := range bytes.SplitSeq(b, []byte{'\n'}) {
		if p, ok := bytes.CutPrefix(line, []byte("0::")); ok {
			s := string(p)
			// A cgroup removed under a process reads as "/path (deleted)".
			s = strings.TrimSuffix(s, " (deleted)")
			if !strings.HasPrefix(s, "/") {
				return "", fmt.Errorf("cgroup: /proc/self/cgroup: v2 path %q is not absolute", s)
			}
			return s, nil
		}
	}
	return "", fmt.Errorf("cgroup: /proc/self/cgroup has no cgroup v2 (\"0::\") line")
}

// mountRoot returns the root field of the mountinfo entry for the cgroup2 mount at
// mountPoint ("/" normally; a subtree when a container shows only part of the
// hierarchy without a cgroup namespace).
func mountRoot(mountinfo, mountPoint string) (string, error) {
	f, err := os.Open(mountinfo)
	if err != nil {
		return "", fmt.Errorf("cgroup: discover: %w", err)
	}
	defer f.Close()
	root := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint opts... - fstype source superopts
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 || fields[4] != mountPoint {
			continue
		}
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+1 >= len(fields) || fields[sep+1] != "cgroup2" {
			continue
		}
		root = fields[3] // the last matching entry is the one visible
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("cgroup: reading %s: %w", mountinfo, err)
	}
	if root == "" {
		root = "/"
	}
	return root, nil
}

func canCreate(dir string) (bool, string) {
	if err := unix.Access(dir, unix.W_OK|unix.X_OK); err != nil {
		return false, fmt.Sprintf("no write access to %s: %v", dir, err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return false, fmt.Sprintf("statfs %s: %v", dir, err)
	}
	if st.Flags&unix.ST_RDONLY != 0 {
		return false, dir + " is on a read-only mount"
	}
	if os.Geteuid() != 0 {
		// A delegated subtree (systemd Delegate=yes, a user session) hands the
		// directory, cgroup.procs and cgroup.subtree_control to the user.
		for _, f := range []string{"cgroup.procs", "cgroup.subtree_control"} {
			if err := unix.Access(filepath.Join(dir, f), unix.W_OK); err != nil {
				return false, fmt.Sprintf("%s is not writable (subtree not delegated to uid %d): %v", filepath.Join(dir, f), os.Geteuid(), err)
			}
		}
	}
	return true, ""
}

// probeInterfaceFile decides whether the kernel has a core interface file that the
// root cgroup lacks (cgroup.kill, cgroup.freeze): it looks in Self when Self is not
// the root, else in any child of the mount, else falls back to the kernel version.
func probeInterfaceFile(info *Info, name string, major, minor int) (bool, string) {
	if !info.IsRoot() {
		p := filepath.Join(info.Dir, name)
		_, err := os.Stat(p)
		return err == nil, p + existsText(err)
	}
	entries, _ := os.ReadDir(info.Mount)
	for _, e := range entries {
		if e.IsDir() {
			p := filepath.Join(info.Mount, e.Name(), name)
			_, err := os.Stat(p)
			return err == nil, p + existsText(err)
		}
	}
	ok := kernelAtLeast(info.Kernel, major, minor)
	return ok, fmt.Sprintf("kernel %s, %s since %d.%d", info.Kernel, name, major, minor)
}

func existsText(err error) string {
	if err == nil {
		return " exists"
	}
	if errors.Is(err, fs.ErrNotExist) {
		return " does not exist"
	}
	return ": " + err.Error()
}

func kernelAtLeast(release string, major, minor int) bool {
	var ma, mi int
	if _, err := fmt.Sscanf(release, "%d.%d", &ma, &mi); err != nil {
		return false
	}
	return ma > major || (ma == major && mi >= minor)
}

func readFields(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cgroup: %w", err)
	}
	return strings.Fields(string(b)), nil
}

func readPids(path string) ([]int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cgroup: %w", err)
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("cgroup: %s: bad pid %q: %w", path, f, err)
		}
		pids = append(pids, n)
	}
	return pids, nil
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
