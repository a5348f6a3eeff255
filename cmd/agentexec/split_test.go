package main

import (
	"bytes"
	"debug/buildinfo"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/agentexec/agentexec/internal/testutil"
)

func TestNeedsFull(t *testing.T) {
	cases := []struct {
		cmd  string
		args []string
		want bool
	}{
		{"mcp", nil, true},
		{"worker", []string{"-h"}, true},
		{"ci", []string{"job.yaml"}, false},
		{"ci", []string{"--nats", "nats://h:4222", "job.yaml"}, true},
		{"ci", []string{"job.yaml", "-nats=nats://h:4222"}, true},
		{"ci", []string{"--nats=nats://h:4222"}, true},
		{"ci", []string{"--", "--nats"}, false}, // after "--" it is a job file's name
		{"ci", []string{"--natsy", "x"}, false},
		{"ci", []string{"nats"}, false},
		{"check", []string{"--json", "--nats", "u"}, true},
		{"check", []string{"--json"}, false},
		{"run", []string{"--", "nats", "--nats"}, false},
		{"serve", []string{"--nats"}, false}, // serve has no such flag: its own error
	}
	for _, c := range cases {
		if got := needsFull(c.cmd, c.args); got != c.want {
			t.Errorf("needsFull(%q, %q) = %v, want %v", c.cmd, c.args, got, c.want)
		}
	}
}

// binaries returns the lean binary under test and the full one beside it.
func binaries(t *testing.T) (lean, full string) {
	t.Helper()
	lean = testutil.AgentexecBinary(t)
	full = filepath.Join(filepath.Dir(lean), fullName)
	if _, err := os.Stat(full); err != nil {
		t.Fatalf("the full build is not beside %s: %v (make build makes both)", lean, err)
	}
	return lean, full
}

func modules(t *testing.T, bin string) (deps []string, tags string) {
	t.Helper()
	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range bi.Deps {
		deps = append(deps, d.Path)
	}
	for _, s := range bi.Settings {
		if s.Key == "-tags" {
			tags = s.Value
		}
	}
	return deps, tags
}

// The point of the lean build: no MCP SDK and no NATS client linked, so no
// process of it pays their package initialisation. The full build is the control:
// it has them.
func TestLeanBuildLeavesOutMCPAndNATS(t *testing.T) {
	lean, full := binaries(t)
	heavy := []string{"github.com/modelcontextprotocol/go-sdk", "github.com/nats-io/nats.go", "github.com/google/jsonschema-go"}
	ldeps, ltags := modules(t, lean)
	fdeps, ftags := modules(t, full)
	if !strings.Contains(ltags, "agentexec_lean") || strings.Contains(ftags, "agentexec_lean") {
		t.Fatalf("build tags: %s has %q, %s has %q; want agentexec_lean in the first only", lean, ltags, full, ftags)
	}
	for _, m := range heavy {
		if slices.Contains(ldeps, m) {
			t.Errorf("the lean build links %s", m)
		}
		if !slices.Contains(fdeps, m) {
			t.Errorf("the full build does not link %s (control)", m)
		}
	}
}

// mcp, worker and ci/check --nats run in the full binary, with the same output and
// exit status as when it is called directly.
func TestLeanHandsOverToFull(t *testing.T) {
	lean, full := binaries(t)
	run := func(bin string, env []string, args ...string) (string, int) {
		cmd := exec.Command(bin, args...)
		cmd.Dir = t.TempDir()
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		return string(out), cmd.ProcessState.ExitCode()
	}
	for _, args := range [][]string{{"mcp", "-h"}, {"worker", "-h"}, {"mcp", "--no-such-flag"}} {
		lo, lc := run(lean, nil, args...)
		fo, fc := run(full, nil, args...)
		if lo != fo || lc != fc || !strings.Contains(lo, "usage: agentexec "+args[0]) {
			t.Errorf("%q: lean exit %d:\n%s\nfull exit %d:\n%s", args, lc, lo, fc, fo)
		}
	}
	// check --nats: the report has the NATS problem only the full build can find,
	// as the full build reports it.
	problems := func(bin string) []string {
		out, code := run(bin, nil, "check", "--json", "--nats", "nats://agent:s3cret@127.0.0.1:1")
		var r struct{ Problems []string }
		if i := strings.Index(out, "{"); i < 0 || json.Unmarshal([]byte(out[i:]), &r) != nil || code != 1 {
			t.Fatalf("%s check --nats: exit %d:\n%s", bin, code, out)
		}
		return r.Problems
	}
	lp, fp := problems(lean), problems(full)
	if !slices.Equal(lp, fp) || !slices.ContainsFunc(lp, func(p string) bool {
		return strings.HasPrefix(p, "nats: --nats nats://agent:xxxxx@127.0.0.1:1") && !strings.Contains(p, "not in this build")
	}) {
		t.Errorf("check --nats: lean build's problems %q, the full build's %q", lp, fp)
	}
}

// Without the full binary beside it (a lean binary copied alone), the commands that
// need it fail with exit status 2 and say what is missing and how to fix it; the
// others run. AGENTEXEC_FULL names a full binary elsewhere.
func TestLeanWithoutFull(t *testing.T) {
	lean, full := binaries(t)
	dir := t.TempDir()
	alone := filepath.Join(dir, "agentexec")
	data, err := os.ReadFile(lean)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(alone, data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"mcp"}, {"worker", "-h"}, {"ci", "--nats", "nats://127.0.0.1:1", "job.yaml"}} {
		cmd := exec.Command(alone, args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		msg := stderr.String()
		if cmd.ProcessState.ExitCode() != 2 || !strings.Contains(msg, filepath.Join(dir, fullName)) ||
			!strings.Contains(msg, fullEnv) || !strings.Contains(msg, "no such file") {
			t.Errorf("%q with no full build: %v, stderr:\n%s", args, err, msg)
		}
	}
	if out, err := exec.Command(alone, "version").CombinedOutput(); err != nil || !strings.HasPrefix(string(out), "agentexec ") {
		t.Errorf("version with no full build: %v: %s", err, out)
	}
	// -h prints the usage and exits 2, as every command's does.
	cmd := exec.Command(alone, "mcp", "-h")
	cmd.Env = append(os.Environ(), fullEnv+"="+full)
	if out, _ := cmd.CombinedOutput(); cmd.ProcessState.ExitCode() != 2 || !strings.Contains(string(out), "usage: agentexec mcp") || strings.Contains(string(out), "lean build") {
		t.Errorf("mcp -h with %s=%s: exit %d:\n%s", fullEnv, full, cmd.ProcessState.ExitCode(), out)
	}
}
