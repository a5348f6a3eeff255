package agentexec_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/policy"
)

// BenchmarkKernelVsUserspace is issue 21's guest benchmark: `cat /dev/null` launched through
// the whole runtime with the kernel spawn_template backend and with the userspace
// backend, interleaved in rounds (kernel, userspace, kernel, …), and the median of
// each round's kernel/userspace ratio of medians (ratio-median), its spread
// (ratio-min, ratio-max) and both medians. It runs where the RFC's syscalls exist
// (make vmtest-rfc-bench, docs/performance.md) and skips elsewhere.
func BenchmarkKernelVsUserspace(b *testing.B) {
	const rounds, perRound = 5, 40
	mk := func(setting string) *agentexec.Runtime {
		p, _ := testPolicyTop(b, "kernel_templates: "+setting+"\n")
		for _, pr := range p.Profiles {
			pr.User = &policy.User{Own: true} // kernel templates keep the runtime's identity
		}
		return newRuntime(b, p)
	}
	probe, _ := testPolicyTop(b, "")
	if h := agentexec.ProbeHost(probe); !h.KernelTemplates.Available {
		b.Skipf("needs the spawn_template syscalls (make vmtest-rfc-bench): %s", h.KernelTemplates.Reason)
	}
	kernel, user := mk("require"), mk("off")
	ctx := context.Background()
	launch := func(rt *agentexec.Runtime, want agentexec.Backend) time.Duration {
		start := time.Now()
		// cat is hot in the test policy (kernel templates are made for hot tools).
		r, err := rt.Run(ctx, agentexec.Request{Tool: "cat", Args: []string{"/dev/null"}})
		d := time.Since(start)
		if err != nil || r.ExitCode != 0 || r.Backend != want {
			b.Fatalf("%s: %v exit %d backend %s", want, err, r.ExitCode, r.Backend)
		}
		return d
	}
	median := func(d []time.Duration) time.Duration {
		slices.Sort(d)
		return d[len(d)/2]
	}
	for range b.N {
		var ratios []float64
		var km, um []time.Duration
		for range rounds {
			var k, u []time.Duration
			for range perRound {
				k = append(k, launch(kernel, agentexec.BackendKernel))
				u = append(u, launch(user, agentexec.BackendUserspace))
			}
			mk, mu := median(k), median(u)
			km, um = append(km, mk), append(um, mu)
			ratios = append(ratios, float64(mk)/float64(mu))
		}
		slices.Sort(ratios)
		b.ReportMetric(ratios[len(ratios)/2], "ratio-median")
		b.ReportMetric(ratios[0], "ratio-min")
		b.ReportMetric(ratios[len(ratios)-1], "ratio-max")
		b.ReportMetric(float64(median(km).Microseconds())/1000, "kernel-ms")
		b.ReportMetric(float64(median(um).Microseconds())/1000, "userspace-ms")
	}
}
