package spawner

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec/internal/contain"
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
