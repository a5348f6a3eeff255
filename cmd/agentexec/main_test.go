package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/internal/testutil"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.RemoveAgentexecBinary()
	os.Exit(code)
}

func TestCheckJSONReportsThisHost(t *testing.T) {
	bin := testutil.AgentexecBinary(t)
	cmd := exec.Command(bin, "check", "--json")
	cmd.Dir = t.TempDir()
	out, err := cmd.Output()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	var r agentexec.Report
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("check --json printed no report: %v\n%s", err, out)
	}
	abi, _ := testutil.LandlockABI()
	if r.Landlock.ABI != abi {
		t.Errorf("landlock ABI %d, kernel says %d", r.Landlock.ABI, abi)
	}
	switch m := testutil.Cgroup2Mount(); m {
	case "/sys/fs/cgroup/unified":
		if r.Cgroup.Mode != "hybrid" || r.Cgroup.Mount != m {
			t.Errorf("cgroup %+v, want hybrid at %s", r.Cgroup, m)
		}
	case "/sys/fs/cgroup":
		if r.Cgroup.Mode != "unified" {
			t.Errorf("cgroup %+v, want unified", r.Cgroup)
		}
	}
	kall, _ := os.ReadFile("/proc/kallsyms")
	if !bytes.Contains(kall, []byte("sys_spawn_template_create")) {
		if r.KernelTemplates.Available || !strings.Contains(r.KernelTemplates.Reason, "kallsyms") {
			t.Errorf("spawn_template %+v, want unavailable with the kallsyms reason", r.KernelTemplates)
		}
	}
	if len(r.Profiles) == 0 || len(r.Tools) == 0 {
		t.Fatalf("no profiles or tools: %+v", r)
	}
	// The report names every limit the host cannot enforce.
	b, _ := os.ReadFile(filepath.Join(testutil.Cgroup2Mount(), "cgroup.controllers"))
	have := " " + strings.TrimSpace(string(b)) + " "
	for _, c := range []string{"memory", "pids", "cpu"} {
		listed := false
		for _, u := range r.Profiles[0].Unenforced {
			listed = listed || u == "cgroup: "+c
		}
		if listed == strings.Contains(have, " "+c+" ") {
			t.Errorf("controller %s available=%v but unenforced listed=%v", c, !listed, listed)
		}
	}
}

func TestRunPassesExitStatus(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireLandlockABI(t, 6)
	bin := testutil.AgentexecBinary(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.txt"), []byte("hello\n"), 0o644)
	run := func(args ...string) (string, int) {
		cmd := exec.Command(bin, append([]string{"run", "--"}, args...)...)
		cmd.Dir = dir
		out, err := cmd.Output()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out), ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), 0
	}
	if out, code := run("cat", "a.txt"); out != "hello\n" || code != 0 {
		t.Errorf("cat: %q %d", out, code)
	}
	if _, code := run("grep", "nomatch", "a.txt"); code != 1 {
		t.Errorf("grep no match: exit %d, want 1", code)
	}
	if _, code := run("cat", "/etc/shadow"); code != 1 {
		t.Errorf("cat /etc/shadow: exit %d, want 1 (denied by Landlock)", code)
	}
	if _, code := run("rm", "a.txt"); code != 125 {
		t.Errorf("rm (not in the policy): exit %d, want 125 (agentexec refused)", code)
	}
	cmd := exec.Command(bin, "run", "--json", "--", "cat", "a.txt")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	var r agentexec.ResultJSON
	if err := json.Unmarshal(out, &r); err != nil || r.Status != "ok" || r.Stdout != "hello\n" || r.ExitCode == nil || *r.ExitCode != 0 {
		t.Errorf("run --json: %v %s", err, out)
	}
}

// run's own statuses (docs/cli.md): usage and refusals are 125, -h is 0, and the
// unenforced limits are said once on stderr unless -q.
func TestRunStatusesAndNotices(t *testing.T) {
	bin := testutil.AgentexecBinary(t)
	dir := t.TempDir()
	run := func(args ...string) (stdout, stderr string, code int) {
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		var eb bytes.Buffer
		cmd.Stderr = &eb
		out, err := cmd.Output()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), eb.String(), code
	}
	if _, e, code := run("run"); code != 125 || !strings.Contains(e, "missing TOOL") {
		t.Errorf("run without a tool: exit %d, stderr %q", code, e)
	}
	if _, _, code := run("run", "-h"); code != 0 {
		t.Errorf("run -h: exit %d, want 0", code)
	}
	if _, _, code := run("run", "--bogus", "--", "true"); code != 125 {
		t.Errorf("run with a bad flag: exit %d, want 125", code)
	}
	if _, e, code := run("check", "--workspace", filepath.Join(dir, "nonexistent")); code != 1 || !strings.Contains(e, "nonexistent: no such file or directory") {
		t.Errorf("check --workspace nonexistent: exit %d, stderr %q", code, e)
	}
	out, _, _ := run("check")
	if strings.Contains(out, "warning: profile default: not enforced:") {
		t.Errorf("check lists unenforced limits twice:\n%s", out)
	}

	testutil.RequireRoot(t)
	testutil.RequireLandlockABI(t, 6)
	jsonOut, e, code := run("run", "-q", "--json", "--", "true")
	var r agentexec.ResultJSON
	if err := json.Unmarshal([]byte(jsonOut), &r); err != nil || code != 0 {
		t.Fatalf("run --json true: exit %d, %v, stderr %q", code, err, e)
	}
	if strings.Contains(e, "not enforced") {
		t.Errorf("-q: stderr %q", e)
	}
	_, e, _ = run("run", "--", "true")
	if n := strings.Count(e, "not enforced on this host"); (len(r.Unenforced) > 0) != (n == 1) || n > 1 {
		t.Errorf("unenforced %v; stderr says it %d times: %q", r.Unenforced, n, e)
	}
}

func TestParseInterleaved(t *testing.T) {
	for _, c := range []struct {
		args  []string
		pos   string
		junit string
	}{
		{[]string{"job.yaml", "--junit", "out.xml"}, "job.yaml", "out.xml"},
		{[]string{"--junit", "out.xml", "job.yaml"}, "job.yaml", "out.xml"},
		{[]string{"a.yaml", "b.yaml"}, "a.yaml b.yaml", ""},
		{[]string{"--", "--junit"}, "--junit", ""},
		{[]string{"job.yaml", "--", "--junit"}, "job.yaml --junit", ""},
	} {
		fs := flag.NewFlagSet("ci", flag.ContinueOnError)
		junit := fs.String("junit", "", "")
		pos, err := parseInterleaved(fs, c.args)
		if err != nil || strings.Join(pos, " ") != c.pos || *junit != c.junit {
			t.Errorf("%q: positional %q, junit %q, %v", c.args, pos, *junit, err)
		}
	}
}
