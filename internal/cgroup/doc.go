// Package cgroup runs each launch in its own cgroup v2, taken from a pool of
// pre-created cgroups whose limits are already written.
//
//	info, err := cgroup.Discover()              // read-only probe
//	m, err := cgroup.NewManager(info, cgroup.Options{})
//	defer m.Close()                             // kills and removes everything
//	missing := m.Unenforced(limits)             // e.g. ["memory", "pids", "cpu"] on a hybrid host
//	pool, err := m.NewPool("git", limits, 8, 64)
//	g, err := pool.Get()                        // no mkdir in steady state
//	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: g.FD()}
//	... run, wait ...
//	u, err := g.Usage()                         // CPU, peak memory, OOM kills, pids peak
//	g.Release()                                 // back to the pool once empty
//
// # Layout
//
// Discover finds the v2 mount (/sys/fs/cgroup on a pure v2 host, /sys/fs/cgroup/unified
// on a hybrid one) and this process's cgroup Self. NewManager creates
// <mount><Self>/<prefix>-<pid> and enables the wanted controllers there; pools live
// below it as <prefix>-<pid>/<pool>-<n>. When Self is not the root, holds processes and
// needs controllers enabled, this process first moves into <Self>/<prefix>-<pid>-self
// (the no-internal-processes rule) and moves back on Close.
//
// # What comes from containerd/cgroups
//
// github.com/containerd/cgroups/v3/cgroup2 provides Load, NewChild (mkdir) and Update
// (the limit files and their formats: memory.max, memory.swap.max, pids.max, cpu.max).
// Written here by hand, because cgroup2 lacks them or does them differently:
// discovery (mode, Self, delegation, mountinfo root), enabling controllers only in
// the directories we own (ToggleControllers writes every ancestor), the leaf move,
// cgroup.kill probed once with a bounded freeze+SIGKILL fallback (Manager.Kill retries
// and logs on every call, and its freeze loop has no time bound), kept fds for
// cgroup.procs/cgroup.events/cpu.stat/memory.peak (cgroup2 re-opens files by path per
// call and returns 0 on read errors), the fd-local memory.peak reset (Linux 6.12),
// waiting for "populated 0" with poll(2), stale-directory recovery, and the pool.
//
// It owns cgroup v2 discovery, delegation, the per-launch pools, usage and kill. It
// must not import agentexec's root, spawner or policy packages (it knows limits as
// its own Limits type); raw syscalls go through x/sys/unix's typed wrappers.
package cgroup
