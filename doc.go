// Package agentexec is the engine: it launches a policy's tools fast and inside a
// sandbox, each launch admitted, placed, contained and accounted for.
//
//	p, err := policy.Load("agent.yaml", policy.Options{Workspace: ws})
//	rt, err := agentexec.New(ctx, p) // probes the host, starts one spawner per profile
//	defer rt.Close()
//	r, err := rt.Run(ctx, agentexec.Request{Tool: "rg", Args: []string{"-n", "TODO"}})
//
// A launch walks these files top to bottom, once (docs/design.md, "A launch"):
// launch.go (Run, Start, start) → admit.go (the policy's decision, policy.Admit,
// and whether the tool exists on this host) → acquire.go (a slot of the profile, a
// cgroup, the pipes) → launch.go's spawn (the profile's spawner forks and execs;
// output drains; timers) → finish.go (exit, the tree's end, usage, the Result).
// process.go holds the running Process; profile.go a profile's state and start-up;
// runtime.go the Runtime (New, Close, Stats); check.go the `check` report;
// wire.go the JSON form of results; host.go, tooluser.go, tmpdir.go and
// protect.go what New prepares on the host.
//
// What it owns: admission (through package policy), lanes (per-profile
// concurrency), launch and result. What it delegates: the spawner process and
// its protocol (internal/spawner), cgroups (internal/cgroup), containment layers
// (internal/contain), templates (internal/templates), raw syscalls (internal/sys).
// It must not make raw syscalls or use unsafe itself (.golangci.yml enforces
// both), and the front ends (serve, mcp, ci, cmd/agentexec) use only its
// exported API.
package agentexec
