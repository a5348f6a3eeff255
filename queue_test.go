package agentexec_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/internal/testutil"
)

// slowFastPolicy has one profile (concurrency 4) with a slow and a fast tool.
const slowFastPolicy = "  slow: {exec: /bin/sleep, concurrency: 4}\n  fast: {exec: /bin/true, concurrency: 4}\n"

// startSlow starts n `slow 30` launches; they are killed at cleanup.
func startSlow(t testing.TB, rt *agentexec.Runtime, n int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	for range n {
		go func() { _, _ = rt.Run(ctx, agentexec.Request{Tool: "slow", Args: []string{"30"}}) }()
	}
}

func waitStats(t testing.TB, rt *agentexec.Runtime, inflight, queued int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := rt.Stats()
		if s.InFlight == inflight && s.Queued == queued {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats in flight %d queued %d, want %d and %d", s.InFlight, s.Queued, inflight, queued)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// With four slow launches sent to a profile of four slots, one tool holds three
// and the fourth waits (counted as queued, not in flight), and a fast tool still
// runs at once on the slot kept from the slow one.
func TestFastToolNotQueuedBehindSlow(t *testing.T) {
	testutil.RequireRoot(t)
	p, _ := testPolicy(t, slowFastPolicy)
	rt := newRuntime(t, p)
	startSlow(t, rt, 4)
	waitStats(t, rt, 3, 1)
	r, err := rt.Run(context.Background(), agentexec.Request{Tool: "fast", Timeout: 20 * time.Second})
	if err != nil || r.ExitCode != 0 || r.TimedOut {
		t.Fatalf("fast tool behind slow ones: %v %+v", err, r)
	}
	// Control: the same slow tool once more waits for a slot (it holds its share).
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := rt.Run(ctx, agentexec.Request{Tool: "slow", Args: []string{"30"}}); err == nil {
		t.Fatal("a fifth slow launch was admitted over the tool's share")
	}
}

// A deadline is a deadline: a request whose timeout passes while it waits for a
// slot ends `timeout` without launching, and says how long it waited.
func TestQueuedRequestTimesOut(t *testing.T) {
	testutil.RequireRoot(t)
	p, _ := testPolicy(t, "  solo: {exec: /bin/sleep, concurrency: 1}\n  solo2: {exec: /bin/true, concurrency: 1}\n")
	rt := newRuntime(t, p)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _, _ = rt.Run(ctx, agentexec.Request{Tool: "solo", Args: []string{"30"}}) }()
	waitStats(t, rt, 1, 0)
	r, err := rt.Run(context.Background(), agentexec.Request{Tool: "solo2", Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if !r.TimedOut || r.Pid != 0 || r.Queued <= 0 || r.Backend != agentexec.BackendNone {
		t.Fatalf("queued past its deadline: %+v, want timed out, never launched, with its queue time", r)
	}
	if j := agentexec.NewResultJSON("q", r, nil); j.Status != agentexec.StatusTimeout || j.QueueMS <= 0 || j.ExitCode != nil {
		t.Errorf("JSON: status %s queue_ms %v exit %v", j.Status, j.QueueMS, j.ExitCode)
	}
	// Control: without a timeout the same request waits and then runs.
	cancel()
	r, err = rt.Run(context.Background(), agentexec.Request{Tool: "solo2"})
	if err != nil || r.ExitCode != 0 || r.TimedOut {
		t.Fatalf("after the slot frees: %v %+v", err, r)
	}
}

// BenchmarkFastBehindSlow is the queueing scenario of docs/performance.md: with
// four `sleep 30` sent to a four-slot profile, the latency of `true` (p50, p99 in
// ms) against the same `true` on an idle runtime, measured in the same run.
func BenchmarkFastBehindSlow(b *testing.B) {
	p, _ := testPolicy(b, slowFastPolicy)
	measure := func(b *testing.B, rt *agentexec.Runtime) {
		var lat []time.Duration
		for b.Loop() {
			start := time.Now()
			r, err := rt.Run(context.Background(), agentexec.Request{Tool: "fast"})
			if err != nil || r.ExitCode != 0 {
				b.Fatalf("%v %+v", err, r)
			}
			lat = append(lat, time.Since(start))
		}
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	}
	b.Run("idle", func(b *testing.B) { measure(b, newRuntime(b, p)) })
	b.Run("behind-4-sleeps", func(b *testing.B) {
		rt := newRuntime(b, p)
		startSlow(b, rt, 4)
		waitStats(b, rt, 3, 1)
		measure(b, rt)
	})
}
