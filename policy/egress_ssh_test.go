package policy

import (
	"slices"
	"strings"
	"testing"
)

func TestPolicyEgressSSH(t *testing.T) {
	p := mustParse(t, `version: 1
defaults:
  filesystem: {read: [/usr], exec: [/usr]}
  network:
    known_hosts: /etc/agentexec/known_hosts
tools:
  git:
    network: {ssh: [github.com]}
  gitown:
    network: {ssh: [github.com], known_hosts: /srv/kh, ssh_agent: true, unix: true}
  gitdefault:
    network: {ssh: [github.com], known_hosts: /etc/ssh/ssh_known_hosts}
  curl:
    network: {allow: [a.org]}
`)
	for _, tt := range []struct {
		tool, kh, field string
		agent           bool
	}{
		{"git", "/etc/agentexec/known_hosts", "defaults.network.known_hosts", false},
		{"gitown", "/srv/kh", "tools.gitown.network.known_hosts", true},
		{"gitdefault", DefaultKnownHosts, "tools.gitdefault.network.known_hosts", false},
	} {
		tl, _ := p.Tool(tt.tool)
		e := tl.Egress
		if e.KnownHosts != tt.kh || e.KnownHostsField != tt.field || e.SSHAgent != tt.agent {
			t.Errorf("%s: known_hosts %q (%s), agent %v", tt.tool, e.KnownHosts, e.KnownHostsField, e.SSHAgent)
		}
		// ssh reads the file under Landlock: it is one of the profile's read roots.
		if !slices.Contains(tl.Profile.FS.Read, tt.kh) {
			t.Errorf("%s: read roots %q lack %s", tt.tool, tl.Profile.FS.Read, tt.kh)
		}
	}
	// Control: a tool without ssh hosts gets neither the file nor its read root.
	curl, _ := p.Tool("curl")
	if curl.Egress.KnownHosts != "" || slices.Contains(curl.Profile.FS.Read, "/etc/agentexec/known_hosts") {
		t.Errorf("curl: known_hosts %q, read %q", curl.Egress.KnownHosts, curl.Profile.FS.Read)
	}
	// Without known_hosts anywhere: the documented default.
	q := mustParse(t, "version: 1\ndefaults:\n  filesystem: {read: [/usr], exec: [/usr]}\ntools:\n  git:\n    network: {ssh: [github.com]}\n")
	g, _ := q.Tool("git")
	if g.Egress.KnownHosts != DefaultKnownHosts || g.Egress.KnownHostsField != "tools.git.network.known_hosts" {
		t.Errorf("default known_hosts: %q (%s)", g.Egress.KnownHosts, g.Egress.KnownHostsField)
	}
}

func TestPolicyEgressSSHErrors(t *testing.T) {
	base := "version: 1\ndefaults:\n  filesystem: {read: [/usr], exec: [/usr]}\ntools:\n"
	for _, tt := range []struct{ name, src, want string }{
		{"relative known_hosts", base + "  git:\n    network: {ssh: [a.org], known_hosts: kh}\n",
			`p.yaml:6:42: tools.git.network.known_hosts: "kh" is not an absolute path`},
		{"agent without unix", base + "  git:\n    network: {ssh: [a.org], ssh_agent: true}\n",
			`p.yaml:6:40: tools.git.network.ssh_agent: true needs network.unix: true (the agent is a unix socket the tool's ssh connects to)`},
		{"known_hosts without ssh", base + "  curl:\n    network: {allow: [a.org], known_hosts: /kh}\n",
			`p.yaml:6:44: tools.curl.network.known_hosts: known_hosts without network.ssh hosts: it is only used by ssh to the network.ssh hosts`},
		{"agent not a bool", base + "  git:\n    network: {ssh: [a.org], ssh_agent: maybe, unix: true}\n",
			`tools.git.network.ssh_agent`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("p.yaml", []byte(tt.src), testOpts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err %v, want %q", err, tt.want)
			}
		})
	}
}
