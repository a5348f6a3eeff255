package templates

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestThread(t *testing.T) {
	th := StartThread()
	if th.Tid() == unix.Getpid() {
		t.Fatal("the spawn thread is the main thread")
	}
	for range 20 {
		var tid int
		th.Do(func() { tid = unix.Gettid() })
		if tid != th.Tid() {
			t.Fatalf("Do ran on thread %d, want %d", tid, th.Tid())
		}
		time.Sleep(time.Millisecond) // let the scheduler move goroutines around
	}
	task := fmt.Sprintf("/proc/self/task/%d", th.Tid())
	if _, err := os.Stat(task); err != nil {
		t.Fatalf("thread %d not found: %v", th.Tid(), err)
	}
	th.Stop()
	th.Stop() // idempotent
	// The locked goroutine exited, so the runtime terminates its thread.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(task); errors.Is(err, fs.ErrNotExist) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("thread %d still exists after Stop", th.Tid())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
