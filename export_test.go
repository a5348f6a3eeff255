package agentexec

import "github.com/agentexec/agentexec/internal/egress"

// KillSpawnerForTest kills the spawner process of tool's profile.
func KillSpawnerForTest(rt *Runtime, tool string) {
	t, _ := rt.pol.Tool(tool)
	rt.profiles[t.Profile].spawner.Kill()
}

// SpawnerPidsForTest returns the pids of the runtime's spawner processes.
func SpawnerPidsForTest(rt *Runtime) []int {
	var pids []int
	for _, prt := range rt.order {
		pids = append(pids, prt.spawner.Pid())
	}
	return pids
}

// SpawnerLaunchersForTest returns the launcher threads of each spawner process.
func SpawnerLaunchersForTest(rt *Runtime) []int {
	var n []int
	for _, prt := range rt.order {
		n = append(n, prt.spawner.Ready().Launchers)
	}
	return n
}

// LauncherThreadsForTest is launcherThreads.
var LauncherThreadsForTest = launcherThreads

// WithoutLaunchIsolationForTest turns off the per-launch Landlock layer and the tool
// identity and runs one launcher thread, for the controls of the isolation tests.
func WithoutLaunchIsolationForTest() Option { return func(o *options) { o.noLaunchIsolation = true } }

// WithoutProtectionForTest turns off the read-only repository metadata and protect:
// paths, for the controls of the protection tests.
func WithoutProtectionForTest() Option { return func(o *options) { o.noProtect = true } }

// WithoutMountNSForTest makes the runtime act as if it could not give spawners a
// private mount namespace (why says why).
func WithoutMountNSForTest(why string) Option { return func(o *options) { o.noMountNS = why } }

// WithEgressConfigForTest edits the egress proxy's configuration before it starts
// (a hosts map as its resolver, the test servers' roots), so that tests reach
// named servers on this machine's loopback.
func WithEgressConfigForTest(f func(*egress.Config)) Option {
	return func(o *options) { o.egressTest = f }
}

// WithoutToolAccountsForTest leaves the tool identity nameless in its tools' view
// (toolaccounts.go): the control of the accounts test.
func WithoutToolAccountsForTest() Option { return func(o *options) { o.noToolAccounts = true } }

// WithoutAgentPeerCheckForTest serves a launch's ssh-agent socket to any process
// that reaches it: the control of TestEgressSSHAgentPeer.
func WithoutAgentPeerCheckForTest() Option { return func(o *options) { o.noAgentPeerCheck = true } }
