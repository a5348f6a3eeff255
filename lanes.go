package agentexec

import (
	"container/list"
	"context"
	"sync"
	"time"
)

// lanes are a profile's launch slots: at most cap launches of the profile in
// flight (the policy's concurrency), handed out in arrival order, with one rule
// that keeps a fast tool from waiting behind slow ones: no single tool may hold
// more than cap-reserve slots, so that while four `sleep 3` occupy a profile, a
// `true` still finds a slot at once (docs/design.md, "Lanes"). A request waits
// until a slot it may take is free, its context ends, or its deadline passes.
type lanes struct {
	mu      sync.Mutex
	cap     int
	reserve int
	inUse   int
	perTool map[string]int
	waiters list.List // of *waiter, in arrival order
	queued  int
}

type waiter struct {
	tool  string
	ready chan struct{} // closed when the slot is granted
}

// newLanes makes the slots of a profile with the given concurrency. A quarter of
// them (at least one, when there are two or more) is kept from any one tool.
func newLanes(concurrency int) *lanes {
	c := max(concurrency, 1)
	r := 0
	if c > 1 {
		r = max(1, c/4)
	}
	return &lanes{cap: c, reserve: r, perTool: map[string]int{}}
}

func (l *lanes) mayTake(tool string) bool {
	return l.inUse < l.cap && (l.reserve == 0 || l.perTool[tool] < l.cap-l.reserve)
}

func (l *lanes) take(tool string) {
	l.inUse++
	l.perTool[tool]++
}

// acquire waits for a slot for tool; it returns ctx's error, or errQueueDeadline
// when the deadline (zero: none) passed first, and how long it waited.
func (l *lanes) acquire(ctx context.Context, tool string, deadline time.Time) (time.Duration, error) {
	l.mu.Lock()
	if l.waiters.Len() == 0 && l.mayTake(tool) {
		l.take(tool)
		l.mu.Unlock()
		return 0, nil
	}
	start := time.Now()
	w := &waiter{tool: tool, ready: make(chan struct{})}
	e := l.waiters.PushBack(w)
	l.queued++
	l.grantLocked() // it may be admissible past waiters of a tool that is not
	l.mu.Unlock()
	var timeout <-chan time.Time
	if !deadline.IsZero() {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		timeout = t.C
	}
	var err error
	select {
	case <-w.ready:
		return time.Since(start), nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-timeout:
		err = errQueueDeadline
	}
	l.mu.Lock()
	select {
	case <-w.ready: // granted meanwhile: give it back
		l.releaseLocked(tool)
	default:
		l.waiters.Remove(e)
		l.queued--
	}
	l.mu.Unlock()
	return time.Since(start), err
}

// release gives tool's slot back and grants it to the first waiters that may
// take it.
func (l *lanes) release(tool string) {
	l.mu.Lock()
	l.releaseLocked(tool)
	l.mu.Unlock()
}

func (l *lanes) releaseLocked(tool string) {
	l.inUse--
	if l.perTool[tool]--; l.perTool[tool] == 0 {
		delete(l.perTool, tool)
	}
	l.grantLocked()
}

// grantLocked hands free slots to waiters in arrival order, passing over those
// whose tool holds its share already.
func (l *lanes) grantLocked() {
	for e := l.waiters.Front(); e != nil && l.inUse < l.cap; {
		next := e.Next()
		if w := e.Value.(*waiter); l.mayTake(w.tool) {
			l.take(w.tool)
			l.waiters.Remove(e)
			l.queued--
			close(w.ready)
		}
		e = next
	}
}

// counts returns the slots in use and the requests waiting.
func (l *lanes) counts() (inUse, queued int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.inUse, l.queued
}
