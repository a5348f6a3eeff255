package oneshot

import (
	"bytes"
	"os"
	"strings"
	"sync"
	"testing"
)

// startCopier runs a capped copier on a fresh pipe and returns the pipe's write end
// and a function that waits for the copier and returns what it wrote.
func startCopier(t *testing.T, limit int64, exited chan struct{}) (*os.File, func() (*capped, string)) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	c := &capped{r: r, w: &out, limit: limit}
	if exited != nil {
		c.exited = exited
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.run()
	}()
	return w, func() (*capped, string) {
		wg.Wait()
		return c, out.String()
	}
}

// Output written in small pieces, with pauses between the copier's reads, arrives
// whole and in order, whether the tool's exit is signalled before its last
// writes, after them, or never (the copier ends at EOF in every case).
func TestCappedDeliversEverything(t *testing.T) {
	var want strings.Builder
	for i := range 3000 {
		want.WriteString(strings.Repeat("x", i%50) + "\n")
	}
	lines := strings.SplitAfter(want.String(), "\n")
	for _, mode := range []string{"exit-midway", "exit-after", "never"} {
		exited := make(chan struct{})
		w, wait := startCopier(t, 0, exited)
		for i, l := range lines {
			if i == len(lines)/2 && mode == "exit-midway" {
				close(exited)
			}
			if _, err := w.WriteString(l); err != nil {
				t.Fatal(err)
			}
		}
		if mode == "exit-after" {
			close(exited)
		}
		w.Close()
		c, got := wait()
		if got != want.String() || c.dropped != 0 {
			t.Errorf("%s: got %d bytes (dropped %d), want %d", mode, len(got), c.dropped, want.Len())
		}
	}
}

// The cap holds across pauses: what is past it is read and counted, not written.
func TestCappedCapHolds(t *testing.T) {
	exited := make(chan struct{})
	w, wait := startCopier(t, 10, exited)
	for _, s := range []string{"0123", "4567", "89ab", "cdef"} {
		if _, err := w.WriteString(s); err != nil {
			t.Fatal(err)
		}
	}
	close(exited)
	w.Close()
	c, got := wait()
	if got != "0123456789" || c.written != 10 || c.dropped != 6 {
		t.Errorf("got %q, written %d, dropped %d; want the first 10 bytes and 6 dropped", got, c.written, c.dropped)
	}
}
