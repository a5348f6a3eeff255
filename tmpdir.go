package agentexec

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/agentexec/agentexec/policy"
)

// tmpDirPattern names the private ${TMPDIR} directories (os.MkdirTemp) under the
// process's temporary directory (os.TempDir: $TMPDIR, else /tmp).
const tmpDirPattern = "agentexec-tmp-"

// setupTmpDir gives the runtime its own ${TMPDIR} when the policy's is private and
// used (policy.TmpDirPlaceholder): a new directory under os.TempDir(), mode 0700,
// owned by the identity the tools run as (tmpOwner), in place of the placeholder in
// rt.pol (a copy made by policy.WithTmpDir), and the TMPDIR of the tools that may
// write it. Nothing of it is shared with another runtime, even one started with the
// same Policy. Close removes it, on New's failure paths too.
func (rt *Runtime) setupTmpDir() error {
	if !rt.pol.UsesTmpDir() {
		return nil
	}
	dir, err := os.MkdirTemp("", tmpDirPattern)
	if err != nil {
		return fmt.Errorf("agentexec: private TMPDIR: %w", err)
	}
	rt.tmpDir = dir
	if dir, err = filepath.Abs(dir); err != nil { // $TMPDIR may be relative
		return fmt.Errorf("agentexec: private TMPDIR: %w", err)
	}
	rt.tmpDir = dir
	// MkdirTemp made it 0700 (less the umask): say it, whatever the umask.
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("agentexec: private TMPDIR: %w", err)
	}
	if uid, gid, ok := rt.tmpOwner(); ok {
		if err := os.Chown(dir, uid, gid); err != nil {
			return fmt.Errorf("agentexec: private TMPDIR: give %s to the tools' uid %d: %w", dir, uid, err)
		}
	}
	q, err := rt.pol.WithTmpDir(dir)
	if err != nil {
		return fmt.Errorf("agentexec: %w", err)
	}
	// Tools that may write the directory are told about it (mktemp and the like
	// would use /tmp otherwise), unless the policy sets TMPDIR itself or lets the
	// requests set it. q is this runtime's own copy.
	for _, t := range q.Tools {
		if t.Profile == nil || t.Env.Allowed("TMPDIR") || slices.ContainsFunc(t.Env.Set, func(v policy.EnvVar) bool { return v.Name == "TMPDIR" }) {
			continue
		}
		if slices.ContainsFunc(t.Profile.FS.Write, func(w string) bool { return policy.Beneath(dir, w) }) {
			t.Env.Set = append(t.Env.Set, policy.EnvVar{Name: "TMPDIR", Value: dir})
		}
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

// removeTmpDir removes the private ${TMPDIR} and everything the tools left in it.
// A tool may have left directories without write permission, which stop RemoveAll
// when the runtime is not root: those are made writable and the removal retried.
func removeTmpDir(dir string) error {
	err := os.RemoveAll(dir)
	if err == nil || !errors.Is(err, fs.ErrPermission) {
		return err
	}
	// WalkDir visits a directory before it reads it: made readable and writable
	// first, it can be read and emptied.
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, _ error) error {
		if d != nil && d.IsDir() {
			_ = os.Chmod(path, 0o700)
		}
		return nil
	})
	return os.RemoveAll(dir)
}
