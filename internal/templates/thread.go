package templates

import (
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// Thread runs functions on one locked OS thread that lives until Stop. The sandbox
// uses it as the thread that forks spawner processes (spawner.Spawner's starter):
// Pdeathsig fires when the thread that forked a child exits, so the fork must come
// from a thread that only ends on purpose. The thread is never unlocked: when the
// Thread stops, its goroutine exits while locked and the Go runtime terminates the
// OS thread with whatever per-thread state it acquired.
type Thread struct {
	reqs chan func()
	tid  int
	once sync.Once
	done chan struct{}
}

// StartThread starts the goroutine, locks it to its OS thread and returns once the
// thread is running. The thread is never the process's main thread (a goroutine that
// exits locked on the main thread wedges it instead of ending it).
func StartThread() *Thread {
	t := &Thread{reqs: make(chan func()), done: make(chan struct{})}
	ready := make(chan int, 1)
	go t.lockAndServe(ready)
	t.tid = <-ready
	return t
}

func (t *Thread) lockAndServe(ready chan<- int) {
	runtime.LockOSThread()
	if unix.Gettid() == unix.Getpid() {
		// On the main thread: hand over to a goroutine that cannot run here (this
		// one holds the main thread until the other has locked its own thread).
		locked := make(chan struct{})
		go func() {
			runtime.LockOSThread() // never unlocked
			close(locked)
			t.serve(ready)
		}()
		<-locked
		runtime.UnlockOSThread() // nothing was changed on the main thread
		return
	}
	t.serve(ready) // never unlocked: the thread dies with the goroutine
}

func (t *Thread) serve(ready chan<- int) {
	defer close(t.done)
	ready <- unix.Gettid()
	for f := range t.reqs {
		f()
	}
}

// Tid returns the OS thread's id.
func (t *Thread) Tid() int { return t.tid }

// Do runs f on the thread and waits for it to return.
func (t *Thread) Do(f func()) {
	fin := make(chan struct{})
	t.reqs <- func() {
		defer close(fin)
		f()
	}
	<-fin
}

// Stop ends the goroutine, terminating the OS thread; Do must not be called after.
// It waits until the goroutine has returned.
func (t *Thread) Stop() {
	t.once.Do(func() { close(t.reqs) })
	<-t.done
}
