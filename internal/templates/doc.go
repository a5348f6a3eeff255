// Package templates holds the per-tool launch templates of a spawner process: the
// prepared state that makes each later launch of a hot tool cost little more than the
// exec itself.
//
//	t, err := templates.New("/usr/bin/rg") // open, statx, ELF check
//	...
//	recreated, err := t.Revalidate()        // one statx before each launch
//	// exec t.Path (ForkExec, clone3 into the child's cgroup)
//
// # Backends
//
// The userspace backend ([Template]) works on every kernel. A template
// keeps the absolute path, an open fd on the executable and its identity key (device,
// inode, size, mode, owner, ctime, mtime). Before each launch [Template.Revalidate]
// compares the key with one statx of the path; when a package manager has replaced the
// binary (rename over it) or rewritten it in place, the template is stale: it is
// recreated once, transparently, counted in [Stats], and the launch uses the new
// binary. Exec failures map to exit statuses as the kernel backend's do
// ([ExitStatusForExecError]): not found 127, permission or exec format 126.
//
// The kernel backend ([KernelTemplate]) uses the spawn_template syscalls of a Linux
// RFC series that no released kernel carries. [ProbeKernel] decides whether they exist
// without calling an unknown syscall number blind: it looks the syscalls up by name in
// /proc/kallsyms, lets the numbers be overridden, and only then confirms them with a
// bad-fd call. [NewKernel] confirms each template fd by its anon_inode:spawn_template
// link name. A kernel template may only be used by the thread whose credentials
// created it, so create it on the locked OS thread that will spawn from it, after that
// thread's restriction. Non-ELF tools and every create failure fall back to the
// userspace backend, per tool.
//
// The two backends differ in one way a caller must handle: a kernel-template child
// starts in the caller's cgroup and is moved into its own right after spawn returns,
// by writing its pid into the cgroup's cgroup.procs, and its exec failures arrive as
// raw statuses that read as signals ([DecodeKernelWaitStatus] for a wait4 status,
// [DecodeKernelChildStatus] for waitid's CLD_KILLED).
//
// It owns the templates (userspace and kernel), the spawn_template probe and the
// backend and template-state names (Backend, State). It must not import the root
// or spawner packages; the RFC's structs and syscalls live in internal/sys.
package templates
