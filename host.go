package agentexec

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec/internal/cgroup"
	"github.com/agentexec/agentexec/internal/spawner"
	"github.com/agentexec/agentexec/internal/templates"
	"github.com/agentexec/agentexec/policy"
)

// Host is what this machine offers the sandbox, probed once at start.
type Host struct {
	// LandlockABI is the kernel's Landlock ABI version (0: none); LandlockErr says why
	// when it is 0.
	LandlockABI int
	LandlockErr string
	// Cgroup is the cgroup v2 discovery (nil when discovery failed; see CgroupErr).
	Cgroup    *cgroup.Info
	CgroupErr string
	// KernelTemplates is the spawn_template probe.
	KernelTemplates templates.Probe
}

// ProbeHost probes the kernel features agentexec uses. It changes nothing but the
// probe cache (see below).
func ProbeHost(p *policy.Policy) *Host {
	h := &Host{}
	abi, err := spawner.LandlockABI()
	h.LandlockABI = abi
	if err != nil {
		h.LandlockErr = err.Error()
	}
	info, err := cgroup.Discover()
	if err != nil {
		h.CgroupErr = err.Error()
	} else {
		h.Cgroup = info
	}
	if why := kernelProbeSkipped(p); why != "" {
		// No /proc/kallsyms scan (tens of milliseconds) for a backend the policy
		// cannot use.
		h.KernelTemplates = templates.Probe{Reason: why}
		return h
	}
	var create, spawn int
	if p != nil && p.SpawnTemplateSyscalls != nil {
		create, spawn = p.SpawnTemplateSyscalls.Create, p.SpawnTemplateSyscalls.Spawn
	}
	dir, key, ok := probeCacheKey(create, spawn)
	if ok {
		if cached, hit := readProbeCache(dir, key); hit {
			h.KernelTemplates = cached
			return h
		}
	}
	h.KernelTemplates = templates.ProbeKernel(create, spawn)
	if ok {
		writeProbeCache(dir, key, h.KernelTemplates)
	}
	return h
}

// kernelProbeSkipped says why the spawn_template probe is not needed for p ("" when
// it is): kernel_templates: off, or auto in a policy without hot tools (kernel
// templates are made for hot tools only). "require" always probes: its error must
// say what the kernel lacks. A nil policy (a host report without one) probes.
func kernelProbeSkipped(p *policy.Policy) string {
	if p == nil {
		return ""
	}
	switch p.KernelTemplates {
	case policy.KernelTemplatesOff:
		return "not probed: kernel_templates: off"
	case policy.KernelTemplatesRequire:
		return ""
	}
	for _, t := range p.Tools {
		if t.Hot {
			return ""
		}
	}
	return "not probed: no hot tools (kernel templates are made for hot tools only)"
}

// The spawn_template probe scans /proc/kallsyms, which costs tens of milliseconds. A
// kernel cannot gain syscalls without a reboot, so a conclusive "not available" is
// remembered for the current boot and kernel: the cache file's name carries
// /proc/sys/kernel/random/boot_id, the kernel release and the syscall numbers, so a
// reboot or another kernel probes again. Positive answers are never cached: the probe
// that precedes any use of the syscalls always runs (a forged entry can only turn
// the kernel backend off, never on).
//
// Root keeps the cache in the root-only probeCacheDir; any other user in a directory
// of its own (userProbeCacheDir). A cache directory or file that is not owned by
// the effective user, or that others may write to, is ignored.
const probeCacheDir = "/run/agentexec"

// probeCacheMax bounds what is read from a cache file (a reason line).
const probeCacheMax = 4096

// probeCacheKey returns the cache directory for this user and the file name for the
// syscall numbers; ok is false when there is no usable directory or boot id, or
// when the numbers come from the environment (not cached).
func probeCacheKey(create, spawn int) (dir, key string, ok bool) {
	if os.Getenv(templates.SyscallNumbersEnv) != "" {
		return "", "", false
	}
	id, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", "", false
	}
	var uts unix.Utsname
	if unix.Uname(&uts) != nil {
		return "", "", false
	}
	dir = probeCacheDir
	if os.Geteuid() != 0 {
		if dir = userProbeCacheDir(); dir == "" {
			return "", "", false
		}
	}
	return dir, probeCacheName(strings.TrimSpace(string(id)), unix.ByteSliceToString(uts.Release[:]), create, spawn), true
}

// probeCacheName is the file name for a boot, a kernel release and syscall numbers.
func probeCacheName(bootID, release string, create, spawn int) string {
	clean := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '+' {
				return r
			}
			return '_'
		}, s)
	}
	return fmt.Sprintf("spawn-template-%s-%s-%d-%d", clean(bootID), clean(release), create, spawn)
}

// userProbeCacheDir is a non-root user's cache directory: agentexec under
// $XDG_RUNTIME_DIR (or /run/user/UID) when that is the user's own directory and
// others cannot write to it; else under os.UserCacheDir when that (or its parent)
// is; else agentexec-UID in os.TempDir (a directory there that another user made
// first is not private, so it is never read: the probe then runs every time).
func userProbeCacheDir() string {
	uid := os.Geteuid()
	for _, run := range []string{os.Getenv("XDG_RUNTIME_DIR"), "/run/user/" + strconv.Itoa(uid)} {
		if filepath.IsAbs(run) && privateDir(run, uid, false) {
			return filepath.Join(run, "agentexec")
		}
	}
	if cache, err := os.UserCacheDir(); err == nil && filepath.IsAbs(cache) {
		if privateDir(cache, uid, false) || privateDir(filepath.Dir(cache), uid, false) {
			return filepath.Join(cache, "agentexec")
		}
	}
	if tmp := os.TempDir(); filepath.IsAbs(tmp) {
		return filepath.Join(tmp, "agentexec-"+strconv.Itoa(uid))
	}
	return ""
}

// privateDir reports whether path is a directory (not a symlink) owned by uid that
// neither group nor others may write to; strict also forbids reading and searching.
func privateDir(path string, uid int, strict bool) bool {
	var st unix.Stat_t
	if unix.Lstat(path, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Uid != uint32(uid) {
		return false
	}
	mask := uint32(0o022)
	if strict {
		mask = 0o077
	}
	return st.Mode&mask == 0
}

// readProbeCache returns the remembered probe in dir/key, if dir is a 0700 directory
// of the effective user and the file a regular file of the user that group and
// others cannot write to.
func readProbeCache(dir, key string) (templates.Probe, bool) {
	uid := os.Geteuid()
	if !privateDir(dir, uid, true) {
		return templates.Probe{}, false
	}
	fd, err := unix.Open(filepath.Join(dir, key), unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return templates.Probe{}, false
	}
	f := os.NewFile(uintptr(fd), key)
	defer f.Close()
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Uid != uint32(uid) || st.Mode&0o022 != 0 {
		return templates.Probe{}, false
	}
	b, err := io.ReadAll(io.LimitReader(f, probeCacheMax+1))
	if err != nil || len(b) == 0 || len(b) > probeCacheMax {
		return templates.Probe{}, false
	}
	return templates.Probe{Reason: string(b) + " (remembered for this boot)", Source: "cache", Conclusive: true}, true
}

// writeProbeCache remembers a conclusive "not available" in dir/key, atomically (a
// temporary file renamed over it), making dir (mode 0700) if needed. Failures are
// ignored: the next start probes again.
func writeProbeCache(dir, key string, p templates.Probe) {
	if p.Available || !p.Conclusive || p.Reason == "" {
		return
	}
	if err := os.MkdirAll(dir, 0o700); err != nil || !privateDir(dir, os.Geteuid(), true) {
		return
	}
	tmp, err := os.CreateTemp(dir, key+".tmp*")
	if err != nil {
		return
	}
	reason := p.Reason
	if len(reason) > probeCacheMax {
		reason = reason[:probeCacheMax]
	}
	_, werr := tmp.WriteString(reason)
	cerr := tmp.Close()
	if werr != nil || cerr != nil || os.Rename(tmp.Name(), filepath.Join(dir, key)) != nil {
		_ = os.Remove(tmp.Name())
	}
}
