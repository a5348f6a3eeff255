package contain

import (
	"fmt"
	"os"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// NetNSAvailable reports whether this process may give a spawner an empty network
// namespace (`network: isolated`), and if not, why. The probe unshares
// CLONE_NEWNET on a throwaway OS thread that exits afterwards (a locked goroutine
// that returns takes its thread with it), so the calling process is left as it
// was. Creating a network namespace needs CAP_SYS_ADMIN (root, in practice); the
// spawner then gets one by being started with SysProcAttr.Cloneflags |=
// CLONE_NEWNET, and every tool it launches inherits that namespace at no
// per-launch cost. The namespace holds only a loopback device that is down: no
// route anywhere, not even to 127.0.0.1 of the host.
func NetNSAvailable() (bool, string) {
	type result struct {
		ok  bool
		why string
		tid int
	}
	ch := make(chan result, 1)
	probe := func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the thread's network namespace changes, so it must die
		// with this goroutine.
		tid := unix.Gettid()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			ch <- result{false, fmt.Sprintf("unshare(CLONE_NEWNET): %v (needs CAP_SYS_ADMIN: run as root)", err), 0}
			return
		}
		ch <- result{true, "unshare(CLONE_NEWNET) works", tid}
	}
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() != unix.Getpid() {
			probe()
			return
		}
		// This is the main thread, which Go never terminates (and whose namespace
		// /proc/PID/ns/net shows): probe on another thread while this one is held.
		done := make(chan struct{})
		go func() { defer close(done); probe() }()
		<-done
		runtime.UnlockOSThread()
	}()
	r := <-ch
	if r.tid != 0 {
		// Wait (briefly) until the thread in the new namespace is gone, so that the
		// process is as it was when this returns.
		task := fmt.Sprintf("/proc/self/task/%d", r.tid)
		for i := 0; i < 1000; i++ {
			if _, err := os.Stat(task); err != nil {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	return r.ok, r.why
}
