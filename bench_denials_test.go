package agentexec_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/agentexec/agentexec"
)

// BenchmarkKernelDenials measures what kernel denials cost a launch of `true`
// under the same policy, in the same run:
//
//   - "off": kernel_denials off, the host's audit as it was (off on this kind of
//     machine unless another runtime holds it on).
//   - "on": kernel_denials on: the per-launch Landlock layer logs, the seccomp
//     filter has FLAG_LOG, and each launch ends with a sync-marker round through
//     the audit stream (internal/audit, Launch.Finish).
//   - "interleaved": an "on" and an "off" launch in turn, both runtimes alive
//     (so the host's audit is on for both), each timed apart: the collection's
//     own cost, free of the drift of a shared machine between sub-benchmarks.
//     It reports on-us and off-us per launch and x-off, their ratio, and
//     x-off-med, the ratio of the median launch times (steadier on a machine
//     shared with other work).
//
// docs/denials.md ("Cost") has the command and figures.
func BenchmarkKernelDenials(b *testing.B) {
	requireKernelDenials(b)
	ctx := context.Background()
	launch := func(b *testing.B, rt *agentexec.Runtime, state string) {
		r, err := rt.Run(ctx, agentexec.Request{Tool: "true"})
		if err != nil || r.ExitCode != 0 || r.DenialsStatus.State != state {
			b.Fatalf("%v exit %d denials %+v %+v (want %s)", err, r.ExitCode, r.Denials, r.DenialsStatus, state)
		}
	}
	runtimeWith := func(b *testing.B, denials bool) *agentexec.Runtime {
		top := ""
		if denials {
			top = "kernel_denials: on\n"
		}
		p, _ := testPolicyTop(b, top)
		return newRuntime(b, p)
	}
	b.Run("off", func(b *testing.B) {
		rt := runtimeWith(b, false)
		b.ReportAllocs()
		for b.Loop() {
			launch(b, rt, "unavailable")
		}
	})
	b.Run("on", func(b *testing.B) {
		rt := runtimeWith(b, true)
		b.ReportAllocs()
		for b.Loop() {
			launch(b, rt, "complete")
		}
	})
	b.Run("interleaved", func(b *testing.B) {
		on, off := runtimeWith(b, true), runtimeWith(b, false)
		var onT, offT time.Duration
		var onL, offL []time.Duration
		for b.Loop() {
			t0 := time.Now()
			launch(b, on, "complete")
			t1 := time.Now()
			launch(b, off, "unavailable")
			t2 := time.Now()
			onT, offT = onT+t1.Sub(t0), offT+t2.Sub(t1)
			onL, offL = append(onL, t1.Sub(t0)), append(offL, t2.Sub(t1))
		}
		n := float64(b.N)
		b.ReportMetric(float64(onT.Microseconds())/n, "on-us")
		b.ReportMetric(float64(offT.Microseconds())/n, "off-us")
		b.ReportMetric(float64(onT)/float64(offT), "x-off")
		// The ratio of the medians: a burst of another program's work on a shared
		// machine moves a few launches' times, and so the ratio of the sums, more
		// than it moves the median.
		b.ReportMetric(float64(denialsMedian(onL))/float64(denialsMedian(offL)), "x-off-med")
	})
}

func denialsMedian(d []time.Duration) time.Duration {
	d = slices.Clone(d)
	slices.Sort(d)
	return d[len(d)/2]
}
