package agentexec

import (
	"fmt"
	"os"

	"github.com/agentexec/agentexec/internal/spawner"
)

// The tool identity (tooluser.go) has no account on the host; programs that look
// their user up (ssh, git, whoami) refuse to run without one. A root runtime
// therefore gives the tools of such profiles, in their spawner's private mount
// namespace, read-only copies of /etc/passwd and /etc/group that add one account
// for the identity (spawner.AccountBinds: spawner.ToolAccountName, home
// /nonexistent, no login shell). The copies are taken once per runtime, at New (a
// later change to the host's accounts is not seen by tools until the next
// runtime); the one-shot `run` path makes its own (internal/oneshot).

// accountsDirPattern names the runtime's directory of those copies under
// os.TempDir() (mode 0755, files 0444, owned by root), removed at Close.
const accountsDirPattern = "agentexec-accounts-"

// toolAccounts adds the binds of the account files to the profile's mount plan
// when its tools run as the tool identity and the spawner gets a private mount
// namespace. Without one (no CLONE_NEWNS on this host) the identity stays
// nameless, which is reported as unenforced.
func (rt *Runtime) toolAccounts(prt *profileRT, cfg *spawner.SpawnerConfig) error {
	if cfg.Containment.ToolCred == nil || rt.opts.noToolAccounts {
		return nil
	}
	ok, why := spawner.MountNSAvailable()
	if rt.opts.noMountNS != "" {
		ok, why = false, rt.opts.noMountNS
	}
	if !ok {
		prt.gap(rt, "not as the policy asks on this host", "what",
			fmt.Sprintf("account name of the tool identity (uid %d): no private mount namespace (%s); ssh, git and whoami refuse to run without one", rt.toolID.uid, why))
		return nil
	}
	ops, err := rt.accountBinds()
	if err != nil {
		return fmt.Errorf("profile %s: tool identity account: %w", prt.p.Name, err)
	}
	if len(ops) == 0 {
		return nil
	}
	if cfg.Mounts == nil {
		host, err := spawner.CurrentMountNS()
		if err != nil {
			return fmt.Errorf("profile %s: tool identity account: %w", prt.p.Name, err)
		}
		cfg.Mounts = &spawner.MountPlan{HostNS: host}
	}
	cfg.Mounts.Ops = append(cfg.Mounts.Ops, ops...)
	return nil
}

// accountBinds writes the account copies once per runtime and returns their binds.
func (rt *Runtime) accountBinds() ([]spawner.MountOp, error) {
	rt.accountsOnce.Do(func() {
		dir, err := os.MkdirTemp("", accountsDirPattern)
		if err == nil {
			rt.accountsDir = dir // Close removes it
			err = os.Chmod(dir, 0o755)
		}
		if err == nil {
			rt.accounts, err = spawner.AccountBinds(dir, rt.toolID.uid, rt.toolID.gid)
		}
		rt.accountsErr = err
	})
	return rt.accounts, rt.accountsErr
}
