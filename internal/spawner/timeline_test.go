package spawner

import (
	"os"
	"strings"
	"testing"
)

// With AGENTEXEC_SPAWNER_TIMELINE=1 a spawner start prints the main process's and
// the spawner's steps; without it, nothing.
func TestTimeline(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	start := func() string {
		var out syncBuffer
		s, err := StartSpawner(SpawnerConfig{Binary: exe, Profile: "test", Launchers: 1, KernelTemplates: "off",
			Tools: []ToolSpec{{Name: "true", Path: "/bin/true", Hot: true}}, Stderr: &out})
		if err != nil {
			t.Fatalf("StartSpawner: %v", err)
		}
		launchTrue(t, s)
		s.Close() // waits for the spawner's exit, so its stderr is complete
		return out.String()
	}
	if out := start(); strings.Contains(out, "agentexec timeline:") {
		t.Errorf("timeline printed without %s:\n%s", TimelineEnv, out)
	}
	t.Setenv(TimelineEnv, "1")
	out := start()
	for _, want := range []string{" main ", "+0.00 start spawner", "forked and exec'd", "hello sent", " ack", "ready",
		" spawner ", "package initialised", "hello read", "tools opened", "launcher threads"} {
		if !strings.Contains(out, want) {
			t.Errorf("timeline lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, " ready\n"); n != 2 {
		t.Errorf("%d ready lines, want the main process's and the spawner's:\n%s", n, out)
	}
}
