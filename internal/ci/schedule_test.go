package ci

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// nopEvents discards events.
type nopEvents struct{}

func (nopEvents) started(*Step, time.Time)              {}
func (nopEvents) line(*Step, string, string, time.Time) {}
func (nopEvents) finished(*StepResult)                  {}
func (nopEvents) close()                                {}
func mkStep(name string, coe bool, needs ...string) *Step {
	return &Step{Name: name, ContinueOnError: coe, Needs: needs}
}
func statuses(rs []*StepResult) map[string]Status {
	m := map[string]Status{}
	for _, r := range rs {
		m[r.Step.Name] = r.Status
	}
	return m
}
func fakeExec(outcome map[string]Status, delay time.Duration) executor {
	return func(ctx context.Context, s *Step) *StepResult {
		r := &StepResult{Step: s, Start: time.Now(), Status: StatusPassed}
		if st, ok := outcome[s.Name]; ok {
			r.Status = st
		}
		time.Sleep(delay)
		r.End = time.Now()
		return r
	}
}

func TestScheduleOutcomes(t *testing.T) {
	// a passes; b fails (required); c is independent; d needs b; e needs a;
	// f allowed to fail; g needs f.
	steps := func() []*Step {
		return []*Step{
			mkStep("a", false), mkStep("b", false), mkStep("c", false),
			mkStep("d", false, "b"), mkStep("e", false, "a"),
			mkStep("f", true), mkStep("g", false, "f"),
		}
	}
	out := map[string]Status{"b": StatusFailed, "f": StatusFailed}
	tests := []struct {
		name      string
		jobs      int
		keepGoing bool
		want      map[string]Status
	}{
		// One at a time in file order: b fails second, everything after it is skipped.
		{"fail-fast serial", 1, false, map[string]Status{
			"a": StatusPassed, "b": StatusFailed, "c": StatusSkipped, "d": StatusSkipped,
			"e": StatusSkipped, "f": StatusSkipped, "g": StatusSkipped}},
		{"keep-going serial", 1, true, map[string]Status{
			"a": StatusPassed, "b": StatusFailed, "c": StatusPassed, "d": StatusSkipped,
			"e": StatusPassed, "f": StatusFailed, "g": StatusPassed}},
		{"keep-going parallel", 8, true, map[string]Status{
			"a": StatusPassed, "b": StatusFailed, "c": StatusPassed, "d": StatusSkipped,
			"e": StatusPassed, "f": StatusFailed, "g": StatusPassed}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs := schedule(context.Background(), steps(), tc.jobs, tc.keepGoing, fakeExec(out, time.Millisecond), nopEvents{})
			got := statuses(rs)
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("step %s: got %s, want %s (all: %v)", k, got[k], v, got)
				}
			}
			for i, r := range rs {
				if r.Step.Name != steps()[i].Name {
					t.Errorf("result %d is %s, want file order", i, r.Step.Name)
				}
			}
		})
	}
}

func TestScheduleSkipReason(t *testing.T) {
	steps := []*Step{mkStep("a", false), mkStep("b", false, "a"), mkStep("c", false, "b")}
	rs := schedule(context.Background(), steps, 2, true, fakeExec(map[string]Status{"a": StatusTimedOut}, 0), nopEvents{})
	if rs[1].Status != StatusSkipped || rs[1].Message != "needs a, which timed out" {
		t.Errorf("b: %s %q", rs[1].Status, rs[1].Message)
	}
	if rs[2].Status != StatusSkipped || rs[2].Message != "needs b, which was skipped" {
		t.Errorf("c: %s %q", rs[2].Status, rs[2].Message)
	}
}

func TestScheduleParallelBound(t *testing.T) {
	const bound = 3
	var cur, peak atomic.Int32
	var steps []*Step
	for _, n := range []string{"a", "b", "c", "d", "e", "f"} {
		steps = append(steps, mkStep(n, false))
	}
	// A barrier: the steps in flight wait until bound of them are, so the peak does
	// not depend on how their runs happen to overlap. The deadline only keeps a
	// scheduler that never reaches the bound from hanging the test.
	full := make(chan struct{})
	var fullOnce sync.Once
	exec := func(ctx context.Context, s *Step) *StepResult {
		n := cur.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		if n == bound {
			fullOnce.Do(func() { close(full) })
		}
		select {
		case <-full:
		case <-time.After(30 * time.Second):
		}
		cur.Add(-1)
		return &StepResult{Step: s, Status: StatusPassed}
	}
	schedule(context.Background(), steps, bound, false, exec, nopEvents{})
	if p := peak.Load(); p != bound {
		t.Errorf("peak concurrency %d, want %d", p, bound)
	}
}

func TestScheduleNeedsOrder(t *testing.T) {
	var mu sync.Mutex
	var order []string
	exec := func(ctx context.Context, s *Step) *StepResult {
		mu.Lock()
		order = append(order, s.Name)
		mu.Unlock()
		return &StepResult{Step: s, Status: StatusPassed}
	}
	steps := []*Step{mkStep("a", false), mkStep("b", false, "a"), mkStep("c", false, "b")}
	schedule(context.Background(), steps, 8, false, exec, nopEvents{})
	if len(order) != 3 || order[0] != "a" || order[1] != "b" || order[2] != "c" {
		t.Errorf("order %v, want [a b c]", order)
	}
}

func TestScheduleCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	steps := []*Step{mkStep("a", false), mkStep("b", false)}
	exec := func(ctx context.Context, s *Step) *StepResult {
		cancel()
		return &StepResult{Step: s, Status: StatusPassed}
	}
	rs := schedule(ctx, steps, 1, true, exec, nopEvents{})
	if rs[1].Status != StatusSkipped || rs[1].Message != "canceled" {
		t.Errorf("b: %s %q, want skipped: canceled", rs[1].Status, rs[1].Message)
	}
}
