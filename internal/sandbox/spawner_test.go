package sandbox

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	if IsSpawnerInvocation(os.Args) {
		SpawnerMain(os.Args)
	}
	os.Exit(m.Run())
}

// startTestSpawner starts this test binary as an unrestricted spawner (no Landlock,
// no containment: nothing here needs root) that may launch /bin/true.
func startTestSpawner(t *testing.T, launchers int, kernelTemplates string) *Spawner {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	s, err := StartSpawner(SpawnerConfig{Binary: exe, Profile: "test", Launchers: launchers, KernelTemplates: kernelTemplates,
		Tools: []ToolSpec{{Name: "true", Path: "/bin/true", Hot: true}}, Stderr: os.Stderr})
	if err != nil {
		t.Fatalf("StartSpawner: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func launchTrue(t *testing.T, s *Spawner) {
	t.Helper()
	p := make([]int, 2)
	if err := unix.Pipe2(p, unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	ch, err := s.Launch(&LaunchSpec{Tool: "true", Argv: []string{"true"}, Dir: "/", Stdin: -1, Stdout: p[1], Stderr: p[1], CgroupFD: -1})
	unix.Close(p[1])
	if err != nil {
		t.Fatalf("launch: %v", err)
	}
	defer ch.Release()
	exit, err := ch.Wait()
	if err != nil || !exit.Status.Exited() || exit.Status.ExitStatus() != 0 {
		t.Fatalf("true: %v, status %v", err, exit.Status)
	}
}

// A spawner starts the launcher threads it is asked for, each serving launches,
// except when kernel templates may be used: those are bound to the one thread that
// made them.
func TestSpawnerLaunchers(t *testing.T) {
	for _, c := range []struct {
		launchers int
		kernel    string
		want      int
	}{
		{0, "off", 1}, {3, "off", 3}, {3, "auto", 1},
	} {
		s := startTestSpawner(t, c.launchers, c.kernel)
		r := s.Ready()
		if r.Launchers != c.want {
			t.Errorf("launchers %d, kernel_templates %s: spawner started %d launcher threads, want %d", c.launchers, c.kernel, r.Launchers, c.want)
		}
		// Every thread that blocks in recvmsg must launch: more launches than threads.
		for range 3 * c.want {
			launchTrue(t, s)
		}
		s.Close()
	}
}
