package spawner

import (
	"fmt"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec/internal/templates"
)

// kernelSpawn is one launch through a kernel template.
type kernelSpawn struct {
	spec    templates.SpawnSpec
	procsFD int // cgroup.procs of the launch's cgroup, opened by the main process; -1 for none
}

// spawnKernel launches through a kernel template, then writes the child's pid into
// its cgroup at once: the kernel call has no way to place the child, so it starts in
// the spawner's cgroup and is moved within microseconds (the delay is returned).
//
// The kernel lets only the credentials that created a template spawn from it, and
// credentials are per thread, so it must be called on the thread that created kt:
// the spawner's launcher thread 0, which creates every kernel template in setup after
// its restriction is complete and is the only launcher thread when kernel templates
// may be used.
func spawnKernel(kt *templates.KernelTemplate, s kernelSpawn) (pid, pidfd int, recreated bool, delay time.Duration, err error) {
	pid, pidfd, recreated, err = kt.Spawn(s.spec)
	if err != nil || s.procsFD < 0 {
		return pid, pidfd, recreated, delay, err
	}
	start := time.Now()
	_, werr := unix.Write(s.procsFD, []byte(strconv.Itoa(pid)))
	delay = time.Since(start)
	if werr != nil {
		// An unplaced child would escape its limits: kill it before it does more.
		// (kill by pid: the child is not reaped yet, and the spawner's own seccomp
		// filter refuses pidfd_send_signal.)
		_ = unix.Kill(pid, syscall.SIGKILL)
		err = fmt.Errorf("place pid %d in its cgroup: write cgroup.procs: %w", pid, werr)
	}
	return pid, pidfd, recreated, delay, err
}
