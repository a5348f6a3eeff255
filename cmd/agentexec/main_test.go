package main

import (
	"bytes"
	"encoding/json"
	"errors"
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
	if _, code := run("rm", "a.txt"); code == 0 {
		t.Errorf("rm (not in the policy) succeeded")
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
