package oneshot

import (
	"fmt"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec/internal/sys"
	"github.com/agentexec/agentexec/internal/testutil"
)

// The kernel sends a child its Pdeathsig when the thread that forked it exits,
// with that thread's credentials, checked as for kill(2). The forking thread of a
// root supervisor keeps CAP_KILL for it (dropThreadCaps): a child that switched
// to another uid then dies with the thread. Control: a thread that dropped
// CAP_KILL too cannot signal it, and the child outlives the thread.
func TestPdeathsigAcrossUIDs(t *testing.T) {
	testutil.RequireRoot(t)
	keep := uint32(1<<unix.CAP_SETUID | 1<<unix.CAP_SETGID)
	if !forkFromDyingThread(t, keep|1<<unix.CAP_KILL) {
		t.Errorf("the child outlived the forking thread that kept CAP_KILL")
	}
	if forkFromDyingThread(t, keep) {
		t.Errorf("control: the child died although the forking thread had no CAP_KILL, so the test proves nothing")
	}
}

// forkFromDyingThread forks `sleep` as another uid from a locked thread that keeps
// only mask of its capabilities, lets the thread exit (the process lives on) and
// reports whether the child was killed by its Pdeathsig.
func forkFromDyingThread(t *testing.T, mask uint32) (killed bool) {
	t.Helper()
	sleep := testutil.RequireCommand(t, "sleep")
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	type forked struct {
		pid, pidfd, tid int
		err             error
	}
	ch := make(chan forked, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		tid := unix.Gettid()
		if err := dropThreadCapsKeeping(mask); err != nil {
			ch <- forked{err: err}
			return
		}
		fd := int(null.Fd())
		pid, pidfd, err := sys.ForkExec(sleep, []string{"sleep", "1000"}, &sys.SpawnAttr{
			Files: []int{fd, fd, fd}, Setsid: true, Pdeathsig: syscall.SIGKILL,
			CgroupFD: -1, LandlockRuleset: -1, Cred: &sys.Cred{UID: 0x7e000fff, GID: 0x7e000fff, Groups: []uint32{}},
		})
		ch <- forked{pid: pid, pidfd: pidfd, tid: tid, err: err}
	}()
	f := <-ch
	if f.err != nil {
		t.Fatal(f.err)
	}
	defer unix.Close(f.pidfd)
	defer func() {
		_ = unix.Kill(f.pid, unix.SIGKILL)
		var ws unix.WaitStatus
		_, _ = unix.Wait4(f.pid, &ws, 0, nil)
	}()
	if f.tid == os.Getpid() {
		// Go never ends the main thread (a goroutine locked to it that exits
		// wedges it instead); it is now out of use, so the next try gets another.
		return forkFromDyingThread(t, mask)
	}
	// The thread's task is released after its exit notification, which sent the
	// signal (if it could).
	task := fmt.Sprintf("/proc/self/task/%d", f.tid)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if _, err := os.Stat(task); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the forking thread %d did not exit", f.tid)
		}
	}
	// A SIGKILL sent is delivered promptly; one refused never comes. (The bound
	// only ends the wait: the control cannot die by itself.)
	var info unix.Siginfo
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if err := unix.Waitid(unix.P_PIDFD, f.pidfd, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil); err != nil {
			t.Fatal(err)
		}
		if info.Signo != 0 {
			return true
		}
	}
	return false
}
