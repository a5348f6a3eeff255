package policy

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
)

// TmpDirPlaceholder is what ${TMPDIR} expands to when Options.TmpDir is empty (the
// default of Load and HostOptions): ${TMPDIR} is then a directory private to each
// runtime, which does not exist yet when the policy is parsed. agentexec.New makes
// it (under os.TempDir(), mode 0700, owned by the identity the tools run as),
// replaces the placeholder with it through WithTmpDir, and Close removes it, so the
// tools of two runtimes never share temporary files, even with one Policy.
//
// The placeholder is an absolute path that does not exist (Debian reserves
// /nonexistent for that); in the Policy it stands for the private directory in every
// path and environment value, wherever ${TMPDIR} was written. A path that uses
// ${TMPDIR} must name it or lie beneath it ("${TMPDIR}/.." is an error).
const TmpDirPlaceholder = "/nonexistent/agentexec-private-tmpdir"

// UsesTmpDir reports whether the policy refers to its private ${TMPDIR}: a path
// (roots, workspace, path:, exec) or an environment value that holds
// TmpDirPlaceholder. It is false when ${TMPDIR} is not private (PrivateTmp) or was
// replaced already (WithTmpDir).
func (p *Policy) UsesTmpDir() bool {
	if !p.PrivateTmp || p.TmpDir != TmpDirPlaceholder {
		return false
	}
	used := false
	p.rewrite(func(s string) string {
		used = used || Beneath(s, TmpDirPlaceholder)
		return s
	}, func(s string) string {
		used = used || strings.Contains(s, TmpDirPlaceholder)
		return s
	})
	return used
}

// WithTmpDir returns a copy of the policy in which the private ${TMPDIR} is dir:
// TmpDirPlaceholder is replaced with dir in every path (filesystem roots, protect:,
// unix_sockets, workspace, path:, exec) and in every fixed environment value, and
// TmpDir is dir. The policy itself is not changed, so that one Policy can serve
// several runtimes, each with a directory of its own. It fails when ${TMPDIR} is not
// private in p or was replaced already, and when dir is not an absolute, clean path.
func (p *Policy) WithTmpDir(dir string) (*Policy, error) {
	switch {
	case !p.PrivateTmp:
		return nil, fmt.Errorf("policy: WithTmpDir: ${TMPDIR} is not private in %s (it is %s)", p.Source, p.TmpDir)
	case p.TmpDir != TmpDirPlaceholder:
		return nil, fmt.Errorf("policy: WithTmpDir: ${TMPDIR} of %s is %s already", p.Source, p.TmpDir)
	case !filepath.IsAbs(dir) || filepath.Clean(dir) != dir:
		return nil, fmt.Errorf("policy: WithTmpDir: %q is not an absolute, clean path", dir)
	case Beneath(dir, TmpDirPlaceholder):
		return nil, fmt.Errorf("policy: WithTmpDir: %q lies beneath the placeholder", dir)
	}
	q := p.rewrite(func(s string) string {
		if Beneath(s, TmpDirPlaceholder) {
			return dir + s[len(TmpDirPlaceholder):]
		}
		return s
	}, func(s string) string {
		return strings.ReplaceAll(s, TmpDirPlaceholder, dir)
	})
	q.TmpDir = dir
	return q, nil
}

// rewrite returns a deep copy of the policy (tools, profiles and the slices that
// hold paths or values) with path applied to every path and value to every fixed
// environment value. Sets of paths are sorted again.
func (p *Policy) rewrite(path, value func(string) string) *Policy {
	paths := func(in []string) []string {
		if in == nil {
			return nil
		}
		out := make([]string, len(in))
		for i, s := range in {
			out[i] = path(s)
		}
		return out
	}
	optPath := func(s string) string {
		if filepath.IsAbs(s) {
			return path(s)
		}
		return s // a bare exec name, or unset
	}
	q := *p
	q.Workspace = optPath(p.Workspace)
	q.Path = paths(p.Path) // a search order: not sorted
	profiles := make(map[*Profile]*Profile, len(p.Profiles))
	copyProfile := func(pr *Profile) *Profile {
		if pr == nil {
			return nil
		}
		if c, ok := profiles[pr]; ok {
			return c
		}
		c := *pr
		c.Tools = slices.Clone(pr.Tools)
		c.FS = FS{Read: sortedSet(paths(pr.FS.Read)), Write: sortedSet(paths(pr.FS.Write)),
			Exec: sortedSet(paths(pr.FS.Exec)), Protect: sortedSet(paths(pr.FS.Protect))}
		c.Network.ConnectTCP = slices.Clone(pr.Network.ConnectTCP)
		c.Network.BindTCP = slices.Clone(pr.Network.BindTCP)
		c.Network.UnixSockets = sortedSet(paths(pr.Network.UnixSockets))
		if pr.User != nil {
			u := *pr.User
			u.Groups = slices.Clone(pr.User.Groups)
			c.User = &u
		}
		profiles[pr] = &c
		return &c
	}
	q.Profiles = make([]*Profile, len(p.Profiles))
	for i, pr := range p.Profiles {
		q.Profiles[i] = copyProfile(pr)
	}
	q.Tools = make([]*Tool, len(p.Tools))
	for i, t := range p.Tools {
		c := *t
		c.Exec, c.Path = optPath(t.Exec), optPath(t.Path)
		c.Env.Allow = slices.Clone(t.Env.Allow)
		c.Env.Set = nil
		for _, v := range t.Env.Set {
			c.Env.Set = append(c.Env.Set, EnvVar{Name: v.Name, Value: value(v.Value)})
		}
		c.Profile = copyProfile(t.Profile)
		q.Tools[i] = &c
	}
	return &q
}
