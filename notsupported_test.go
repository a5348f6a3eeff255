package agentexec_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/internal/testutil"
	"github.com/agentexec/agentexec/policy"
)

// Every `require` the host cannot meet is an error matching ErrNotSupported (and
// errors.ErrUnsupported), whichever layer found the gap: before the one shared
// error, kernel_templates: require and a profile's cgroup: require with a missing
// controller returned errors that matched neither.
func TestRequireErrorsMatchErrNotSupported(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireLandlockABI(t, 6)
	cases := []struct {
		name  string
		extra func(p *policy.Policy)
		yaml  string
		// met reports whether this host meets the requirement (then New succeeds,
		// and the case is the control).
		met  func(h *agentexec.Host) bool
		want string
	}{
		{
			name: "kernel_templates",
			yaml: "kernel_templates: require\n",
			met:  func(h *agentexec.Host) bool { return h.KernelTemplates.Available },
			want: "kernel",
		},
		{
			name: "cgroup_memory",
			yaml: "  strict: {exec: /bin/true, limits: {memory: 64MiB}, enforcement: {cgroup: require}}\n",
			met: func(h *agentexec.Host) bool {
				return h.Cgroup != nil && h.Cgroup.CanCreate && h.Cgroup.Has("memory")
			},
			want: "memory",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var p *policy.Policy
			if strings.HasPrefix(c.yaml, " ") {
				p, _ = testPolicy(t, c.yaml)
			} else {
				p, _ = testPolicyTop(t, c.yaml)
			}
			if c.name == "kernel_templates" {
				// Without user:, a root runtime runs tools as its tool identity,
				// which kernel templates cannot switch to: require is refused by
				// design there. The control needs the runtime's own identity.
				for _, pr := range p.Profiles {
					pr.User = &policy.User{Own: true}
				}
			}
			rt, err := agentexec.New(context.Background(), p)
			if c.met(agentexec.ProbeHost(p)) {
				// The control: a host that has the feature starts the runtime.
				if err != nil {
					t.Fatalf("host meets %s: New: %v", c.name, err)
				}
				rt.Close()
				t.Skipf("this host meets the requirement (%s); the error path runs where it does not (this CI host)", c.name)
			}
			if err == nil {
				rt.Close()
				t.Fatalf("New succeeded on a host without %s under require", c.name)
			}
			if !errors.Is(err, agentexec.ErrNotSupported) || !errors.Is(err, errors.ErrUnsupported) {
				t.Errorf("New: %v: does not match ErrNotSupported and errors.ErrUnsupported", err)
			}
			if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "require") {
				t.Errorf("New: %v: want it to name %q and require", err, c.want)
			}
		})
	}
}
