package spawner

import (
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec/internal/contain"
	"github.com/agentexec/agentexec/internal/sys"
	"github.com/agentexec/agentexec/policy"
)

// Containment is what a spawner applies to itself besides Landlock, decided by the
// main process from the profile and sent in hello.
type Containment struct {
	// DropCaps empties the spawner's capability sets (bounding, ambient, permitted,
	// effective, inheritable) and locks the securebits, so that tools launched as
	// uid 0 have no capabilities and cannot regain any by exec.
	DropCaps bool `json:"drop_caps"`
	// User runs the spawner, and so every tool, as another uid/gid.
	User *contain.User `json:"user,omitempty"`
	// ToolCred, when set, is the identity every tool switches to between clone and
	// exec while the spawner itself stays as it is: the spawner then keeps
	// CAP_SETUID and CAP_SETGID in its effective and permitted sets only (never
	// inheritable, ambient or bounding, so no tool can hold them after exec).
	ToolCred *contain.User `json:"tool_cred,omitempty"`
	// Seccomp installs the profile's filter; Network and Unix shape its socket rules.
	Seccomp bool            `json:"seccomp"`
	Network contain.NetMode `json:"network"`
	Unix    bool            `json:"unix"`
	// LogDenials installs the filter with SECCOMP_FILTER_FLAG_LOG: its refusals
	// reach the audit stream where the host's actions_logged has errno.
	LogDenials bool `json:"log_denials,omitempty"`
}

// ContainmentFor derives a profile's containment.
func ContainmentFor(p *policy.Profile) Containment {
	c := Containment{DropCaps: true, Seccomp: true, Network: contain.NetNone, Unix: p.Network.Unix}
	if len(p.Network.ConnectTCP) > 0 || len(p.Network.BindTCP) > 0 || p.Network.Egress {
		c.Network = contain.NetTCP // the egress proxy is reached over loopback TCP
	}
	if p.User != nil && !p.User.Own {
		c.User = &contain.User{UID: p.User.UID, GID: p.User.GID, Groups: p.User.Groups}
	}
	return c
}

// applyCreds runs in the spawner first: capabilities, then no_new_privs. It returns
// the layers now in force.
func (c *Containment) applyCreds() ([]string, error) {
	var layers []string
	if c.DropCaps || c.User != nil {
		spec := contain.CapsSpec{User: c.User}
		if c.ToolCred != nil && c.User == nil {
			// CAP_KILL: the kernel sends a tool its Pdeathsig with the launcher
			// thread's credentials, checked as kill(2): without it a tool of the
			// tool identity outlives a SIGKILLed runtime. The child's setuid
			// clears every capability before exec.
			spec.Effective = []uintptr{unix.CAP_SETUID, unix.CAP_SETGID, unix.CAP_KILL}
		}
		if err := contain.DropCapabilities(spec); err != nil {
			return nil, err
		}
		layers = append(layers, "no-caps")
		if c.User != nil {
			layers = append(layers, fmt.Sprintf("uid-%d", c.User.UID))
		}
	}
	if err := contain.SetNoNewPrivs(); err != nil {
		return nil, err
	}
	return append(layers, "no-new-privs"), nil
}

// setupCaps are the capabilities a spawner may use before it drops its own
// (spawnerState.setup, before applyCreds): mounts and its mount namespace
// (CAP_SYS_ADMIN), the id maps of the tool view's user namespaces (CAP_SETUID,
// CAP_SETGID), opening tools, roots and protected paths that belong to others
// (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER), the drop itself
// (CAP_SETPCAP), and what the drop keeps for the tool identity or a profile's
// user: (CAP_SETUID, CAP_SETGID, CAP_KILL).
var setupCaps = [...]uintptr{unix.CAP_SYS_ADMIN, unix.CAP_SETPCAP, unix.CAP_SETUID, unix.CAP_SETGID, unix.CAP_KILL,
	unix.CAP_DAC_OVERRIDE, unix.CAP_DAC_READ_SEARCH, unix.CAP_FOWNER}

var lastCap = sync.OnceValues(contain.LastCap)

// prepareStarter runs on the main process's starter thread (the locked thread
// that forks the spawner: Spawner.starter) before its first fork, when the
// spawner is to drop its capabilities and the runtime is root. It leaves the
// spawner less to drop, so that the drop costs fewer all-threads rounds (each a
// signal to every thread of the spawner, ~70-120 µs with five threads here:
// docs/performance.md, "Start-up"):
//
//   - setupCaps (those in the thread's bounding set) are added to its
//     inheritable set, and its bounding set is emptied. A root exec's permitted
//     set is the bounding set plus the inheritable set (capabilities(7): a root
//     program's file sets count as full), so the spawner starts with setupCaps
//     only and an empty bounding set: its drop finds nothing there, and one
//     capset takes the inheritable set back to empty;
//   - where the securebits make uid 0 unprivileged at exec (SECBIT_NOROOT), or the
//     inheritable set cannot be raised, only the capabilities outside setupCaps
//     are dropped from the bounding set.
//
// The spawner's own drop (contain.DropCapabilities) is unchanged and still
// empties every set and the bounding set itself, so this is an optimisation: a
// failure here leaves the rest to it. Only the starter thread changes: the Go
// runtime never clones new threads from a locked thread, the thread forks nothing
// but the spawner, and it ends with the Spawner.
func (c *Containment) prepareStarter() {
	if !c.DropCaps && c.User == nil || os.Geteuid() != 0 {
		return
	}
	cur, err := sys.Capget()
	if err != nil || cur.Effective&(1<<unix.CAP_SETPCAP) == 0 {
		return
	}
	last, err := lastCap()
	if err != nil {
		return
	}
	var need, bounding uint64
	for _, k := range setupCaps {
		need |= 1 << k
	}
	for k := uintptr(0); k <= last && k < 64; k++ {
		if in, err := sys.CapBsetRead(k); err == nil && in {
			bounding |= 1 << k
		}
	}
	keep := need // what stays in the bounding set
	if bits, err := sys.GetSecurebits(); err == nil && bits&sys.SECBIT_NOROOT == 0 {
		// With CAP_SETPCAP the inheritable set may take anything in the bounding
		// set: the spawner gets the setupCaps it would have got from it.
		next := cur
		next.Inheritable = cur.Inheritable | need&bounding
		if sys.CapsetThread(next) == nil {
			keep = 0
		}
	}
	for k := uintptr(0); k <= last && k < 64; k++ {
		if bounding&^keep&(1<<k) == 0 {
			continue
		}
		if sys.CapBsetDropThread(k) != nil {
			return
		}
	}
}

// applySeccomp installs the filter on every thread. It runs after Landlock (go-landlock's
// all-threads restriction signals every thread) and after the launcher threads exist:
// signals aimed at the spawner's pid, at any of its launcher threads (the threads
// tools are forked from, whose ids they could otherwise signal: a tool shares its
// launcher's signal scope) and at the agent are refused.
func (c *Containment) applySeccomp(launcherTIDs []int, agentPID int) ([]string, error) {
	if !c.Seccomp {
		return nil, nil
	}
	f, err := contain.BuildSeccomp(contain.SeccompSpec{Network: c.Network, Unix: c.Unix, SpawnerPID: os.Getpid(),
		ProtectTIDs: launcherTIDs, ProtectPIDs: []int{agentPID}})
	if err != nil {
		return nil, fmt.Errorf("seccomp: %w", err)
	}
	install := f.Install
	if c.LogDenials {
		install = f.InstallLogged
	}
	if err := install(); err != nil {
		return nil, err
	}
	return []string{"seccomp"}, nil
}
