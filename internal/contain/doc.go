// Package contain applies the containment layers a spawner process puts on itself
// besides Landlock: no capabilities, no_new_privs, and a seccomp filter; and it
// probes whether an empty network namespace is available.
//
// A spawner calls, first thing and in this order:
//
//	if err := contain.DropCapabilities(contain.CapsSpec{User: user}); err != nil { ... }
//	if err := contain.SetNoNewPrivs(); err != nil { ... }
//	// Landlock (all threads) here, before the launcher threads and the filter.
//	var tids []int
//	for range launchers { // the threads launches are forked from
//		l, err := osthread.Start(contain.ScopeSignalsThisThread) // Landlock ABI 6
//		if err != nil { ... }
//		tids = append(tids, l.TID())
//	}
//	f, err := contain.BuildSeccomp(contain.SeccompSpec{
//		Network:     contain.NetNone,
//		SpawnerPID:  os.Getpid(),
//		ProtectTIDs: tids,                // every launcher thread
//		ProtectPIDs: []int{os.Getppid()}, // the agent
//	})
//	if err != nil { ... }
//	if err := f.Install(); err != nil { ... }
//	// then PR_SET_DUMPABLE 0, and only then launches, each forked on a launcher
//	// thread (osthread.Thread.Do).
//
// Each launcher thread adds a signal-scope Landlock domain of its own, so that the
// tools it forks cannot signal the spawner's other threads by their ids (nor the
// tools of other launchers); a tool shares its own launcher's domain, so the filter
// protects the launcher threads' ids (ProtectTIDs) and the spawner's pid.
//
// Every other step applies to all threads of the (multi-threaded) Go process:
// capabilities, securebits, the bounding and ambient sets and no_new_privs through
// libpsx (psx.Syscall3/6, which is syscall.AllThreadsSyscall without cgo), the
// filter through SECCOMP_FILTER_FLAG_TSYNC. Threads created later and every child
// inherit them. None of it can be undone, so tests run each case in a re-executed
// copy of the test binary.
//
// # What the filter refuses
//
// Refusals return EPERM, never kill, so that a tool fails with a clear error; the
// one exception is a system call made through a foreign ABI (i386 int 0x80 on
// x86_64), which kills the process. [Filter.Rules] lists the rules for
// `agentexec check`; docs/security.md explains each and the known gaps (clone3
// cannot be inspected; thread ids of the spawner other than those listed).
//
// The filter also binds the spawner itself. It leaves alone everything the Go
// runtime and syscall.ForkExec need, including clone3 (CLONE_INTO_CGROUP) and the
// thread-directed signals the runtime sends to its own threads: SIGURG (asynchronous
// preemption) and signal 33 (AllThreadsSyscall, libpsx, glibc's setxid). Go's os
// package finds pidfd_open(getpid()) refused and falls back to its non-pidfd path
// for os.Process; SysProcAttr.PidFD (CLONE_PIDFD) is unaffected.
//
// It owns the spawner's capability, no_new_privs and seccomp layers and the
// netns probe. It must not import the root, spawner or policy packages; unsafe
// and raw syscalls go through internal/sys.
package contain
