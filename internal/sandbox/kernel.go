package sandbox

import (
	"fmt"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec/internal/templates"
)

// kernelLauncher owns the spawner's kernel templates. The kernel lets only the
// credentials that created a template spawn from it, and credentials are per thread,
// so every create and spawn runs on the spawner's launcher thread (a locked OS
// thread whose restriction is complete before any template exists).
type kernelLauncher struct {
	do func(func())
}

// create makes a kernel template for the tool on the launcher thread. A failure
// (scripts, or any create error) leaves the tool on the userspace backend.
func (k *kernelLauncher) create(ks templates.KernelSys, path string) (kt *templates.KernelTemplate, err error) {
	k.do(func() { kt, err = templates.NewKernel(ks, path) })
	return kt, err
}

// kernelSpawn is one launch through a kernel template.
type kernelSpawn struct {
	spec    templates.SpawnSpec
	procsFD int // cgroup.procs of the launch's cgroup, opened by the main process; -1 for none
}

// spawn launches on the launcher thread, then writes the child's pid into its cgroup
// at once: the kernel call has no way to place the child, so it starts in the
// spawner's cgroup and is moved within microseconds (the delay is returned).
func (k *kernelLauncher) spawn(kt *templates.KernelTemplate, s kernelSpawn) (pid, pidfd int, recreated bool, delay time.Duration, err error) {
	k.do(func() {
		pid, pidfd, recreated, err = kt.Spawn(s.spec)
		if err != nil || s.procsFD < 0 {
			return
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
	})
	return pid, pidfd, recreated, delay, err
}
