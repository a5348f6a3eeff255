package policy

import (
	"slices"

	"gopkg.in/yaml.v3"

	"github.com/agentexec/agentexec/internal/yamlnode"
)

// DefaultKnownHosts is the known_hosts file of network.ssh when neither the tool
// nor defaults: name one (network.known_hosts): the system-wide file that only
// root writes, never a user's ~/.ssh/known_hosts (whose entries ssh adds on first
// use). The runtime refuses to start when the file in force is missing.
const DefaultKnownHosts = "/etc/ssh/ssh_known_hosts"

// sshRules are network.known_hosts and network.ssh_agent of defaults: or a tool.
type sshRules struct {
	knownHosts opt[string]
	agent      opt[bool]
}

// knownHostsField and sshAgentField read network.known_hosts and
// network.ssh_agent (parse.go adds them to the network section).
func (d *decoder) knownHostsField(r *egressRules) yamlnode.Field {
	return yamlnode.Field{Name: "known_hosts", Fn: func(_, v *yaml.Node, f string, _ bool) {
		s, ok := d.Str(v, f)
		if !ok {
			return
		}
		p, err := d.x.absPath(s)
		if err != nil {
			d.Fail(yamlnode.Deref(v), f, "%v", err)
			return
		}
		r.knownHosts = opt[string]{set: true, v: p, n: yamlnode.Deref(v)}
	}}
}

func (d *decoder) sshAgentField(r *egressRules) yamlnode.Field {
	return yamlnode.Field{Name: "ssh_agent", Fn: func(_, v *yaml.Node, f string, _ bool) { r.agent = d.optBool(v, f) }}
}

// egressSSH completes e for a tool with network.ssh hosts (docs/network.md, "SSH"):
// the known_hosts file ssh checks host keys against (the tool's, else the
// defaults', else DefaultKnownHosts), which joins the profile's read roots (unless
// one holds it already) so that ssh can read it under Landlock; and ssh_agent, which needs network.unix (the
// agent is a unix socket). Both settings without network.ssh hosts are errors when
// the tool itself writes them.
func (d *decoder) egressSSH(t *Tool, rt *rawTool, defs *rules, m *rules, e *Egress) {
	tool := yamlnode.Join("tools", rt.name) + ".network."
	kh, khField := defs.egress.knownHosts, "defaults.network.known_hosts"
	if rt.r.egress.knownHosts.set {
		kh, khField = rt.r.egress.knownHosts, tool+"known_hosts"
	}
	agent, agentField := defs.egress.agent, "defaults.network.ssh_agent"
	if rt.r.egress.agent.set {
		agent, agentField = rt.r.egress.agent, tool+"ssh_agent"
	}
	if len(e.SSH) == 0 {
		if rt.r.egress.knownHosts.set {
			d.Fail(kh.n, khField, "known_hosts without network.ssh hosts: it is only used by ssh to the network.ssh hosts")
		}
		if rt.r.egress.agent.set && agent.v {
			d.Fail(agent.n, agentField, "ssh_agent without network.ssh hosts: the agent signs only for sessions to them")
		}
		return
	}
	if kh.set {
		e.KnownHosts, e.KnownHostsField = kh.v, khField
	} else {
		e.KnownHosts, e.KnownHostsField = DefaultKnownHosts, tool+"known_hosts"
	}
	if !slices.ContainsFunc(t.Profile.FS.Read, func(r string) bool { return Beneath(e.KnownHosts, r) }) {
		t.Profile.FS.Read = sortedSet(append(t.Profile.FS.Read, e.KnownHosts))
	}
	if agent.v {
		if !m.unix.v {
			d.Fail(agent.n, agentField, "true needs network.unix: true (the agent is a unix socket the tool's ssh connects to)")
			return
		}
		e.SSHAgent, e.SSHAgentField = true, agentField
	}
}
