package agentexec

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/agentexec/agentexec/internal/egress"
	"github.com/agentexec/agentexec/policy"
)

// checkSSH checks every network.ssh tool's known_hosts file and, for
// network.ssh_agent, the runtime's agent: the runtime refuses to start (and a
// launch to begin) when a known_hosts file in force is missing, unreadable,
// malformed or lists no key for the tool's ssh hosts, or when ssh_agent is set
// without an SSH_AUTH_SOCK. Each error names the policy field.
func (rt *Runtime) checkSSH() error { return errors.Join(sshProblems(rt.pol)...) }

// sshProblems are checkSSH's refusals, one per tool and cause (check lists them).
func sshProblems(p *policy.Policy) []error {
	var errs []error
	for _, t := range p.Tools {
		if t.Egress == nil || len(t.Egress.SSH) == 0 {
			continue
		}
		if _, err := sshHostKeys(t.Egress); err != nil {
			errs = append(errs, fmt.Errorf("agentexec: tool %s: %w", t.Name, err))
		}
		if t.Egress.SSHAgent && os.Getenv("SSH_AUTH_SOCK") == "" {
			errs = append(errs, fmt.Errorf("agentexec: tool %s: %s: the runtime has no ssh-agent to forward to (SSH_AUTH_SOCK is not set)", t.Name, t.Egress.SSHAgentField))
		}
	}
	return errs
}

// sshSession gives a launch of a network.ssh tool what its ssh needs beyond the
// proxy session: the known_hosts file is checked again (it may have changed
// since New) and, with network.ssh_agent, a filtering agent socket of the launch's
// own is served, bound to the keys of the tool's ssh hosts in that file.
func (rt *Runtime) sshSession(t *policy.Tool, s *egress.Session, g *grant) error {
	if len(t.Egress.SSH) == 0 {
		return nil
	}
	keys, err := sshHostKeys(t.Egress)
	if err != nil {
		return err
	}
	if !t.Egress.SSHAgent {
		return nil
	}
	up := os.Getenv("SSH_AUTH_SOCK")
	if up == "" {
		return fmt.Errorf("%s: the runtime has no ssh-agent to forward to (SSH_AUTH_SOCK is not set)", t.Egress.SSHAgentField)
	}
	uid, gid := -1, -1
	switch prof := t.Profile; {
	case needsToolIdentity(prof):
		if u, g, ok := rt.toolIDs(); ok {
			uid, gid = u, g
		}
	case prof.User != nil && !prof.User.Own:
		uid, gid = int(prof.User.UID), int(prof.User.GID)
	}
	cfg := egress.AgentConfig{Upstream: up, HostKeys: keys, UID: uid, GID: gid, Rule: t.Egress.SSHAgentField,
		Peer: func(pid int) error { return g.sshPeer(pid, rt.cg != nil) }}
	if rt.opts.noAgentPeerCheck {
		cfg.Peer = nil
	}
	_, err = s.ServeSSHAgent(cfg)
	return err
}

// sshHostKeys reads the known_hosts file of e and returns the keys it lists for
// e's ssh hosts: plain or hashed (|1|) host patterns, "[host]:port" for ports
// other than 22, '*' and '?' globs and '!' negations as ssh reads them; a
// wildcard entry (*.example.com) takes the plain patterns beneath its domain.
// @revoked keys are left out; @cert-authority lines are ignored (host
// certificates are not supported). An error names e.KnownHostsField.
func sshHostKeys(e *policy.Egress) ([]ssh.PublicKey, error) {
	fail := func(err error) ([]ssh.PublicKey, error) {
		return nil, fmt.Errorf("%s: %s: %w", e.KnownHostsField, e.KnownHosts, err)
	}
	data, err := os.ReadFile(e.KnownHosts)
	if err != nil {
		return fail(err)
	}
	var keys, revoked []ssh.PublicKey
	for rest, line := data, 1; len(rest) > 0; line++ {
		nl := bytes.IndexByte(rest, '\n')
		cur := rest
		if nl >= 0 {
			cur, rest = rest[:nl], rest[nl+1:]
		} else {
			rest = nil
		}
		if t := bytes.TrimSpace(cur); len(t) == 0 || t[0] == '#' {
			continue
		}
		marker, hosts, key, _, _, err := ssh.ParseKnownHosts(cur)
		if errors.Is(err, io.EOF) {
			continue
		}
		if err != nil {
			return fail(fmt.Errorf("line %d: %w", line, err))
		}
		switch {
		case marker == "revoked":
			revoked = append(revoked, key)
		case marker != "":
			// @cert-authority: not supported, never a host key by itself.
		case knownHostsApplies(hosts, e.SSH):
			keys = append(keys, key)
		}
	}
	out := keys[:0]
	for _, k := range keys {
		bad := false
		for _, r := range revoked {
			bad = bad || bytes.Equal(k.Marshal(), r.Marshal())
		}
		if !bad {
			out = append(out, k)
		}
	}
	if len(out) == 0 {
		return fail(fmt.Errorf("no key for the network.ssh hosts (%s): ssh would refuse every one of them", allowTexts(e.SSH)))
	}
	return out, nil
}

func allowTexts(as []policy.Allow) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

// knownHostsApplies reports whether a known_hosts line's host patterns name one
// of the entries: a positive pattern matches and no negated one does.
func knownHostsApplies(patterns []string, entries []policy.Allow) bool {
	for _, a := range entries {
		for _, name := range knownHostsNames(a) {
			pos, neg := false, false
			for _, p := range patterns {
				if n, ok := strings.CutPrefix(p, "!"); ok {
					neg = neg || knownHostsMatch(n, name, a)
				} else {
					pos = pos || knownHostsMatch(p, name, a)
				}
			}
			if pos && !neg {
				return true
			}
		}
	}
	return false
}

// knownHostsNames are the names ssh looks an entry up by: "host" for port 22,
// "[host]:port" for others; "" for a wildcard entry (matched by suffix).
func knownHostsNames(a policy.Allow) []string {
	h := a.Host
	if a.IP.IsValid() {
		h = a.IP.String()
	}
	var out []string
	for _, p := range a.Ports {
		switch {
		case a.Wildcard:
			out = append(out, "")
		case p == 22:
			out = append(out, h)
		default:
			out = append(out, "["+h+"]:"+strconv.Itoa(int(p)))
		}
	}
	return out
}

func knownHostsMatch(pattern, name string, a policy.Allow) bool {
	if !strings.HasPrefix(pattern, "|1|") { // a hashed name's base64 is case-sensitive
		pattern = strings.ToLower(pattern)
	}
	if name == "" { // a wildcard entry: plain patterns beneath its domain
		if strings.ContainsAny(pattern, "*?|") {
			return false
		}
		host, port := pattern, uint16(22)
		if strings.HasPrefix(pattern, "[") {
			i := strings.Index(pattern, "]:")
			if i < 0 {
				return false
			}
			n, err := strconv.ParseUint(pattern[i+2:], 10, 16)
			if err != nil {
				return false
			}
			host, port = pattern[1:i], uint16(n)
		}
		return a.MatchesName(host, port)
	}
	if rest, ok := strings.CutPrefix(pattern, "|1|"); ok {
		salt64, hash64, ok := strings.Cut(rest, "|")
		salt, err1 := base64.StdEncoding.DecodeString(salt64)
		hash, err2 := base64.StdEncoding.DecodeString(hash64)
		if !ok || err1 != nil || err2 != nil {
			return false
		}
		m := hmac.New(sha1.New, salt)
		m.Write([]byte(name))
		return hmac.Equal(m.Sum(nil), hash)
	}
	return glob(pattern, name)
}

// glob matches ssh's host patterns: '*' any run of characters, '?' one.
func glob(p, s string) bool {
	for len(p) > 0 {
		switch p[0] {
		case '*':
			for i := len(s); i >= 0; i-- {
				if glob(p[1:], s[i:]) {
					return true
				}
			}
			return false
		case '?':
			if s == "" {
				return false
			}
		default:
			if s == "" || p[0] != s[0] {
				return false
			}
		}
		p, s = p[1:], s[1:]
	}
	return s == ""
}

// sshPeer lets only the launch's own processes use its agent socket: the
// connecting process must be in the launch's cgroup (its tools cannot leave it).
// The socket's directory has a random name and belongs to the tools' identity,
// but another launch of that identity that may list the directory's parent would
// otherwise find and use it. Without cgroups (a runtime without them) there is
// no such check: every launch then runs as the runtime's own uid anyway, and only
// the random name keeps them apart (docs/network.md, "SSH").
func (g *grant) sshPeer(pid int, cgroups bool) error {
	grp := g.launchGroup.Load()
	if grp == nil {
		if cgroups {
			return errors.New("the launch has no cgroup yet")
		}
		return nil
	}
	b, err := os.ReadFile(filepath.Join(grp.Path(), "cgroup.procs"))
	if err != nil {
		return fmt.Errorf("read the launch's cgroup: %w", err)
	}
	want := strconv.Itoa(pid)
	for _, l := range strings.Split(string(b), "\n") {
		if l == want {
			return nil
		}
	}
	return errors.New("not a process of this launch")
}
