package contain

import (
	"fmt"
	"runtime"

	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"
)

// Launcher is one locked OS thread that runs the spawner's launches, so that the
// launched tools can be kept from signalling every other thread of the spawner (see
// "Spawner thread ids" in docs/security.md):
//
//	l, err := contain.StartLauncher(contain.ScopeSignalsThisThread) // after Landlock
//	spec.ProtectTIDs = append(spec.ProtectTIDs, l.TID())          // before BuildSeccomp
//	...
//	l.Do(func() { pid, err = syscall.ForkExec(path, argv, attr) })
//
// The thread never changes, which also keeps SysProcAttr.Pdeathsig sound: the
// kernel sends it when the thread that forked exits, not the process.
type Launcher struct {
	tid  int
	work chan func()
}

// StartLauncher starts the launcher thread and runs setup on it (nil for none)
// before any work. It fails, and the thread ends, when setup fails.
func StartLauncher(setup func() error) (*Launcher, error) {
	l := &Launcher{work: make(chan func())}
	ready := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() != unix.Getpid() {
			l.serve(setup, ready)
			return
		}
		// The main thread is never terminated by Go (and is what /proc/PID shows):
		// hold it while the launcher runs on another thread.
		done := make(chan struct{})
		go func() { defer close(done); l.serve(setup, ready) }()
		<-done
		runtime.UnlockOSThread()
	}()
	if err := <-ready; err != nil {
		return nil, fmt.Errorf("launcher thread setup: %w", err)
	}
	return l, nil
}

func (l *Launcher) serve(setup func() error, ready chan<- error) {
	// Never unlocked: the thread's credentials may differ from the others', so it
	// must end with this goroutine rather than return to the pool.
	runtime.LockOSThread()
	l.tid = unix.Gettid()
	if setup != nil {
		if err := setup(); err != nil {
			ready <- err
			return
		}
	}
	ready <- nil
	for f := range l.work {
		f()
	}
}

// TID returns the launcher thread's id (for SeccompSpec.ProtectTIDs).
func (l *Launcher) TID() int { return l.tid }

// Do runs f on the launcher thread and returns when it has returned. Calls are
// served one at a time.
func (l *Launcher) Do(f func()) {
	done := make(chan struct{})
	l.work <- func() { defer close(done); f() }
	<-done
}

// Close ends the launcher thread once pending work is done. Children it launched
// with Pdeathsig get that signal when the thread exits: close it only when none are
// left.
func (l *Launcher) Close() { close(l.work) }

// ScopeSignalsThisThread adds a Landlock domain that handles nothing but
// LANDLOCK_SCOPE_SIGNAL to the calling thread only (Landlock ABI 6). Processes
// forked from the thread afterwards cannot signal any process, or any thread of
// this process, outside that new domain; they still reach this thread itself. Use
// it as StartLauncher's setup, after the spawner's all-thread restriction. It
// needs no_new_privs (or CAP_SYS_ADMIN).
func ScopeSignalsThisThread() error {
	fd, err := ll.LandlockCreateRuleset(&ll.RulesetAttr{Scoped: ll.ScopeSignal}, 0)
	if err != nil {
		return fmt.Errorf("landlock_create_ruleset(scoped=signal): %w", err)
	}
	defer unix.Close(fd)
	if err := ll.LandlockRestrictSelf(fd, 0); err != nil {
		return fmt.Errorf("landlock_restrict_self (this thread): %w", err)
	}
	return nil
}
