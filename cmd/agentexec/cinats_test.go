package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentexec/agentexec/internal/testutil"
)

// `ci --nats` submits to a worker pool instead of running the job: with no NATS
// server at the URL it fails at once naming the connection (without the
// password), exit 1, and runs nothing here. The submission itself is tested
// with a real cluster in internal/fleet (TestFleetCIJobs).
func TestCINatsSubmits(t *testing.T) {
	dir := t.TempDir()
	job := filepath.Join(dir, "job.yaml")
	if err := os.WriteFile(job, []byte("steps:\n  - name: one\n    run: [true]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(testutil.AgentexecBinary(t), "ci", "--nats", "nats://agent:s3cret@127.0.0.1:1", "--artifacts", filepath.Join(dir, "art"), job)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "127.0.0.1:1") {
		t.Fatalf("ci --nats with no server: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "s3cret") {
		t.Errorf("the password in --nats was printed: %s", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "art")); err == nil {
		t.Errorf("ci --nats ran the job here (artifacts written)")
	}
}
