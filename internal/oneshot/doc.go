// Package oneshot is the fast path of `agentexec run`: one tool launched by a
// process that exists only for it. Such a process has no agent to protect from its
// tool, so it needs no spawner, no pools and no templates for the other tools: it
// decides from the tool's own profile whether the fast path can give the tool
// every protection a Runtime would (Prepare; otherwise the caller takes the
// Runtime path, never something weaker), then forks the tool from one locked
// thread that it contains first, with inherited stdio, into a cgroup of its own
// (CLONE_INTO_CGROUP: a kill of the tool's cgroup never reaches the supervisor;
// where none can be made, under cgroup: best_effort, the supervisor is a subreaper
// and finds the tree through its orphans, tree.go),
// in a Landlock domain of the tool's own (the profile's rules with the signal and
// abstract-unix scopes: it can neither signal nor trace the supervisor), as the
// tool identity when the supervisor is root (Launch.Run).
//
// The containment is that thread's, not the whole process's: capabilities,
// no_new_privs, the seccomp filter and the mount namespace of the protected
// repository metadata are per-thread state a child inherits from the thread that
// forks it, and the thread forks nothing else and ends with the launch. Restricting
// every thread of a Go process (psx, each call signalling every thread) costs more
// than the launch itself (8-20 ms to drop a root process's capabilities), and the
// other threads keep what the clean-up needs (removing the tool's cgroup and
// private ${TMPDIR}, as the supervisor's own identity).
//
//	l, err := oneshot.Prepare(oneshot.Request{Policy: p, Tool: "rg", Args: args})
//	if errors.Is(err, oneshot.ErrFallback) { … the Runtime path … }
//	res, err := l.Run(ctx)          // exit status, signal, timeout
//
// It owns the fast path's eligibility rules (plan.go), its containment
// (contain.go), the protected metadata's mounts on the forking thread (protect.go),
// the private ${TMPDIR} (tmpdir.go), the tree without a cgroup (tree.go), stdio
// (stdio.go) and the launch (launch.go). It uses the engine's own building blocks: the
// Landlock plan (internal/spawner.PlanLandlock), the seccomp filter and capability
// drop (internal/contain), the cgroup pool (internal/cgroup), the vfork launch path
// (internal/sys.ForkExec), and the tool identity of a root runtime (the root
// package's OneShot* hooks, passed in by the caller).
//
// It must not import the front ends (serve, mcp, ci, bench) nor the root package
// (the caller passes the root's decisions in Request). Its system calls go
// through golang.org/x/sys/unix wrappers (kill, wait4, prctl, unshare, the mount
// API); raw syscalls and unsafe structs, such as the fork itself, are internal/sys's.
package oneshot
