package osthread

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestThreadRunsOnOneThreadAndEnds(t *testing.T) {
	// A per-thread change made by setup stays on this thread only.
	th, err := Start(func() error { return os.WriteFile("/proc/thread-self/comm", []byte("osthread-test"), 0) })
	if err != nil {
		t.Fatal(err)
	}
	if th.TID() == unix.Getpid() {
		t.Fatal("the thread is the main thread")
	}
	for range 20 {
		var tid int
		th.Do(func() { tid = unix.Gettid() })
		if tid != th.TID() {
			t.Fatalf("Do ran on thread %d, want %d", tid, th.TID())
		}
		time.Sleep(time.Millisecond) // let the scheduler move goroutines around
	}
	task := fmt.Sprintf("/proc/self/task/%d", th.TID())
	if b, err := os.ReadFile(task + "/comm"); err != nil || string(b) != "osthread-test\n" {
		t.Fatalf("thread %d comm %q, %v: setup did not run on it", th.TID(), b, err)
	}
	if b, _ := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/comm", unix.Getpid())); string(b) == "osthread-test\n" {
		t.Fatal("setup changed the main thread")
	}
	th.Close()
	th.Close() // idempotent
	// The locked goroutine exited, so the runtime terminates its thread.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(task); errors.Is(err, fs.ErrNotExist) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("thread %d still exists after Close", th.TID())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestThreadSetupError(t *testing.T) {
	boom := errors.New("boom")
	if _, err := Start(func() error { return boom }); !errors.Is(err, boom) {
		t.Errorf("Start: %v, want boom", err)
	}
}

// Throwaway runs f on a thread that is gone when it returns, and returns f's error.
func TestThrowaway(t *testing.T) {
	var tid int
	if err := Throwaway(func() error {
		tid = unix.Gettid()
		return os.WriteFile("/proc/thread-self/comm", []byte("throwaway"), 0)
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/self/task/%d", tid)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("thread %d still exists after Throwaway: %v", tid, err)
	}
	boom := errors.New("boom")
	if err := Throwaway(func() error { return boom }); !errors.Is(err, boom) {
		t.Errorf("Throwaway: %v, want f's error", err)
	}
}
