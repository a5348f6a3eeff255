package bench

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeBackend answers from a function and counts calls; it sleeps d per call.
type fakeBackend struct {
	n     string
	d     time.Duration
	f     func(t *target) (outcome, error)
	calls atomic.Int64
}

func (b *fakeBackend) name() string { return b.n }
func (b *fakeBackend) run(_ context.Context, t *target) (outcome, error) {
	b.calls.Add(1)
	time.Sleep(b.d)
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

// The latency phase rotates backends and the summary divides by the baseline.
func TestPhasesAndSummary(t *testing.T) {
	// Ten times slower, so that a loaded machine's sleep overshoot (a millisecond
	// or two) cannot bring the ratios near 1.
	slow := &fakeBackend{n: "slow", d: 10 * time.Millisecond}
	base := &fakeBackend{n: "base", d: 1 * time.Millisecond}
	ts := []*target{{Call: Call{Name: "a"}}, {Call: Call{Name: "b"}}}
	bs := []backend{slow, base}
	rep := fakeReport(bs, ts)
	lat := latencyPhase(context.Background(), bs, ts, 5, nil)
	if slow.calls.Load() != 10 || base.calls.Load() != 10 {
		t.Fatalf("calls: slow %d base %d, want 10 each", slow.calls.Load(), base.calls.Load())
	}
	thr := throughputPhase(context.Background(), bs, ts, 2, 8, 4, nil)
	summarize(rep, bs, ts, lat, thr)
	judge(rep)
	for _, tr := range rep.Tools {
		if len(tr.Results) != 2 {
			t.Fatalf("%s: %d results", tr.Name, len(tr.Results))
		}
		s, b := tr.Results[0], tr.Results[1]
		if b.MedianRatio != 1 || s.MedianRatio < 2.5 {
			t.Errorf("%s: ratios slow %.2f base %.2f, want about 10 (at least 2.5) and 1", tr.Name, s.MedianRatio, b.MedianRatio)
		}
	}
	o := rep.Overall[0]
	if o.GeoMeanMedianRatio < 2.5 || o.SerialRateRatio > 0.4 {
		t.Errorf("overall slow: %+v", o)
	}
	// Sleeping fakes overlap perfectly: 4 in flight is far faster than one.
	if o.Speedup < 2 {
		t.Errorf("speedup %.2f with 4 sleeping calls in flight, want > 2", o.Speedup)
	}
}

func TestRunUnknownCall(t *testing.T) {
	_, err := Run(context.Background(), Config{Only: []string{"true", "nosuch"}})
	if err == nil || !strings.Contains(err.Error(), `no call "nosuch"`) || !strings.Contains(err.Error(), "git status") {
		t.Errorf("err %v, want the unknown name and the valid ones", err)
	}
}
