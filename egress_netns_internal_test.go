package agentexec

import (
	"strings"
	"testing"

	"github.com/agentexec/agentexec/policy"
)

// Which profiles get the egress namespace, and what `check` says remains
// reachable with and without it (the host's answer is a parameter here, so both
// the root and the unprivileged statements are checked on any machine).
func TestEgressConfinement(t *testing.T) {
	prof := func(n policy.Network) *policy.Profile { return &policy.Profile{Name: "p", Network: n} }
	for _, c := range []struct {
		name    string
		n       policy.Network
		wanted  bool
		netnsOK bool
		mode    string
		says    []string
	}{
		{"allow only, root", policy.Network{Egress: true}, true, true, "netns",
			[]string{"only listener is the egress proxy", "no other address, port"}},
		{"allow only, unprivileged", policy.Network{Egress: true}, true, false, "landlock",
			[]string{"proxy's port (chosen at start) on every address", "any other host", "no network namespace here (unshare: EPERM)"}},
		{"allow and isolated, root", policy.Network{Egress: true, Isolated: policy.BestEffort, ConnectTCP: []uint16{5432}}, true, true, "netns", nil},
		{"allow and connect_tcp, root", policy.Network{Egress: true, ConnectTCP: []uint16{5432}}, false, true, "landlock",
			[]string{"every address", "connect_tcp [5432]", "set network.isolated"}},
		{"allow and bind_tcp, root", policy.Network{Egress: true, BindTCP: []uint16{8080}}, false, true, "landlock", []string{"bind_tcp [8080]"}},
		{"no egress", policy.Network{Isolated: policy.Require}, false, true, "landlock", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := prof(c.n)
			if got := egressNetNSWanted(p); got != c.wanted {
				t.Errorf("egressNetNSWanted = %v, want %v", got, c.wanted)
			}
			if !c.n.Egress {
				return
			}
			mode, reach := egressConfinement(p, c.netnsOK, "unshare: EPERM")
			if mode != c.mode {
				t.Errorf("mode %s, want %s (%s)", mode, c.mode, reach)
			}
			for _, s := range c.says {
				if !strings.Contains(reach, s) {
					t.Errorf("reach %q does not say %q", reach, s)
				}
			}
		})
	}
}
