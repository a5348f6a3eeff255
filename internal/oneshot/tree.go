package oneshot

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec/internal/spawner"
)

// Without a cgroup (a non-root caller without a delegated subtree, as a Runtime
// without cgroups) the tool's tree is found through the supervisor itself: it is a
// child subreaper, so that every process of the tree whose parent dies is
// reparented to it rather than to the host's PID 1, and it kills the tool, its
// process group and then, until none is left, every orphan on its main thread's
// children list (what a spawner does with its orphans, internal/spawner
// orphans.go). A process of the tree whose parent still lives is reached when that
// parent, itself a child of the tree, is killed.

// orphans is the supervisor's list of reparented processes.
type orphans struct {
	children int // /proc/self/task/<pid>/children of the main thread
	buf      []byte
}

// childrenPath is the main thread's children list (CONFIG_PROC_CHILDREN).
func childrenPath() string {
	pid := os.Getpid()
	return fmt.Sprintf("/proc/%d/task/%d/children", pid, pid)
}

// newOrphans makes this process a child subreaper and opens its list.
func newOrphans() (*orphans, error) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("prctl(PR_SET_CHILD_SUBREAPER): %w", err)
	}
	fd, err := unix.Open(childrenPath(), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s (CONFIG_PROC_CHILDREN): %w", childrenPath(), err)
	}
	return &orphans{children: fd, buf: make([]byte, 16<<10)}, nil
}

// killAll SIGKILLs and reaps every orphan (the tool, pid tool, excluded: its waiter
// reaps it) until the list is empty once toolDone reports the tool reaped, or
// until the deadline. A pid on the list is this process's child until reaped here,
// so a signal cannot reach another process.
func (o *orphans) killAll(tool int, toolDone func() bool, deadline time.Time) error {
	for {
		done := toolDone() // first: once the tool is reaped, what it left is on the list
		pids, err := o.list()
		if err != nil {
			return err
		}
		n := 0
		for _, pid := range pids {
			if pid == tool {
				continue
			}
			n++
			_ = unix.Kill(pid, unix.SIGKILL)
			var ws unix.WaitStatus
			_, _ = unix.Wait4(pid, &ws, unix.WNOHANG|unix.WALL, nil)
		}
		if n == 0 && done {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("processes of the tool's tree still alive at the deadline")
		}
		time.Sleep(time.Millisecond)
	}
}

// list reads the pids on the main thread's children list.
func (o *orphans) list() ([]int, error) {
	pids, err := spawner.ReadChildren(o.children, &o.buf)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", childrenPath(), err)
	}
	return pids, nil
}

func (o *orphans) close() {
	if o != nil {
		unix.Close(o.children)
	}
}
