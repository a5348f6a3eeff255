package agentexec

import (
	"context"
	"errors"
	"testing"
	"time"
)

// The lanes' rules, without launches: one tool holds at most cap-reserve slots;
// waiters are served in arrival order, passing over those whose tool holds its
// share; a waiter whose context or deadline ends leaves the queue.
func TestLanes(t *testing.T) {
	l := newLanes(4) // reserve 1: one tool holds at most 3
	ctx := context.Background()
	for range 3 {
		if _, err := l.acquire(ctx, "sleep", time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	// The fourth sleep waits although a slot is free: it is kept for other tools.
	done := make(chan error, 1)
	go func() { _, err := l.acquire(ctx, "sleep", time.Time{}); done <- err }()
	waitQueued(t, l, 1)
	// Another tool takes the reserved slot at once, past the waiting sleep.
	if _, err := l.acquire(ctx, "true", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if in, q := l.counts(); in != 4 || q != 1 {
		t.Fatalf("in use %d queued %d, want 4 and 1", in, q)
	}
	// A waiter whose deadline passes leaves the queue with errQueueDeadline.
	if _, err := l.acquire(ctx, "cat", time.Now().Add(20*time.Millisecond)); !errors.Is(err, errQueueDeadline) {
		t.Fatalf("full lanes and a deadline: %v, want errQueueDeadline", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := l.acquire(cctx, "cat", time.Time{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled: %v", err)
	}
	if _, q := l.counts(); q != 1 {
		t.Fatalf("queued %d after the deadline and the cancel, want the one sleep", q)
	}
	// When true's slot frees, the sleep still may not have it (3 sleeps hold
	// their share); when a sleep's frees, it goes to the waiting sleep.
	l.release("true")
	select {
	case err := <-done:
		t.Fatalf("fourth sleep admitted over its share: %v", err)
	default:
	}
	l.release("sleep")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if in, q := l.counts(); in != 3 || q != 0 {
		t.Fatalf("in use %d queued %d, want 3 and 0", in, q)
	}

	// Control: one slot (no reserve possible) serves strictly in order.
	one := newLanes(1)
	if _, err := one.acquire(ctx, "sleep", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if _, err := one.acquire(ctx, "true", time.Now().Add(20*time.Millisecond)); !errors.Is(err, errQueueDeadline) {
		t.Fatalf("concurrency 1: another tool got in: %v", err)
	}
}

func waitQueued(t *testing.T, l *lanes, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, q := l.counts(); q == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("queued never reached %d", n)
		}
		time.Sleep(time.Millisecond)
	}
}
