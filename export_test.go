package agentexec

// KillSpawnerForTest kills the spawner process of tool's profile.
func KillSpawnerForTest(rt *Runtime, tool string) {
	t, _ := rt.pol.Tool(tool)
	rt.profiles[t.Profile].spawner.Kill()
}
