package bench

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeBackend answers from a function and counts calls.
type fakeBackend struct {
	n     string
	f     func(t *target) (outcome, error)
	calls atomic.Int64
}

func (b *fakeBackend) name() string { return b.n }
func (b *fakeBackend) run(_ context.Context, t *target) (outcome, error) {
	b.calls.Add(1)
	if b.f != nil {
		return b.f(t)
	}
	return outcome{stdout: []byte(t.Name + "\n")}, nil
}
func (b *fakeBackend) close() error { return nil }

func fakeReport(bs []backend, ts []*target) *Report {
	rep := &Report{Baseline: bs[len(bs)-1].name(), Config: RunConfig{Inflight: 4}}
	for _, b := range bs {
		rep.Backends = append(rep.Backends, BackendInfo{Name: b.name(), Available: true})
	}
	for _, t := range ts {
		rep.Tools = append(rep.Tools, ToolReport{Name: t.Name, Tool: t.Tool})
	}
	return rep
}

func TestValidateSkips(t *testing.T) {
	ts := []*target{{Call: Call{Name: "ok"}}, {Call: Call{Name: "status"}}, {Call: Call{Name: "launch"}}, {Call: Call{Name: "basefail"}}, {Call: Call{Name: "differs"}}}
	sandboxed := &fakeBackend{n: "sandboxed", f: func(t *target) (outcome, error) {
		switch t.Name {
		case "status":
			return outcome{exit: 2, stderr: []byte("Permission denied\nmore")}, nil
		case "launch":
			return outcome{}, errors.New("rule tools.x: denied")
		case "differs":
			return outcome{stdout: []byte("other\n")}, nil
		}
		return outcome{stdout: []byte(t.Name + "\n")}, nil
	}}
	base := &fakeBackend{n: "base", f: func(t *target) (outcome, error) {
		if t.Name == "basefail" {
			return outcome{exit: 1, stderr: []byte("no such file")}, nil
		}
		return outcome{stdout: []byte(t.Name + "\n")}, nil
	}}
	bs := []backend{sandboxed, base}
	rep := fakeReport(bs, ts)
	if err := validate(context.Background(), bs, ts, rep); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"ok":       "",
		"status":   "sandboxed exits 2, base 0: Permission denied",
		"launch":   "sandboxed: rule tools.x: denied",
		"basefail": "base exits 1: no such file",
		"differs":  "",
	}
	for i, tr := range rep.Tools {
		if tr.Skipped != want[tr.Name] {
			t.Errorf("%s: skipped %q, want %q", tr.Name, tr.Skipped, want[tr.Name])
		}
		if (ts[i] == nil) != (want[tr.Name] != "") {
			t.Errorf("%s: target kept %v", tr.Name, ts[i] != nil)
		}
	}
	var differs bool
	for _, n := range rep.Notes {
		differs = differs || strings.HasPrefix(n, "differs: output through sandboxed differs from base")
	}
	if !differs {
		t.Errorf("no note about the differing output: %q", rep.Notes)
	}
}

// The phases call every backend for every target the number of times asked.
func TestPhases(t *testing.T) {
	slow := &fakeBackend{n: "slow"}
	base := &fakeBackend{n: "base"}
	ts := []*target{{Call: Call{Name: "a"}}, {Call: Call{Name: "b"}}}
	bs := []backend{slow, base}
	lat := latencyPhase(context.Background(), bs, ts, 5, nil)
	if slow.calls.Load() != 10 || base.calls.Load() != 10 {
		t.Fatalf("calls: slow %d base %d, want 10 each", slow.calls.Load(), base.calls.Load())
	}
	for bi := range bs {
		for ti := range ts {
			if n := len(lat.d[bi][ti]); n != 5 || lat.failures[bi][ti] != 0 {
				t.Errorf("latency %s/%s: %d samples, %d failures, want 5 and 0", bs[bi].name(), ts[ti].Name, n, lat.failures[bi][ti])
			}
		}
	}
	slow.calls.Store(0)
	base.calls.Store(0)
	// 2 rounds of a block of 8 one at a time and a block of 8 with 4 in flight.
	thr := throughputPhase(context.Background(), bs, ts, 2, 8, 4, nil)
	if slow.calls.Load() != 32 || base.calls.Load() != 32 {
		t.Fatalf("throughput calls: slow %d base %d, want 32 each", slow.calls.Load(), base.calls.Load())
	}
	for bi := range bs {
		if thr.serialCalls[bi] != 16 || thr.parallelCalls[bi] != 16 || thr.failures[bi] != 0 {
			t.Errorf("throughput %s: %d serial, %d parallel calls, %d failures; want 16, 16, 0", bs[bi].name(), thr.serialCalls[bi], thr.parallelCalls[bi], thr.failures[bi])
		}
	}
}

// The summary divides by the baseline (the last backend). The samples are made up,
// so every ratio is known exactly.
func TestSummary(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var d []time.Duration
		for _, x := range v {
			d = append(d, time.Duration(x)*time.Millisecond)
		}
		return d
	}
	bs := []backend{&fakeBackend{n: "slow"}, &fakeBackend{n: "base"}}
	ts := []*target{{Call: Call{Name: "a"}}, {Call: Call{Name: "b"}}}
	rep := fakeReport(bs, ts)
	lat := &latencies{
		d: [][][]time.Duration{
			{ms(10, 9, 11, 10, 10), ms(4, 4, 4, 4, 4)}, // slow: a ten times, b twice the baseline
			{ms(1, 1, 1, 1, 1), ms(2, 2, 2, 2, 2)},     // base
		},
		failures: [][]int{{0, 0}, {0, 0}},
	}
	thr := &rates{
		serialCalls: []int{16, 16}, parallelCalls: []int{16, 16},
		// slow: 100 calls/s one at a time, 400 with 4 in flight; base: 1000 and 4000.
		serialTime:   []time.Duration{160 * time.Millisecond, 16 * time.Millisecond},
		parallelTime: []time.Duration{40 * time.Millisecond, 4 * time.Millisecond},
		failures:     []int{0, 0},
	}
	summarize(rep, bs, ts, lat, thr)
	judge(rep)
	near := func(got, want float64) bool { return math.Abs(got-want) <= 1e-9*math.Abs(want) }
	wantSlow := map[string][2]float64{"a": {10, 11}, "b": {2, 2}} // median and p99 ratios
	for _, tr := range rep.Tools {
		if len(tr.Results) != 2 {
			t.Fatalf("%s: %d results", tr.Name, len(tr.Results))
		}
		s, b := tr.Results[0], tr.Results[1]
		if s.Backend != "slow" || b.Backend != "base" {
			t.Errorf("%s: results for %s and %s, want slow and base", tr.Name, s.Backend, b.Backend)
		}
		w := wantSlow[tr.Name]
		if s.MedianRatio != w[0] || s.P99Ratio != w[1] || b.MedianRatio != 1 || b.P99Ratio != 1 {
			t.Errorf("%s: slow median/p99 ratios %v/%v, base %v/%v; want %v/%v and 1/1", tr.Name, s.MedianRatio, s.P99Ratio, b.MedianRatio, b.P99Ratio, w[0], w[1])
		}
		if s.Summary.N != 5 || b.Summary.N != 5 {
			t.Errorf("%s: %d and %d samples, want 5", tr.Name, s.Summary.N, b.Summary.N)
		}
	}
	if len(rep.Overall) != 2 {
		t.Fatalf("%d overall rows, want 2", len(rep.Overall))
	}
	o, ob := rep.Overall[0], rep.Overall[1]
	if !near(o.GeoMeanMedianRatio, math.Sqrt(20)) || !near(o.GeoMeanP99Ratio, math.Sqrt(22)) {
		t.Errorf("slow: geomean ratios %v (median), %v (p99); want √20 and √22", o.GeoMeanMedianRatio, o.GeoMeanP99Ratio)
	}
	if !near(o.SerialCallsPerSec, 100) || !near(o.ParallelCallsPerSec, 400) || !near(o.Speedup, 4) ||
		!near(o.SerialRateRatio, 0.1) || !near(o.ParallelRateRatio, 0.1) {
		t.Errorf("slow: %+v; want 100 and 400 calls/s, speedup 4, rate ratios 0.1", o)
	}
	if ob.GeoMeanMedianRatio != 1 || ob.GeoMeanP99Ratio != 1 || !near(ob.Speedup, 4) || ob.SerialRateRatio != 1 || ob.ParallelRateRatio != 1 {
		t.Errorf("base: %+v; want ratios 1, speedup 4", ob)
	}
	if o.Failures != 0 || ob.Failures != 0 || len(rep.Notes) != 0 {
		t.Errorf("failures %d, %d, notes %q; want none", o.Failures, ob.Failures, rep.Notes)
	}
}

func TestRunUnknownCall(t *testing.T) {
	_, err := Run(context.Background(), Config{Only: []string{"true", "nosuch"}})
	if err == nil || !strings.Contains(err.Error(), `no call "nosuch"`) || !strings.Contains(err.Error(), "git status") {
		t.Errorf("err %v, want the unknown name and the valid ones", err)
	}
}
