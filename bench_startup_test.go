package agentexec_test

import (
	"context"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/internal/bench"
	"github.com/agentexec/agentexec/internal/testutil"
	"github.com/agentexec/agentexec/policy"
)

// startupPolicy is the `agentexec bench` policy (Landlock, seccomp, limits, a pooled
// cgroup per launch) with the given hot tools, those of them this host has. tmp is
// the policy's ${TMPDIR}: "" gives the runtime a private one (as serve and run do);
// a shared directory such as /tmp is a writable root the runtime scans for git
// repositories to protect.
func startupPolicy(b *testing.B, tools []string, tmp string) *policy.Policy {
	b.Helper()
	var have []string
	for _, t := range tools {
		if _, err := exec.LookPath(t); err == nil {
			have = append(have, t)
		}
	}
	p, err := policy.LoadBytes("startup.yaml", []byte(bench.PolicyYAML(have, 16, "auto")),
		policy.Options{Workspace: b.TempDir(), Home: "/root", TmpDir: tmp, CPUs: runtime.NumCPU()})
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// newClose returns how long New took, and New and Close together.
func newClose(b *testing.B, p *policy.Policy) (startup, total time.Duration) {
	b.Helper()
	var opts []agentexec.Option
	if bin := os.Getenv("AGENTEXEC_BIN"); bin != "" {
		opts = append(opts, agentexec.WithSpawnerBinary(bin))
	}
	t0 := time.Now()
	rt, err := agentexec.New(context.Background(), p, opts...)
	if err != nil {
		b.Fatalf("New: %v", err)
	}
	startup = time.Since(t0)
	if err := rt.Close(); err != nil {
		b.Fatalf("Close: %v", err)
	}
	return startup, time.Since(t0)
}

// BenchmarkNew measures a runtime's start-up (New, then Close) with the bench
// policy's 20 hot tools (issue 18: New < 10 ms) against the same policy with one hot
// tool, and against the 20 tools with the shared os.TempDir() as ${TMPDIR} (a
// writable root New scans for repositories; `agentexec bench` uses it), alternately
// in the same run, the order rotating per iteration (docs/performance.md,
// "Start-up"). The spawner is $AGENTEXEC_BIN when set (`make bench` sets it), else
// this test binary. Sub-benchmarks:
//
//   - interleaved: one New+Close of each per iteration; reports the medians of New
//     (ms_new_hot1, ms_new_hot20, ms_new_hot20_tmp), the ratio of hot20 to hot1 and
//     the median of New+Close for hot20. ns/op is the three together.
//   - hot20: New+Close of the 20-tool policy alone (for -cpuprofile).
func BenchmarkNew(b *testing.B) {
	testutil.RequireRoot(b)
	testutil.RequireLandlockABI(b, 6)
	ps := []*policy.Policy{
		startupPolicy(b, []string{"true"}, ""),
		startupPolicy(b, bench.StartupTools, ""),
		startupPolicy(b, bench.StartupTools, os.TempDir()),
	}
	names := []string{"hot1", "hot20", "hot20_tmp"}
	for _, p := range ps {
		newClose(b, p) // warm-up: the host probe, page cache
	}
	b.Run("interleaved", func(b *testing.B) {
		starts := make([][]time.Duration, len(ps))
		totals := make([][]time.Duration, len(ps))
		for i := 0; b.Loop(); i++ {
			for k := range ps {
				j := (i + k) % len(ps)
				s, all := newClose(b, ps[j])
				starts[j], totals[j] = append(starts[j], s), append(totals[j], all)
			}
		}
		for j, name := range names {
			b.ReportMetric(float64(medianDuration(starts[j]))/1e6, "ms_new_"+name)
		}
		b.ReportMetric(float64(medianDuration(starts[1]))/float64(medianDuration(starts[0])), "x_hot20/hot1")
		b.ReportMetric(float64(medianDuration(totals[1]))/1e6, "ms_newclose_hot20")
		b.ReportMetric(float64(len(ps[1].Tools)), "tools")
	})
	b.Run("hot20", func(b *testing.B) {
		for b.Loop() {
			newClose(b, ps[1])
		}
	})
}

func medianDuration(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
