//go:build linux && (amd64 || arm64)

package sys

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// CloneArgs is struct clone_args of clone3(2), the CLONE_ARGS_SIZE_VER2 layout
// (88 bytes, every field a u64).
type CloneArgs struct {
	Flags      uint64 // CLONE_* bits
	PidFD      uint64 // int *: where the kernel stores the pidfd (CLONE_PIDFD)
	ChildTID   uint64
	ParentTID  uint64
	ExitSignal uint64
	Stack      uint64
	StackSize  uint64
	TLS        uint64
	SetTID     uint64
	SetTIDSize uint64
	Cgroup     uint64 // cgroup directory fd (CLONE_INTO_CGROUP)
}

// SpawnAttr describes one child of ForkExec. Every descriptor in it must be
// close-on-exec in the caller except where the child dup's it into place: ForkExec
// takes no fork lock (the spawner, its only user, opens everything O_CLOEXEC).
type SpawnAttr struct {
	// Dir is the child's working directory ("": the caller's).
	Dir string
	// Env is the child's whole environment.
	Env []string
	// Files become the child's fds 0, 1, 2, … in order.
	Files []int
	// Setsid makes the child a session and process-group leader.
	Setsid bool
	// Pdeathsig is sent to the child when the forking thread exits (0: none).
	Pdeathsig syscall.Signal
	// CgroupFD, when >= 0, places the child in that cgroup v2 directory from birth
	// (CLONE_INTO_CGROUP).
	CgroupFD int
	// LandlockRuleset, when >= 0, is a Landlock ruleset fd the child enforces on
	// itself (landlock_restrict_self with LandlockFlags) before anything else: a
	// Landlock domain of its own, nested in the caller's. The caller must have
	// no_new_privs (or CAP_SYS_ADMIN).
	LandlockRuleset int
	LandlockFlags   uintptr
	// Cred, when set, is the identity the child switches to before exec (needs
	// CAP_SETUID and CAP_SETGID in the caller; see Cred).
	Cred *Cred
}

// Cred is a child's identity: setgroups(Groups), setgid(GID), setuid(UID), in that
// order. As a privileged caller these set the real, effective and saved ids.
type Cred struct {
	UID, GID uint32
	Groups   []uint32
}

// ForkStep names the step of the child's setup that failed.
type ForkStep uint32

// The child's setup steps, in order.
const (
	StepClone ForkStep = iota
	StepSetsid
	StepLandlock
	StepSetgroups
	StepSetgid
	StepSetuid
	StepPdeathsig
	StepChdir
	StepDupFDs
	StepExec
)

var forkStepNames = [...]string{"clone3", "setsid", "landlock_restrict_self", "setgroups", "setgid", "setuid",
	"prctl(PR_SET_PDEATHSIG)", "chdir", "dup3", "execve"}

func (s ForkStep) String() string {
	if int(s) < len(forkStepNames) {
		return forkStepNames[s]
	}
	return "step?"
}

// ForkError is a failed ForkExec: the step and its errno. Steps after the clone ran
// in the child, which has exited (and been reaped) when ForkExec returns.
type ForkError struct {
	Step  ForkStep
	Errno syscall.Errno
}

func (e *ForkError) Error() string { return e.Step.String() + ": " + e.Errno.Error() }
func (e *ForkError) Unwrap() error { return e.Errno }

// childExitCode is the exit status of a child whose setup failed; the caller learns
// the real cause from the shared ForkError, never from this status.
const childExitCode = 253

// The Go runtime's fork hooks, as package syscall uses them (the runtime exports
// them for this use: see runtime/proc.go, "syscall_runtime_BeforeFork").
//
//go:linkname runtimeBeforeFork syscall.runtime_BeforeFork
func runtimeBeforeFork()

//go:linkname runtimeAfterFork syscall.runtime_AfterFork
func runtimeAfterFork()

//go:linkname runtimeAfterForkInChild syscall.runtime_AfterForkInChild
func runtimeAfterForkInChild()

// rawVfork issues a clone that shares the caller's memory and stack (vfork_*.s).
func rawVfork(trap, a1, a2 uintptr) (r1, errno uintptr)

// forkState is everything the child reads or writes, made before the clone: the
// child runs on the parent's memory (CLONE_VM) and must not allocate.
type forkState struct {
	path   *byte
	argv   []*byte
	envv   []*byte
	dir    *byte
	fds    []int
	nextfd int
	groups []uint32
	args   CloneArgs
	pidfd  int32
	ppid   uintptr
	// Written by the child before it exits on a failed step, read by the parent
	// once the vfork has released it (plain fields: the child may not call into
	// the race detector that instruments sync/atomic).
	failStep  uint32
	failErrno uint32
}

// ForkExec starts path with argv in a child made by clone3(CLONE_VM|CLONE_VFORK|
// CLONE_PIDFD[|CLONE_INTO_CGROUP]) — the same kind of clone as syscall.ForkExec —
// and, unlike syscall.ForkExec, can restrict the child with a Landlock ruleset of
// its own between the clone and the exec. It returns the child's pid and a pidfd
// (O_CLOEXEC) for it. On failure the child, if one was made, has been reaped and
// the error is a *ForkError naming the step.
//
// The child's steps, all raw syscalls on memory prepared before the clone: setsid;
// the Go runtime's AfterForkInChild (default signal handlers, the signal mask
// restored); landlock_restrict_self; setgroups, setgid, setuid; PR_SET_PDEATHSIG
// (after the identity change, which would clear it) and a check that the parent is
// still the one that forked; chdir; the fds moved into place (fds at or below their
// target first moved out of the way, as syscall.ForkExec does); execve.
func ForkExec(path string, argv []string, attr *SpawnAttr) (pid, pidfd int, err error) {
	st, err := newForkState(path, argv, attr)
	if err != nil {
		return 0, -1, err
	}
	p, errno := forkExecChild(st, attr)
	if errno != 0 {
		return 0, -1, &ForkError{Step: StepClone, Errno: errno}
	}
	if step := ForkStep(st.failStep); step != StepClone {
		// The child failed and exited before exec; the vfork returned only then.
		e := syscall.Errno(st.failErrno)
		var ws syscall.WaitStatus
		for {
			if _, werr := syscall.Wait4(int(p), &ws, 0, nil); werr != syscall.EINTR {
				break
			}
		}
		unix.Close(int(st.pidfd))
		return 0, -1, &ForkError{Step: step, Errno: e}
	}
	return int(p), int(st.pidfd), nil
}

func newForkState(path string, argv []string, attr *SpawnAttr) (*forkState, error) {
	st := &forkState{pidfd: -1}
	var err error
	if st.path, err = syscall.BytePtrFromString(path); err != nil {
		return nil, &ForkError{Step: StepExec, Errno: syscall.EINVAL}
	}
	if st.argv, err = syscall.SlicePtrFromStrings(argv); err != nil {
		return nil, &ForkError{Step: StepExec, Errno: syscall.EINVAL}
	}
	if st.envv, err = syscall.SlicePtrFromStrings(attr.Env); err != nil {
		return nil, &ForkError{Step: StepExec, Errno: syscall.EINVAL}
	}
	if attr.Dir != "" {
		if st.dir, err = syscall.BytePtrFromString(attr.Dir); err != nil {
			return nil, &ForkError{Step: StepChdir, Errno: syscall.EINVAL}
		}
	}
	// nextfd is above every fd the child must keep, so that moving an fd out of the
	// way never lands on another it still needs.
	st.fds = append([]int(nil), attr.Files...)
	st.nextfd = len(st.fds)
	for _, fd := range st.fds {
		st.nextfd = max(st.nextfd, fd)
	}
	st.nextfd++
	if attr.Cred != nil {
		st.groups = attr.Cred.Groups
		if st.groups == nil {
			st.groups = []uint32{}
		}
	}
	st.args = CloneArgs{Flags: unix.CLONE_VM | unix.CLONE_VFORK | unix.CLONE_PIDFD, ExitSignal: uint64(syscall.SIGCHLD)}
	st.args.PidFD = uint64(uintptr(unsafe.Pointer(&st.pidfd)))
	if attr.CgroupFD >= 0 {
		st.args.Flags |= unix.CLONE_INTO_CGROUP
		st.args.Cgroup = uint64(attr.CgroupFD)
	}
	if attr.Pdeathsig != 0 {
		st.ppid, _, _ = syscall.RawSyscall(syscall.SYS_GETPID, 0, 0, 0)
	}
	return st, nil
}

// forkExecChild clones and, in the child, runs the setup and exec. The child shares
// this frame's stack with the suspended parent, so after the clone it may only make
// raw syscalls and nosplit calls, touch memory prepared in st, and never return:
// it execs or exits. The parent returns at once.
//
//go:noinline
//go:norace
//go:nocheckptr
func forkExecChild(st *forkState, attr *SpawnAttr) (pid uintptr, errno syscall.Errno) {
	var (
		step ForkStep
		e    syscall.Errno
		ve   uintptr
		i    int
		fd   int
		r1   uintptr
		cred *Cred
	)
	cred = attr.Cred

	runtimeBeforeFork()
	r1, ve = rawVfork(unix.SYS_CLONE3, uintptr(unsafe.Pointer(&st.args)), unsafe.Sizeof(st.args))
	if ve != 0 || r1 != 0 {
		// The parent: the child has exec'd or exited.
		runtimeAfterFork()
		return r1, syscall.Errno(ve)
	}

	// The child.
	if attr.Setsid {
		if _, _, e = syscall.RawSyscall(syscall.SYS_SETSID, 0, 0, 0); e != 0 {
			step = StepSetsid
			goto fail
		}
	}
	runtimeAfterForkInChild()

	if attr.LandlockRuleset >= 0 {
		if _, _, e = syscall.RawSyscall(unix.SYS_LANDLOCK_RESTRICT_SELF, uintptr(attr.LandlockRuleset), attr.LandlockFlags, 0); e != 0 {
			step = StepLandlock
			goto fail
		}
	}

	if cred != nil {
		if len(st.groups) > 0 {
			_, _, e = syscall.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(st.groups)), uintptr(unsafe.Pointer(&st.groups[0])), 0)
		} else {
			_, _, e = syscall.RawSyscall(unix.SYS_SETGROUPS, 0, 0, 0)
		}
		if e != 0 {
			step = StepSetgroups
			goto fail
		}
		if _, _, e = syscall.RawSyscall(unix.SYS_SETGID, uintptr(cred.GID), 0, 0); e != 0 {
			step = StepSetgid
			goto fail
		}
		if _, _, e = syscall.RawSyscall(unix.SYS_SETUID, uintptr(cred.UID), 0, 0); e != 0 {
			step = StepSetuid
			goto fail
		}
	}

	if attr.Pdeathsig != 0 {
		if _, _, e = syscall.RawSyscall6(unix.SYS_PRCTL, unix.PR_SET_PDEATHSIG, uintptr(attr.Pdeathsig), 0, 0, 0, 0); e != 0 {
			step = StepPdeathsig
			goto fail
		}
		// The parent may have died between the clone and the prctl: then no signal
		// will come, so act as if it had.
		r1, _, _ = syscall.RawSyscall(syscall.SYS_GETPPID, 0, 0, 0)
		if r1 != st.ppid {
			r1, _, _ = syscall.RawSyscall(syscall.SYS_GETPID, 0, 0, 0)
			_, _, _ = syscall.RawSyscall(syscall.SYS_KILL, r1, uintptr(attr.Pdeathsig), 0)
		}
	}

	if st.dir != nil {
		if _, _, e = syscall.RawSyscall(syscall.SYS_CHDIR, uintptr(unsafe.Pointer(st.dir)), 0, 0); e != 0 {
			step = StepChdir
			goto fail
		}
	}

	// Move fds that sit below their target index out of the way first, so that
	// placing fd i never overwrites one still to be placed.
	for i = 0; i < len(st.fds); i++ {
		if st.fds[i] >= 0 && st.fds[i] < i {
			if _, _, e = syscall.RawSyscall(unix.SYS_DUP3, uintptr(st.fds[i]), uintptr(st.nextfd), unix.O_CLOEXEC); e != 0 {
				step = StepDupFDs
				goto fail
			}
			st.fds[i] = st.nextfd
			st.nextfd++
		}
	}
	for i = 0; i < len(st.fds); i++ {
		fd = st.fds[i]
		if fd == i {
			// dup3 refuses equal fds; clear close-on-exec instead.
			if _, _, e = syscall.RawSyscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_SETFD, 0); e != 0 {
				step = StepDupFDs
				goto fail
			}
			continue
		}
		if _, _, e = syscall.RawSyscall(unix.SYS_DUP3, uintptr(fd), uintptr(i), 0); e != 0 {
			step = StepDupFDs
			goto fail
		}
	}

	_, _, e = syscall.RawSyscall(syscall.SYS_EXECVE, uintptr(unsafe.Pointer(st.path)),
		uintptr(unsafe.Pointer(&st.argv[0])), uintptr(unsafe.Pointer(&st.envv[0])))
	step = StepExec

fail:
	st.failErrno = uint32(e)
	st.failStep = uint32(step)
	for {
		_, _, _ = syscall.RawSyscall(syscall.SYS_EXIT, childExitCode, 0, 0)
	}
}

// ForkExecSupported reports whether ForkExec (the vfork path that can restrict a
// child with a Landlock layer of its own) exists on this architecture.
const ForkExecSupported = true
