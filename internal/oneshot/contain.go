package oneshot

import (
	"errors"
	"fmt"
	"os"
	"sort"

	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec/internal/contain"
	"github.com/agentexec/agentexec/internal/spawner"
	"github.com/agentexec/agentexec/internal/sys"
)

// fsFileOnly are the rights that apply to a non-directory; the kernel refuses
// directory rights on a file rule (as internal/spawner's plan).
const fsFileOnly = ll.AccessFSExecute | ll.AccessFSWriteFile | ll.AccessFSReadFile | ll.AccessFSTruncate

type pathRight struct {
	path   string
	access uint64
}

// pathRights merges the plan's rules per path, in path order, with file paths
// limited to a file's rights; paths absent on this host are skipped (no rule: no
// access), as a spawner skips them.
func pathRights(pl *spawner.LandlockPlan) ([]pathRight, error) {
	merged := map[string]uint64{}
	for _, r := range pl.Rules {
		for _, p := range r.Paths {
			merged[p] |= r.Access
		}
	}
	paths := make([]string, 0, len(merged))
	for p := range merged {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var rights []pathRight
	for _, p := range paths {
		access := merged[p] & pl.HandledFS
		st, err := os.Stat(p)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return nil, fmt.Errorf("landlock rule for %s: %w", p, err)
		}
		if !st.IsDir() {
			access &= fsFileOnly
		}
		if access != 0 {
			rights = append(rights, pathRight{path: p, access: access})
		}
	}
	return rights, nil
}

// toolRuleset is the tool's Landlock layer, which the child enforces on itself
// between clone and exec (sys.SpawnAttr.LandlockRuleset): the profile's rules, as
// a spawner's own layer has them, with the signal and abstract-unix scopes whatever
// the profile says, as a spawner's per-launch layer has them. The tool's domain is
// then one of its own, so that it can signal no thread of the supervisor (scoped
// signals, ABI 6) nor trace any (Landlock refuses ptrace towards a process outside
// the tracer's domain) nor reach its abstract sockets, and it may touch exactly
// what the profile grants. (The forking thread needs no layer of its own: it
// forks, waits and ends.) The fd is close-on-exec.
func toolRuleset(pl *spawner.LandlockPlan) (int, error) {
	return ruleset(pl, ll.ScopeSignal|ll.ScopeAbstractUnixSocket)
}

// ruleset makes a ruleset with the plan's rules and the given scopes.
func ruleset(pl *spawner.LandlockPlan, scoped uint64) (int, error) {
	attr := &ll.RulesetAttr{HandledAccessFS: pl.HandledFS, HandledAccessNet: pl.HandledNet, Scoped: scoped}
	fd, err := ll.LandlockCreateRuleset(attr, 0)
	if err != nil {
		return -1, fmt.Errorf("landlock_create_ruleset: %w", err)
	}
	unix.CloseOnExec(fd)
	rights, err := pathRights(pl)
	if err != nil {
		unix.Close(fd)
		return -1, err
	}
	for _, pr := range rights {
		pfd, err := unix.Open(pr.path, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			continue // gone since: no access either way
		}
		err = ll.LandlockAddPathBeneathRule(fd, &ll.PathBeneathAttr{AllowedAccess: pr.access, ParentFd: pfd}, 0)
		unix.Close(pfd)
		if err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("landlock rule for %s: %w", pr.path, err)
		}
	}
	for _, ports := range []struct {
		access uint64
		list   []uint16
	}{{ll.AccessNetConnectTCP, pl.ConnectTCP}, {ll.AccessNetBindTCP, pl.BindTCP}} {
		for _, port := range ports.list {
			if pl.HandledNet&ports.access == 0 {
				continue
			}
			if err := ll.LandlockAddNetPortRule(fd, &ll.NetPortAttr{AllowedAccess: ports.access, Port: uint64(port)}, 0); err != nil {
				unix.Close(fd)
				return -1, fmt.Errorf("landlock rule for port %d: %w", port, err)
			}
		}
	}
	return fd, nil
}

// containThread restricts the calling, locked thread, the one the tool is forked
// from, in the order a spawner restricts itself: capabilities, no_new_privs, the
// profile's seccomp filter (Landlock is the tool's own layer, toolRuleset); and
// makes the process not dumpable. Each of these is per-thread state that a child
// inherits from the thread that forks it, so the tool starts with all of them; the
// supervisor's other threads, which never fork, keep what they need to clean up
// (remove the tool's cgroup, release the tool identity). The whole-process
// variants a spawner uses (psx, every thread signalled per call: some 45 calls to
// drop a root process's capabilities) cost 8-20 ms here, more than the launch.
//
// Capabilities: the thread keeps none, except CAP_SETUID, CAP_SETGID and CAP_KILL
// (for the tool's Pdeathsig, dropThreadCaps) in its effective and permitted sets
// when the tool switches to another identity (keep is true); the ambient,
// inheritable and bounding sets are emptied, so that an exec gives the tool
// nothing (a non-root exec under no_new_privs gains no file capabilities, the uid
// change in the child clears the kept three, and a uid-0 tool of user: root, for
// which nothing is kept, gains nothing from an empty bounding set).
//
// The seccomp filter refuses signals to the supervisor's pid (SpawnerPID), as a
// spawner's refuses them to itself; Landlock's signal scope covers its threads.
func containThread(pl *spawner.LandlockPlan, c spawner.Containment, keep bool) ([]string, error) {
	if err := dropThreadCaps(keep); err != nil {
		return nil, err
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("prctl(PR_SET_NO_NEW_PRIVS): %w", err)
	}
	f, err := contain.BuildSeccomp(contain.SeccompSpec{Network: c.Network, Unix: c.Unix, SpawnerPID: os.Getpid()})
	if err != nil {
		return nil, fmt.Errorf("seccomp: %w", err)
	}
	prog, err := bpf.Assemble(f.Instructions())
	if err != nil {
		return nil, fmt.Errorf("seccomp: assemble: %w", err)
	}
	raw := make([]unix.SockFilter, len(prog))
	for i, in := range prog {
		raw[i] = unix.SockFilter{Code: in.Op, Jt: in.Jt, Jf: in.Jf, K: in.K}
	}
	// This thread only (no TSYNC); SPEC_ALLOW as a spawner's filter (contain.Filter).
	if err := sys.SeccompSetModeFilter(sys.SeccompFilterFlagSpecAllow, raw); err != nil {
		return nil, fmt.Errorf("seccomp(SECCOMP_SET_MODE_FILTER) on the forking thread: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("prctl(PR_SET_DUMPABLE, 0): %w", err)
	}
	return []string{"no-caps", "no-new-privs", fmt.Sprintf("landlock-abi-%d", pl.ABI), "seccomp", "landlock-per-launch"}, nil
}

// dropThreadCaps empties the calling thread's capability sets (keeping CAP_SETUID,
// CAP_SETGID and CAP_KILL effective and permitted with keep), its ambient set and,
// when it may (CAP_SETPCAP), its bounding set.
func dropThreadCaps(keep bool) error {
	var m uint32
	if keep {
		// CAP_KILL too: the kernel sends the tool its Pdeathsig with the
		// credentials of the exiting forking thread and checks them as for kill(2),
		// so a thread without it could not signal a tool running as another uid
		// (measured: the tool outlived a SIGKILLed supervisor in 4 of 30 tries,
		// whenever the forking thread was the last of its process to exit;
		// TestPdeathsigAcrossUIDs). The child's setuid to the tool identity clears
		// all three before its exec.
		m = 1<<unix.CAP_SETUID | 1<<unix.CAP_SETGID | 1<<unix.CAP_KILL // all below 32
	}
	return dropThreadCapsKeeping(m)
}

// dropThreadCapsKeeping is dropThreadCaps keeping the capabilities of mask (all
// below 32) effective and permitted where the thread has them.
func dropThreadCapsKeeping(mask uint32) error {
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("prctl(PR_CAP_AMBIENT_CLEAR_ALL): %w", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var cur [2]unix.CapUserData
	if err := unix.Capget(&hdr, &cur[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}
	if cur[0].Effective&(1<<unix.CAP_SETPCAP) != 0 {
		last, err := contain.LastCap()
		if err != nil {
			return err
		}
		for c := uintptr(0); c <= last; c++ {
			if err := unix.Prctl(unix.PR_CAPBSET_DROP, c, 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
				return fmt.Errorf("prctl(PR_CAPBSET_DROP, %s): %w", contain.CapName(c), err)
			}
		}
	}
	var want [2]unix.CapUserData
	want[0].Effective = cur[0].Permitted & mask
	want[0].Permitted = cur[0].Permitted & mask
	if err := unix.Capset(&hdr, &want[0]); err != nil {
		return fmt.Errorf("capset: %w", err)
	}
	return nil
}
