package bench

import (
	"testing"
	"time"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/internal/serve"
	"github.com/agentexec/agentexec/internal/spawner"
)

// Allocation budgets of pure pieces of the launch path. A change that allocates
// more fails here and must raise the budget on purpose (with a reason in the commit).
// Timings are never asserted; allocation counts are deterministic.

func TestAllocBudgets(t *testing.T) {
	p, _ := benchPolicy(t)
	prof := p.Profiles[0]
	result := agentexec.Result{Tool: "rg", Pid: 1234, ExitCode: 0, Stdout: []byte("pkg00/sub00/mod00.py:12:# TODO\n"),
		Wall: 3 * time.Millisecond, UserCPU: time.Millisecond, Backend: agentexec.BackendUserspace,
		Template: agentexec.TemplateHit, Cgroup: "/agentexec/p0/3", Containment: []string{"cgroup", "landlock-abi-7", "seccomp"}}
	line := []byte(`{"id":"r1","tool":"rg","args":["-n","TODO","."],"cwd":"/ws","timeout_ms":5000}`)
	cases := []struct {
		name   string
		budget float64
		f      func()
	}{
		// Per profile at start: the plan struct, the rule and port slices.
		{"PlanLandlock", 11, func() {
			if _, err := spawner.PlanLandlock(prof, 7); err != nil {
				t.Fatal(err)
			}
		}},
		// Per result line of serve and run --json: the struct and the two output strings.
		{"NewResultJSON", 3, func() { _ = agentexec.NewResultJSON("r1", result, nil) }},
		// Per request line of serve: the JSON decoder and the message's fields.
		{"DecodeMessage", 18, func() {
			if _, perr := serve.DecodeMessage(line); perr != nil {
				t.Fatal(perr)
			}
		}},
	}
	for _, c := range cases {
		got := testing.AllocsPerRun(100, c.f)
		if got > c.budget {
			t.Errorf("%s: %v allocations per run, budget %v", c.name, got, c.budget)
		} else {
			t.Logf("%s: %v allocations per run (budget %v)", c.name, got, c.budget)
		}
	}
}
