package spawner

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// orphanReaper makes the spawner the reaper of what its launches leave behind: the
// spawner is a child subreaper (PR_SET_CHILD_SUBREAPER), so a process of a tool tree
// whose parent dies is reparented to the spawner rather than to the host's PID 1
// (which, in a container, may never reap it), and the spawner reaps it when it
// exits. On SIGCHLD it reaps every exited orphan; the children it launched itself
// (the tracked children) stay with the reaper, which collects their status and
// rusage through their pidfds (reaper.go). Nothing here can take a tracked child's
// status, without any bookkeeping of pids that could race with a launch:
//
//   - The kernel reparents an orphan to a thread of the subreaper that is not
//     exiting, trying the thread group leader first (kernel/exit.c: find_new_reaper
//     → find_alive_thread, which walks the thread list from the leader). The Go
//     runtime never ends the main thread, so every orphan becomes a child of the
//     spawner's main thread: it is listed in /proc/self/task/<pid>/children.
//   - Every tracked child is forked by a launcher thread (osthread.Start),
//     which is never the main thread, and is a child of that thread (clone sets
//     real_parent to the calling thread; a kernel-template spawn is made the same
//     way, on launcher 0); launcher threads live as long as the spawner, so their
//     children are never reparented to the main thread either.
//   - So the main thread's children are exactly the orphans, and only this type
//     waits for them: a pid read from that list stays this process's child (alive or
//     a zombie, its pid not reusable) until this type reaps it. wait4(pid, WNOHANG)
//     on it can neither take a tracked child's status nor touch another process.
//
// What else the spawner forks on other threads is waited for by whoever forked it
// (os/exec in setup, before the orphan reaper starts; ForkExec's own wait for a
// child that failed before exec, on a launcher thread).
type orphanReaper struct {
	// children is /proc/self/task/<pid>/children of the main thread, opened before
	// the spawner restricts itself (Landlock may not grant /proc to its tools) and
	// read with pread from offset 0 each time.
	children int

	mu  sync.Mutex // one reader of the list at a time (sweep, killAll)
	buf []byte
}

// newOrphanReaper makes the process a child subreaper and opens its main thread's
// children list. It must run before the restriction.
func newOrphanReaper() (*orphanReaper, error) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("prctl(PR_SET_CHILD_SUBREAPER): %w", err)
	}
	pid := os.Getpid()
	path := fmt.Sprintf("/proc/%d/task/%d/children", pid, pid)
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		// Orphans are still reparented to the spawner (and die with their cgroup),
		// but nothing reaps them until the spawner exits.
		return nil, fmt.Errorf("open %s (CONFIG_PROC_CHILDREN): %w", path, err)
	}
	return &orphanReaper{children: fd, buf: make([]byte, 64<<10)}, nil
}

// run sweeps once, then at every SIGCHLD, for the life of the process. A SIGCHLD
// that arrives while a sweep runs leaves a token in the channel, so an orphan that
// exits after the sweep's last read of the list is reaped by the next one.
func (o *orphanReaper) run() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGCHLD)
	for {
		o.sweep()
		<-ch
	}
}

// sweep reaps every orphan that has exited. It reads the list again after any reap:
// the list may change between two reads of a long one.
func (o *orphanReaper) sweep() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for {
		pids, err := o.list()
		if err != nil {
			fmt.Fprintf(os.Stderr, "agentexec spawner: orphans: %v\n", err)
			return
		}
		reaped := false
		for _, pid := range pids {
			var ws unix.WaitStatus
			if wpid, _ := wait4(pid, &ws, unix.WNOHANG|unix.WALL, nil); wpid == pid {
				reaped = true
			}
		}
		if !reaped {
			return
		}
	}
}

// killAll SIGKILLs and reaps every orphan until there is none left and done (which
// kills the tracked children) reports that they are gone too, or until the
// deadline. The spawner calls
// it when the main process closes the socket, so that no process of a tool tree
// outlives its spawner (they would be reparented to PID 1).
func (o *orphanReaper) killAll(deadline time.Time, done func() bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for {
		// done first: once the tracked children are reaped, every process they left
		// has been reparented already (at their exit), so an empty list read after
		// that means nothing is left.
		none := done()
		pids, err := o.list()
		if err != nil {
			return
		}
		if len(pids) == 0 && none {
			return
		}
		for _, pid := range pids {
			// A pid from the list is this process's child until reaped here (see
			// orphanReaper), so the signal cannot reach another process.
			_ = unix.Kill(pid, unix.SIGKILL)
			var ws unix.WaitStatus
			_, _ = wait4(pid, &ws, unix.WNOHANG|unix.WALL, nil)
		}
		if time.Now().After(deadline) {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// list reads the pids of the main thread's children.
func (o *orphanReaper) list() ([]int, error) {
	pids, err := ReadChildren(o.children, &o.buf)
	if err != nil {
		return nil, fmt.Errorf("read children: %w", err)
	}
	return pids, nil
}

// ReadChildren reads the pids of a /proc/PID/task/TID/children file open at fd
// (CONFIG_PROC_CHILDREN), from its start, into *buf, which it grows as needed
// and which the caller keeps for the next read (no allocation in the steady
// state). The one-shot path's orphan list reads it too (internal/oneshot).
func ReadChildren(fd int, buf *[]byte) ([]int, error) {
	n := 0
	for {
		m, err := unix.Pread(fd, (*buf)[n:], int64(n))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if m == 0 {
			break
		}
		n += m
		if n == len(*buf) {
			*buf = append(*buf, make([]byte, len(*buf))...)
		}
	}
	var pids []int
	for _, f := range bytes.Fields((*buf)[:n]) {
		pid, err := strconv.Atoi(string(f))
		if err != nil || pid <= 0 {
			return nil, fmt.Errorf("unexpected %q", f)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}
