// Package bench implements `agentexec bench`: an agent-like tool mix run through
// agentexec and through unsandboxed baselines in one process, interleaved call by
// call, with per-tool latency, throughput, `serve` overhead, start-up time and idle
// memory. docs/performance.md shows a run and explains the figures.
//
//	rep, err := bench.Run(ctx, bench.Config{Calls: 100, Inflight: 16})
//	if err != nil { … }
//	rep.WriteText(os.Stdout)
//
// # Backends
//
// Each call of the mix runs once through every backend before the next call starts,
// and the order of the backends rotates from call to call (A B C, B C A, …), so
// that drift of the machine (other load, CPU frequency, page cache) hits every
// backend alike and cancels in the ratios:
//
//   - agentexec-userspace: the default runtime with kernel templates off: spawner
//     round trip, revalidated userspace template, clone3 into a pooled cgroup with a
//     pidfd, Landlock/seccomp/no-caps inherited from the spawner, pipes.
//   - agentexec-kernel: the same with spawn_template kernel templates (only when the
//     kernel has them).
//   - agentexec-notemplate: the runtime without templates: a PATH lookup of the bare
//     name at every launch.
//   - os/exec: exec.Cmd with the resolved path, output into buffers; no sandbox.
//   - posix_spawn (cgo builds): glibc's posix_spawn with two pipes and wait4; no
//     sandbox. The baseline every ratio refers to.
//   - forkexec (builds without cgo, like `make build`): syscall.ForkExec (clone with
//     CLONE_VFORK|CLONE_VM, then execve: what glibc's posix_spawn does) with two
//     pipes and wait4; no sandbox. The baseline when posix_spawn is not built in.
//
// It owns the tool-mix benchmark and its baselines. It drives the root's exported
// API, serve (the serve round trip) and policy; its tests use internal/spawner
// for component measurements; the cgo posix_spawn baseline is its one use of
// unsafe (excluded in .golangci.yml). It must not import cgroup, contain or sys.
package bench
