package agentexec

import (
	"os"

	"github.com/agentexec/agentexec/internal/spawner"
)

// protection decides what a profile's spawner keeps read-only in its private mount
// namespace: the git metadata of the repositories in the profile's writable roots
// and its protect: paths (docs/security.md, "Repository metadata"). It returns the
// mount plan (nil: nothing to mount, or no namespace to mount in), adds what stays
// unprotected to the profile's unenforced list and logs the paths it cannot cover.
func (rt *Runtime) protection(prt *profileRT) *spawner.MountPlan {
	if rt.opts.noProtect {
		return nil
	}
	prof := prt.p
	ok, why := spawner.MountNSAvailable()
	if rt.opts.noMountNS != "" {
		ok, why = false, rt.opts.noMountNS
	}
	facts := spawner.ScanProtection(prof)
	if ok {
		// A repository without hooks/ (or info/) gets an empty one, as git init
		// makes it, so that it exists to be kept read-only.
		made, err := spawner.EnsureHookDirs(facts)
		for _, m := range made {
			rt.opts.logger.Info("created an empty directory to keep it read-only for tools", "profile", prof.Name, "path", m)
		}
		if err != nil {
			rt.opts.logger.Warn("path not protected", "profile", prof.Name, "err", err)
		}
		if len(made) > 0 {
			facts = spawner.ScanProtection(prof)
		}
	}
	prot := spawner.PlanProtection(facts)
	if ok {
		prt.sentinels = spawner.Sentinels(facts)
	}
	host, err := spawner.CurrentMountNS()
	if ok && err != nil {
		ok, why = false, err.Error()
	}
	for _, u := range prot.Unenforced(ok, why) {
		prt.unenforced = append(prt.unenforced, u)
		rt.opts.logger.Warn("not enforced on this host", "profile", prof.Name, "rule", u)
	}
	for _, m := range prot.Missing {
		rt.opts.logger.Warn("path not protected", "profile", prof.Name, "path", m)
	}
	if !ok {
		return nil
	}
	plan := prot.MountPlan(host)
	if plan != nil {
		prt.layers = append(prt.layers, "protect")
	}
	return plan
}

// sweepSentinels removes what a launch planted at a sentinel path of its profile's
// protected repositories (a .git/commondir, which would send the agent's next git
// command to a config of the tool's making: a new entry in a writable .git, which
// no mount can forbid). It runs at the end of every launch, after the launch's tree
// is dead and before its result is returned.
func (rt *Runtime) sweepSentinels(prt *profileRT) {
	for _, s := range prt.sentinels {
		if _, err := os.Lstat(s); err != nil {
			continue
		}
		err := os.RemoveAll(s)
		rt.opts.logger.Warn("removed a path a tool planted in protected repository metadata", "profile", prt.p.Name, "path", s, "err", err)
	}
}
