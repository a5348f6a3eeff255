// Package spawner is a profile's spawner process and the main process's client of
// it. A spawner is the agentexec binary re-executed (ServeSpawner/SpawnerMain): it
// applies the profile's mounts (tool view, protected metadata), drops
// capabilities, sets no_new_privs, restricts itself with Landlock, starts its
// launcher threads, installs the seccomp filter, prepares the tools' templates,
// and then forks and execs each launch on request, reaping the children and
// reporting their exits.
//
// It owns: the wire protocol between the main process and a spawner (proto.go:
// one JSON datagram per message over SOCK_SEQPACKET, fds as SCM_RIGHTS); the
// client (spawner.go: Spawner, Launch, Child, restart after a death); the spawner
// process (spawner_proc.go); the reaper (reaper.go, orphans.go); the tools'
// template table (tool.go, the one table of tools in a spawner); the per-launch
// isolation (isolation.go: a Landlock domain per launch); the Landlock plan
// (landlock.go), the tool view and the mounts (toolview.go, mounts.go,
// protect.go); and output sinks (output.go).
//
// It must not import the root package (which imports it) or anything above it
// (serve, mcp, ci); raw syscalls go through internal/sys.
package spawner
