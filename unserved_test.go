package agentexec_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentexec/agentexec"
)

// An embedding program that forgets ServeSpawner fails fast: its copy started as a
// spawner exits with status 2 in New (before starting anything), or, when it never
// reaches New, is given up after the 1s ack timeout. Either way the parent's New
// fails with ErrSpawnerNotServed and exactly one extra process ever ran the program
// (it counts its own runs in <binary>.runs).
func TestUnservedSpawner(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skipf("needs the go toolchain to build the embedding program (%v); the host tier runs it", err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "noserve")
	build := exec.Command("go", "build", "-o", bin, "./internal/testutil/noserve")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, c := range []struct {
		mode, want string
		max        time.Duration
	}{
		{"new", "it ended without answering (exit status 2)", time.Second},
		{"sleep", "no answer within 5s", 5500 * time.Millisecond},
	} {
		t.Run(c.mode, func(t *testing.T) {
			if err := os.WriteFile(bin+".mode", []byte(c.mode), 0o600); err != nil {
				t.Fatal(err)
			}
			os.Remove(bin + ".runs")
			var stdout, stderr bytes.Buffer
			cmd := exec.Command(bin)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			start := time.Now()
			err := cmd.Run()
			took := time.Since(start)
			t.Logf("%s, %v\nstdout: %s\nstderr: %s", took, err, stdout.Bytes(), stderr.Bytes())
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("noserve: %v, want exit status 1 (New failed)", err)
			}
			msg := stderr.String()
			for _, want := range []string{agentexec.ErrSpawnerNotServed.Error(), c.want, "agentexec.ServeSpawner() first thing in main"} {
				if !strings.Contains(msg, want) {
					t.Errorf("stderr lacks %q", want)
				}
			}
			if c.mode == "new" && !strings.Contains(msg, "this process was started as an agentexec spawner") {
				t.Errorf("the spawner copy did not explain itself on stderr")
			}
			if took > c.max+2*time.Second { // the program's own start and build of the policy
				t.Errorf("noserve took %v", took)
			}
			var newTook time.Duration
			for _, l := range strings.Split(stdout.String(), "\n") {
				if v, ok := strings.CutPrefix(l, "new took "); ok {
					newTook, _ = time.ParseDuration(v)
				}
			}
			if newTook <= 0 || newTook > c.max {
				t.Errorf("New failed after %v, want at most %v", newTook, c.max)
			}
			runs, err := os.ReadFile(bin + ".runs")
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(string(runs)), "\n")
			if len(lines) != 2 || !strings.Contains(lines[1], `"__agentexec_spawner"`) {
				t.Errorf("the program ran %d times, want twice (itself and one spawner copy):\n%s", len(lines), runs)
			}
		})
	}
}
