package agentexec

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/agentexec/agentexec/internal/tmpdir"
	"github.com/agentexec/agentexec/policy"
)

// setupTmpDir gives the runtime its own ${TMPDIR} when the policy's is private and
// used (policy.TmpDirPlaceholder): a new directory (internal/tmpdir) owned by the
// identity the tools run as (tmpOwner), in place of the placeholder in rt.pol (a
// copy made by policy.WithTmpDir), and the TMPDIR of the tools that may write it.
// Nothing of it is shared with another runtime, even one started with the same
// Policy. Close removes it, on New's failure paths too.
func (rt *Runtime) setupTmpDir() error {
	if !rt.pol.UsesTmpDir() {
		return nil
	}
	uid, gid, chown := rt.tmpOwner()
	dir, err := tmpdir.Make(uid, gid, chown)
	rt.tmpDir = dir
	if err != nil {
		return fmt.Errorf("agentexec: %w", err)
	}
	q, err := rt.pol.WithTmpDir(dir)
	if err != nil {
		return fmt.Errorf("agentexec: %w", err)
	}
	for _, t := range q.Tools { // q is this runtime's own copy
		tmpdir.TellTool(t, dir)
	}
	rt.pol = q
	return nil
}

// tmpOwner is the identity the private ${TMPDIR} is given to: the one the tools of
// the profiles that use it run as (toolIDs for the runtime's tool identity, a
// profile's user:, else the runtime's own). ok is false when that is the runtime's
// own identity (no chown). Profiles whose tools run as yet another identity cannot
// use the directory (mode 0700; tools have no capabilities): each is logged.
func (rt *Runtime) tmpOwner() (uid, gid int, ok bool) {
	type id struct{ uid, gid int }
	self := id{os.Geteuid(), os.Getegid()}
	var owner *id
	for _, prof := range rt.pol.Profiles {
		if !usesTmpDir(rt.pol, prof) {
			continue
		}
		who := self
		switch {
		case needsToolIdentity(prof):
			if u, g, ok := rt.toolIDs(); ok {
				who = id{u, g}
			}
		case prof.User != nil && !prof.User.Own:
			who = id{int(prof.User.UID), int(prof.User.GID)}
		}
		if owner == nil {
			owner = &who
		} else if who != *owner {
			rt.opts.logger.Warn("the private TMPDIR is not usable by this profile's tools: they run as another identity than the directory's owner (set policy.Options.TmpDir to share a directory)",
				"profile", prof.Name, "uid", who.uid, "owner_uid", owner.uid)
		}
	}
	if owner == nil || *owner == self {
		return 0, 0, false
	}
	return owner.uid, owner.gid, true
}

// usesTmpDir reports whether a profile's roots or its tools' fixed environment
// values refer to the policy's private ${TMPDIR} (still the placeholder).
func usesTmpDir(p *policy.Policy, prof *policy.Profile) bool {
	beneath := func(s string) bool { return policy.Beneath(s, policy.TmpDirPlaceholder) }
	for _, l := range [][]string{prof.FS.Read, prof.FS.Write, prof.FS.Exec, prof.FS.Protect, prof.Network.UnixSockets} {
		if slices.ContainsFunc(l, beneath) {
			return true
		}
	}
	for _, t := range p.Tools {
		if t.Profile != prof {
			continue
		}
		for _, v := range t.Env.Set {
			if strings.Contains(v.Value, policy.TmpDirPlaceholder) {
				return true
			}
		}
	}
	return false
}
