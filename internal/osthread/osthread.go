// Package osthread runs functions on one locked OS thread that lives until Close.
//
// agentexec needs such threads twice, for the same two reasons: the thread that
// forks the spawner process (Pdeathsig fires when the thread that forked a child
// exits, so the fork must come from a thread that only ends on purpose), and the
// spawner's launcher threads (each may carry per-thread state, such as a Landlock
// domain of its own, and its children's Pdeathsig is tied to it). A Thread is
// never unlocked: when it is closed, its goroutine exits while locked and the Go
// runtime terminates the OS thread with whatever per-thread state it acquired.
//
// It owns nothing else and imports only the standard library and x/sys/unix (no
// agentexec package).
package osthread

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Thread is one locked OS thread serving Do calls one at a time.
type Thread struct {
	tid  int
	work chan func()
	once sync.Once
	done chan struct{}
}

// Start starts the thread and runs setup on it (nil for none) before any work. It
// fails, and the thread ends, when setup fails. The thread is never the process's
// main thread (a goroutine that exits locked on the main thread wedges it instead
// of ending it, and the main thread is what /proc/PID shows).
func Start(setup func() error) (*Thread, error) {
	t := &Thread{work: make(chan func()), done: make(chan struct{})}
	ready := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() != unix.Getpid() {
			t.serve(setup, ready) // never unlocked: the thread dies with the goroutine
			return
		}
		// On the main thread: hand over to a goroutine that cannot run here (this
		// one holds the main thread until the other has locked its own thread).
		locked := make(chan struct{})
		go func() {
			runtime.LockOSThread() // never unlocked
			close(locked)
			t.serve(setup, ready)
		}()
		<-locked
		runtime.UnlockOSThread() // nothing was changed on the main thread
	}()
	if err := <-ready; err != nil {
		return nil, fmt.Errorf("thread setup: %w", err)
	}
	return t, nil
}

func (t *Thread) serve(setup func() error, ready chan<- error) {
	defer close(t.done)
	t.tid = unix.Gettid()
	if setup != nil {
		if err := setup(); err != nil {
			ready <- err
			return
		}
	}
	ready <- nil
	for f := range t.work {
		f()
	}
}

// TID returns the OS thread's id.
func (t *Thread) TID() int { return t.tid }

// Do runs f on the thread and returns when it has returned.
func (t *Thread) Do(f func()) {
	fin := make(chan struct{})
	t.work <- func() {
		defer close(fin)
		f()
	}
	<-fin
}

// Close ends the thread once pending work is done and waits until its goroutine
// has returned; the runtime then terminates the OS thread. Children forked on it
// with Pdeathsig get that signal: close it only when none are left. Do must not be
// called after. Close is idempotent.
func (t *Thread) Close() {
	t.once.Do(func() { close(t.work) })
	<-t.done
}

// Throwaway runs f on a fresh locked OS thread that then exits, and returns f's
// error once that thread is gone (waiting at most a second for the kernel to
// remove it): for probes that change per-thread state, such as unsharing a
// namespace, and must leave the process as it was.
func Throwaway(f func() error) error {
	var tid int
	t, err := Start(func() error {
		tid = unix.Gettid()
		return f()
	})
	if err == nil {
		t.Close()
	}
	task := fmt.Sprintf("/proc/self/task/%d", tid)
	for range 1000 {
		if _, serr := os.Stat(task); serr != nil {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err != nil {
		return errors.Unwrap(err) // f's own error, without Start's "thread setup:"
	}
	return nil
}
