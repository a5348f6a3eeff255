package rfccheck

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentexec/agentexec/internal/templates"
	"github.com/agentexec/agentexec/internal/testutil"
)

// setup skips (or, in an RFC guest, fails) without the kernel backend, and returns
// the agentexec binary and a policy file that requires the backend.
func setup(t *testing.T) (bin, pol, ws string) {
	t.Helper()
	testutil.RequireRoot(t)
	if p := templates.ProbeKernel(0, 0); !p.Available {
		if os.Getenv("AGENTEXEC_REQUIRE_SPAWN_TEMPLATE") == "1" {
			t.Fatalf("AGENTEXEC_REQUIRE_SPAWN_TEMPLATE=1: the spawn_template syscalls must be usable: %s", p.Reason)
		}
		t.Skipf("requires the spawn_template syscalls (Linux RFC series; make vmtest-rfc): %s", p.Reason)
	}
	bin = testutil.AgentexecBinary(t)
	ws = t.TempDir()
	if err := os.WriteFile(filepath.Join(ws, "hello.txt"), []byte("hello from the workspace\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(ws, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ws, "sub", "hello.txt"), []byte("hello from sub\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// user: root: under a root runtime tools otherwise run as the tool identity,
	// which spawn_template cannot give a child (the backend is then not used).
	pol = filepath.Join(t.TempDir(), "rfc.yaml")
	y := fmt.Sprintf(`version: 1
kernel_templates: require
workspace: %s
path: [/usr/bin, /bin]
defaults:
  user: root
  filesystem:
    read: [/usr, /bin, /lib, /etc, /proc, /dev/null, "${WORKSPACE}"]
    write: [/dev/null]
    exec: [/usr, /bin, /lib]
  env:
    set:
      PATH: /usr/bin:/bin
  limits:
    timeout: 30s
  enforcement:
    landlock: require
    cgroup: best_effort
tools:
  cat: {hot: true}
  ls: {hot: true}
  sh: {}
`, ws)
	if err := os.WriteFile(pol, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	return bin, pol, ws
}

// agentexec runs the binary and returns stdout, stderr and the exit code.
func agentexec(t *testing.T, bin, dir string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out.String(), errb.String(), 0
	case errors.As(err, &ee):
		return out.String(), errb.String(), ee.ExitCode()
	}
	t.Fatalf("%s %q: %v", bin, args, err)
	return "", "", -1
}

// `agentexec check` finds the backend and says which tools use it.
func TestCheckReportsKernelBackend(t *testing.T) {
	bin, pol, ws := setup(t)
	out, stderr, code := agentexec(t, bin, ws, "check", "--policy", pol, "--json")
	if code != 0 {
		t.Fatalf("check exited %d: %s\n%s", code, stderr, out)
	}
	var r struct {
		OK              bool     `json:"ok"`
		Problems        []string `json:"problems"`
		KernelTemplates struct {
			Available     bool   `json:"available"`
			Reason        string `json:"reason"`
			CreateSyscall int    `json:"create_syscall"`
			SpawnSyscall  int    `json:"spawn_syscall"`
		} `json:"kernel_templates"`
		Tools []struct {
			Name    string `json:"name"`
			Kind    string `json:"kind"`
			Backend string `json:"backend"`
		} `json:"tools"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("check --json: %v\n%s", err, out)
	}
	kt := r.KernelTemplates
	if !r.OK || !kt.Available || kt.CreateSyscall != 472 || kt.SpawnSyscall != 473 {
		t.Fatalf("check: ok %v problems %q kernel_templates %+v", r.OK, r.Problems, kt)
	}
	backends := map[string]string{}
	for _, tr := range r.Tools {
		backends[tr.Name] = tr.Backend
	}
	for _, name := range []string{"cat", "ls"} {
		if backends[name] != "kernel" {
			t.Errorf("check: tool %s backend %q, want kernel (tools %v)", name, backends[name], backends)
		}
	}
	text, _, code := agentexec(t, bin, ws, "check", "--policy", pol)
	if code != 0 || !strings.Contains(text, "spawn_template: available (syscalls 472, 473)") {
		t.Errorf("check (text) exited %d:\n%s", code, text)
	}
}

// result is the part of `run --json`'s object the tests look at.
type result struct {
	ExitCode  *int   `json:"exit_code"`
	Status    string `json:"status"`
	Signal    string `json:"signal"`
	Backend   string `json:"backend"`
	Template  string `json:"template"`
	ExecError string `json:"exec_error"`
	Stdout    string `json:"stdout"`
}

// runJSON runs `agentexec run --policy POL --json -q FLAGS -- ARGS` in dir.
func runJSON(t *testing.T, bin, pol, dir string, flags []string, args ...string) (result, string) {
	t.Helper()
	cl := append(append([]string{"run", "--policy", pol, "--json", "-q"}, flags...), "--")
	out, stderr, _ := agentexec(t, bin, dir, append(cl, args...)...)
	var r result
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("run %q %q --json: %v\nstdout %s\nstderr %s", flags, args, err, out, stderr)
	}
	return r, out
}

// `agentexec run --json` of hot tools takes the kernel backend: in the workspace, in
// a directory given with -C (FCHDIR), and reading a file relative to it.
func TestRunTakesKernelBackend(t *testing.T) {
	bin, pol, ws := setup(t)
	for _, c := range []struct {
		flags, args []string
		want        string
	}{
		{nil, []string{"cat", "/etc/passwd"}, "root:x:0:0"},
		{nil, []string{"cat", "hello.txt"}, "hello from the workspace\n"},
		{[]string{"-C", filepath.Join(ws, "sub")}, []string{"cat", "hello.txt"}, "hello from sub\n"},
		{nil, []string{"ls", "."}, "hello.txt"},
	} {
		r, raw := runJSON(t, bin, pol, ws, c.flags, c.args...)
		if r.ExitCode == nil || *r.ExitCode != 0 || r.Backend != "kernel" || r.Template != "hit" || !strings.Contains(r.Stdout, c.want) {
			t.Errorf("run %q %q: want exit 0 from the kernel backend (template hit) with %q in stdout; got %s", c.flags, c.args, c.want, raw)
		}
	}
	// A tool that is not hot takes the userspace path on the same host.
	if r, raw := runJSON(t, bin, pol, ws, nil, "sh", "-c", "echo ok"); r.Backend != "userspace" || r.Stdout != "ok\n" {
		t.Errorf("run sh (not hot): %s", raw)
	}
}
