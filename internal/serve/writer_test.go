package serve

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// recordWriter records every Write; block, when set, holds the first Write until it
// is closed.
type recordWriter struct {
	mu     sync.Mutex
	writes [][]byte
	block  chan struct{}
	inside chan struct{} // closed when the first Write has begun
	once   sync.Once
}

func (w *recordWriter) Write(p []byte) (int, error) {
	if w.block != nil {
		first := false
		w.once.Do(func() { first = true; close(w.inside) })
		if first {
			<-w.block
		}
	}
	w.mu.Lock()
	w.writes = append(w.writes, bytes.Clone(p))
	w.mu.Unlock()
	return len(p), nil
}

func (w *recordWriter) lines(t *testing.T) []string {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, b := range w.writes {
		if len(b) == 0 || b[len(b)-1] != '\n' {
			t.Fatalf("a write that is not whole lines: %q", b)
		}
		ls := strings.SplitAfter(string(b), "\n")
		out = append(out, ls[:len(ls)-1]...) // the last is "" (after the final "\n")
	}
	return out
}

// Lines from many goroutines, written directly and queued, come out whole, each
// once, and in the order each goroutine emitted them; a stop writes what waits.
func TestLineWriterOrderAndWholeLines(t *testing.T) {
	rw := &recordWriter{}
	w := newLineWriter(rw)
	stop := make(chan struct{})
	go w.run(stop)
	const goroutines, each = 8, 500
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				w.emit([]byte(fmt.Sprintf("g%d %d %s\n", g, i, strings.Repeat("x", (g*i)%300))), g%2 == 0)
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-w.done
	next := make([]int, goroutines)
	n := 0
	for _, l := range rw.lines(t) {
		var g, i int
		if _, err := fmt.Sscanf(l, "g%d %d", &g, &i); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		if i != next[g] {
			t.Fatalf("goroutine %d: line %d after line %d", g, i, next[g]-1)
		}
		next[g]++
		n++
	}
	if n != goroutines*each {
		t.Fatalf("%d lines written, want %d", n, goroutines*each)
	}
	w.emit([]byte("late\n"), true) // after the stop: dropped
	w.emit([]byte("late\n"), false)
	if got := len(rw.lines(t)); got != n {
		t.Fatalf("lines emitted after the stop were written: %d lines, want %d", got, n)
	}
}

// While a direct write is held (a client that does not read), lines from the input
// reader (direct false) are queued without waiting, and come out after it, in order.
func TestLineWriterReaderDoesNotWaitForOutput(t *testing.T) {
	rw := &recordWriter{block: make(chan struct{}), inside: make(chan struct{})}
	w := newLineWriter(rw)
	stop := make(chan struct{})
	go w.run(stop)
	go w.emit([]byte("result\n"), true)
	<-rw.inside
	queued := make(chan struct{})
	go func() {
		for i := range maxPendingLines {
			w.emit([]byte(fmt.Sprintf("pong %d\n", i)), false)
		}
		close(queued)
	}()
	select {
	case <-queued:
	case <-time.After(30 * time.Second):
		t.Fatal("the reader's lines waited for a held write")
	}
	close(rw.block)
	close(stop)
	<-w.done
	lines := rw.lines(t)
	if len(lines) != maxPendingLines+1 || lines[0] != "result\n" || lines[len(lines)-1] != fmt.Sprintf("pong %d\n", maxPendingLines-1) {
		t.Fatalf("%d lines, first %q, last %q", len(lines), lines[0], lines[len(lines)-1])
	}
}

type errWriter struct{ n int }

func (w *errWriter) Write(p []byte) (int, error) {
	w.n++
	return 0, errors.New("broken pipe")
}

// A failed write closes failed, keeps the first error and drops every later line.
func TestLineWriterFailure(t *testing.T) {
	ew := &errWriter{}
	w := newLineWriter(ew)
	stop := make(chan struct{})
	go w.run(stop)
	w.emit([]byte("a\n"), true)
	select {
	case <-w.failed():
	default:
		t.Fatal("failed is not closed after a write error")
	}
	w.emit([]byte("b\n"), true)
	w.emit([]byte("c\n"), false)
	close(stop)
	<-w.done
	if ew.n != 1 || w.failure() == nil || !strings.Contains(w.failure().Error(), "broken pipe") {
		t.Fatalf("%d writes, error %v; want 1 write and the write error", ew.n, w.failure())
	}
}
