package spawner

import (
	"errors"
	"strings"
	"testing"

	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"

	"github.com/agentexec/agentexec/policy"
)

func profile(enf policy.Enforcement, connect []uint16) *policy.Profile {
	return &policy.Profile{
		Name:        "p",
		FS:          policy.FS{Read: []string{"/usr"}, Write: []string{"/work"}, Exec: []string{"/usr/bin"}},
		Network:     policy.Network{ConnectTCP: connect},
		IPC:         policy.IPC{ScopeAbstractUnix: true, ScopeSignals: true},
		Enforcement: policy.EnforcementRules{Landlock: enf, Cgroup: policy.BestEffort},
	}
}

// PlanLandlock is pure: each row fits one profile to one ABI.
func TestPlanLandlock(t *testing.T) {
	cases := []struct {
		name       string
		abi        int
		enf        policy.Enforcement
		connect    []uint16
		wantErr    []string // substrings of the error; nil: no error
		unenforced []string
		handledNet uint64
		scoped     uint64
		truncateFS bool
		referFS    bool
		enabled    bool
	}{
		{name: "abi7 require", abi: 7, enf: policy.Require, connect: []uint16{443}, handledNet: ll.AccessNetBindTCP | ll.AccessNetConnectTCP,
			scoped: ll.ScopeSignal | ll.ScopeAbstractUnixSocket, truncateFS: true, referFS: true, enabled: true},
		{name: "abi6 require", abi: 6, enf: policy.Require, handledNet: ll.AccessNetBindTCP | ll.AccessNetConnectTCP,
			scoped: ll.ScopeSignal | ll.ScopeAbstractUnixSocket, truncateFS: true, referFS: true, enabled: true},
		{name: "abi2 require tcp", abi: 2, enf: policy.Require, connect: []uint16{443},
			wantErr: []string{"net_tcp (ABI 4)", "truncate (ABI 3)", "have ABI 2"}},
		{name: "abi2 best effort", abi: 2, enf: policy.BestEffort, connect: []uint16{443}, referFS: true, enabled: true,
			unenforced: []string{"landlock: truncate (needs ABI 3, have 2)", "landlock: net_tcp (needs ABI 4, have 2)",
				"landlock: scope_abstract_unix (needs ABI 6, have 2)", "landlock: scope_signals (needs ABI 6, have 2)"}},
		{name: "abi0 best effort", abi: 0, enf: policy.BestEffort, enabled: false,
			unenforced: []string{"landlock: fs (needs ABI 1, have 0)", "landlock: truncate (needs ABI 3, have 0)", "landlock: net_tcp (needs ABI 4, have 0)",
				"landlock: scope_abstract_unix (needs ABI 6, have 0)", "landlock: scope_signals (needs ABI 6, have 0)"}},
		{name: "abi0 require", abi: 0, enf: policy.Require, wantErr: []string{"fs (ABI 1)"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			plan, err := PlanLandlock(profile(c.enf, c.connect), c.abi)
			if c.wantErr != nil {
				if err == nil {
					t.Fatalf("no error, want %q", c.wantErr)
				}
				for _, w := range c.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not name %q", err, w)
					}
				}
				if !errors.Is(err, ErrNotSupported) || !errors.Is(err, errors.ErrUnsupported) {
					t.Errorf("error %v does not match ErrNotSupported and errors.ErrUnsupported", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if plan.Enabled != c.enabled {
				t.Fatalf("enabled %v, want %v", plan.Enabled, c.enabled)
			}
			if strings.Join(plan.Unenforced, "|") != strings.Join(c.unenforced, "|") {
				t.Errorf("unenforced %q, want %q", plan.Unenforced, c.unenforced)
			}
			if plan.HandledNet != c.handledNet || plan.Scoped != c.scoped {
				t.Errorf("net %#x scoped %#x, want %#x %#x", plan.HandledNet, plan.Scoped, c.handledNet, c.scoped)
			}
			if got := plan.HandledFS&ll.AccessFSTruncate != 0; got != c.truncateFS {
				t.Errorf("truncate handled %v, want %v", got, c.truncateFS)
			}
			if got := plan.HandledFS&ll.AccessFSRefer != 0; got != c.referFS {
				t.Errorf("refer handled %v, want %v", got, c.referFS)
			}
			// Every granted right is handled, and read roots never get write rights.
			for _, r := range plan.Rules {
				if r.Access&^plan.HandledFS != 0 {
					t.Errorf("rule %v grants unhandled rights %#x", r.Paths, r.Access&^plan.HandledFS)
				}
				if r.Paths[0] == "/usr" && r.Access&ll.AccessFSWriteFile != 0 {
					t.Errorf("read root /usr got write rights")
				}
			}
		})
	}
}
