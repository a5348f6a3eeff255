package agentexec

import (
	"fmt"
	"slices"
	"strconv"

	"github.com/agentexec/agentexec/internal/egress"
	"github.com/agentexec/agentexec/policy"
)

// egressConnectCommand is the hidden command ssh's ProxyCommand runs for
// network.ssh hosts: the agentexec binary (or an embedding program, through
// ServeSpawner) tunnels stdin/stdout through the egress proxy's CONNECT.
const egressConnectCommand = "__egress_connect"

// setupEgress starts the egress proxy when a tool of the policy has network.allow
// or network.ssh (docs/network.md): one loopback port for the runtime, each launch
// told apart by a credential of its own.
func (rt *Runtime) setupEgress() error {
	if !slices.ContainsFunc(rt.pol.Tools, func(t *policy.Tool) bool { return t.Egress != nil }) {
		return nil
	}
	// network.ssh: each tool's known_hosts must exist and name its hosts (egress_ssh.go).
	if err := rt.checkSSH(); err != nil {
		return err
	}
	cfg := egress.Config{SSHProxyCommand: rt.opts.binary + " " + egressConnectCommand + " %h %p"}
	// secrets: their values and the CA bundle's directory (egress_secrets.go).
	if err := rt.egressSecrets(&cfg); err != nil {
		return err
	}
	if rt.opts.egressTest != nil {
		rt.opts.egressTest(&cfg)
	}
	p, err := egress.New(cfg)
	if err != nil {
		return fmt.Errorf("agentexec: egress proxy: %w", err)
	}
	rt.egress = p
	return rt.trustEgressBundle()
}

// egressPlan lets the profile's tools reach the proxy: its port joins the
// Landlock connect rules. In the egress namespace (egress_netns.go, also for
// network.isolated) that port leads only to the proxy's listener there; without
// it, to that port on every address (docs/network.md, "The network namespace").
func (rt *Runtime) egressPlan(prof *policy.Profile, connectTCP *[]uint16) error {
	if rt.egress == nil || !prof.Network.Egress {
		return nil
	}
	*connectTCP = append(*connectTCP, uint16(rt.egress.Port()))
	return nil
}

// egressSession opens the launch's proxy session and returns it with the
// variables that point the tool at it (nil when the tool has no egress).
func (rt *Runtime) egressSession(t *policy.Tool, g *grant) (*egress.Session, []string, error) {
	if rt.egress == nil || t.Egress == nil {
		return nil, nil, nil
	}
	s, err := rt.egress.Session(t.Name+"-"+strconv.FormatUint(rt.launchSeq.Add(1), 10), t.Egress, t.Egress.Secrets)
	if err != nil {
		return nil, nil, &LaunchError{Tool: t.Name, Op: "egress", Err: err}
	}
	// network.ssh: known_hosts checked, the launch's filtering agent (egress_ssh.go).
	if err := rt.sshSession(t, s, g); err != nil {
		s.Close()
		return nil, nil, &LaunchError{Tool: t.Name, Op: "egress", Err: err}
	}
	return s, s.Env(), nil
}

// egressReport converts the proxy's report of a launch.
func egressReport(rep egress.Report) *EgressReport {
	r := &EgressReport{DroppedAllowed: rep.DroppedAllowed, Sent: rep.Sent, Received: rep.Received}
	for _, c := range rep.Allowed {
		r.Allowed = append(r.Allowed, EgressConn{Method: c.Method, Host: c.Host, Port: c.Port, Addr: c.Addr, Rule: c.Rule,
			Sent: c.Sent, Received: c.Received, Intercepted: c.Intercepted, Error: c.Error, DurationMS: c.DurationMS})
	}
	return r
}

// egressDenials are the proxy's refusals of a launch as denials of the network
// layer; the allow entry that would admit the destination is the hint.
func egressDenials(rep egress.Report) []policy.Denial {
	var ds []policy.Denial
	for _, d := range rep.Denied {
		den := policy.Denial{Layer: policy.LayerNetwork, Access: "net.egress." + d.Check, Count: 1,
			Object: policy.DeniedObject{Addr: d.Addr, Port: d.Port, Name: d.Host, Rule: d.Rule}}
		if d.Allow != "" {
			den.Hint = &policy.Hint{Patch: []policy.Change{{Field: d.Rule, Add: d.Allow}},
				Text: fmt.Sprintf("add %q to %s", d.Allow, d.Rule)}
		} else {
			den.Hint = &policy.Hint{ByDesign: true, Text: "not allowed by design: " + d.Reason}
		}
		// The same refusal again is one denial with a count.
		if n := len(ds); n > 0 && ds[n-1].Access == den.Access && sameDestination(ds[n-1].Object, den.Object) {
			ds[n-1].Count++
			continue
		}
		ds = append(ds, den)
	}
	return ds
}

func sameDestination(a, b policy.DeniedObject) bool {
	return a.Name == b.Name && a.Port == b.Port && a.Addr == b.Addr && a.Rule == b.Rule
}
