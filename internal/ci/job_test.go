package ci

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentexec/agentexec/policy"
)

func TestParseOK(t *testing.T) {
	src := `name: build
policy: ../ci.yaml
workspace: ..
env: {GOFLAGS: -mod=mod, EMPTY: }
steps:
  - name: build
    run: [go, build, ./...]
    timeout: 2m
  - name: test
    sh: |
      go test ./...
    cwd: sub
    env: {CGO_ENABLED: "0"}
    limits: {output: 1MiB, memory: 512MiB, pids: 100, cpu: 150%}
    needs: [build]
    continue_on_error: true
`
	j, err := Parse("job.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if j.Name != "build" || j.PolicyPath != "../ci.yaml" || j.Workspace != ".." || len(j.Env) != 2 || j.Env[1].Value != "" {
		t.Errorf("job fields: %+v", j)
	}
	if len(j.Steps) != 2 {
		t.Fatalf("%d steps", len(j.Steps))
	}
	b, s := j.Steps[0], j.Steps[1]
	if b.Limits.Timeout != 2*time.Minute || len(b.Run) != 3 || b.Line != 6 || b.Col != 5 {
		t.Errorf("build: %+v", b)
	}
	if s.Sh != "go test ./...\n" || s.Cwd != "sub" || !s.ContinueOnError || s.Required() || s.Needs[0] != "build" ||
		s.Limits.Output != 1<<20 || s.Limits.Memory != 512<<20 || s.Limits.Pids != 100 || s.Limits.CPU != 1.5 {
		t.Errorf("test: %+v", s)
	}
	if j2, err := Parse("dir/my job.yml", []byte("policy: p.yaml\nsteps: [{name: a, run: [x]}]\n")); err != nil || j2.Name != "my_job" {
		t.Errorf("default name: %v %v", j2, err)
	}
}

// fieldErrors returns the FieldErrors of a joined error as "LINE:COL: FIELD: MSG" prefixes.
func fieldErrors(t *testing.T, err error) []*policy.FieldError {
	t.Helper()
	var out []*policy.FieldError
	for _, e := range flatten(err) {
		var fe *policy.FieldError
		if !errors.As(e, &fe) {
			t.Fatalf("not a *policy.FieldError: %T %v", e, e)
		}
		out = append(out, fe)
	}
	return out
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, src string
		// want are "LINE:COL FIELD substring" items, each of which must be found.
		want []string
	}{
		{"empty", "", []string{"1:1 steps missing"}},
		{"not a mapping", "- a\n", []string{"1:1  a job file is a mapping"}},
		{"missing fields", "name: x\n", []string{"1:1 policy missing", "1:1 steps missing"}},
		{"unknown top", "policy: p\nstep: []\n", []string{`2:1 step unknown field "step" (did you mean "steps"?)`}},
		{"bad name", "name: a b\npolicy: p\nsteps: [{name: x, run: [y]}]\n", []string{`1:7 name "a b" is not a valid job name`}},
		{"run scalar", "policy: p\nsteps:\n  - name: a\n    run: echo hi\n", []string{"4:10 steps[0].run expected an argv list"}},
		{"run and sh", "policy: p\nsteps:\n  - name: a\n    run: [x]\n    sh: y\n", []string{"5:9 steps[0].sh both run: and sh:"}},
		{"neither", "policy: p\nsteps:\n  - name: a\n", []string{"3:5 steps[0] missing run:"}},
		{"dup step", "policy: p\nsteps:\n  - {name: a, run: [x]}\n  - {name: a, run: [x]}\n", []string{"4:12 steps[1].name duplicate step name"}},
		{"later need", "policy: p\nsteps:\n  - {name: a, run: [x], needs: [b]}\n  - {name: b, run: [x]}\n", []string{`3:33 steps[0].needs[0] "b" is a later step`}},
		{"unknown need", "policy: p\nsteps:\n  - {name: a, run: [x], needs: [zz]}\n", []string{`3:33 steps[0].needs[0] no step named "zz"`}},
		{"bad timeout", "policy: p\nsteps:\n  - name: a\n    run: [x]\n    timeout: 5\n", []string{"5:14 steps[0].timeout 5 is not a duration"}},
		{"two timeouts", "policy: p\nsteps:\n  - name: a\n    run: [x]\n    timeout: 5s\n    limits: {timeout: 1s}\n", []string{"6:14 steps[0].limits.timeout both timeout:"}},
		{"bad limits", "policy: p\nsteps:\n  - name: a\n    run: [x]\n    limits: {memory: 1XB, pids: -1, cpu: lots, disk: 1}\n",
			[]string{"5:22 steps[0].limits.memory unknown unit", "5:33 steps[0].limits.pids expected a process count",
				"5:42 steps[0].limits.cpu is not a CPU limit", `5:48 steps[0].limits.disk unknown field "disk"`}},
		{"bad env", "policy: p\nenv: {1X: a, Y: [b]}\nsteps: [{name: a, run: [x]}]\n", []string{`2:7 env.1X "1X" is not a valid`, "2:17 env.Y expected a string value"}},
		{"coe type", "policy: p\nsteps:\n  - {name: a, run: [x], continue_on_error: yes please}\n", []string{"3:44 steps[0].continue_on_error expected true or false"}},
		{"dup key", "policy: p\npolicy: q\nsteps: [{name: a, run: [x]}]\n", []string{"2:1 policy duplicate key"}},
		{"syntax", "policy: p\nsteps:\n  - name: [a\n", []string{"3:11  YAML syntax error: did not find expected ',' or ']': the '[' here is never closed"}},
		{"two docs", "policy: p\nsteps: [{name: a, run: [x]}]\n---\na: 1\n", []string{"3:1  a single YAML document"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("job.yaml", []byte(tc.src))
			if err == nil {
				t.Fatal("no error")
			}
			fes := fieldErrors(t, err)
			var got []string
			for _, fe := range fes {
				got = append(got, fmt.Sprintf("%d:%d %s %s", fe.Line, fe.Col, fe.Field, fe.Msg))
				if fe.File != "job.yaml" {
					t.Errorf("file %q", fe.File)
				}
			}
			for _, w := range tc.want {
				parts := strings.SplitN(w, " ", 3)
				found := false
				for _, fe := range fes {
					if fmt.Sprintf("%d:%d", fe.Line, fe.Col) == parts[0] && fe.Field == parts[1] && strings.Contains(fe.Msg, parts[2]) {
						found = true
					}
				}
				if !found {
					t.Errorf("want %q among:\n  %s", w, strings.Join(got, "\n  "))
				}
			}
			if s := err.Error(); !strings.HasPrefix(s, "job.yaml:") {
				t.Errorf("error text %q does not start with the file name", s)
			}
		})
	}
}

func TestInlinePolicyKeepsPositions(t *testing.T) {
	dir := t.TempDir()
	src := `name: inl
policy:
  version: 1
  tools:
    sh: {limits: {memory: 12XB}}
  bogus: 1
steps:
  - name: a
    run: [sh, -c, "true"]
`
	file := filepath.Join(dir, "job.yaml")
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err := Load(file, LoadOptions{Home: "/root", TmpDir: "/tmp"})
	if err == nil {
		t.Fatal("no error")
	}
	fes := fieldErrors(t, err)
	want := map[string][2]int{"policy.tools.sh.limits.memory": {5, 27}, "policy.bogus": {6, 3}}
	for _, fe := range fes {
		if w, ok := want[fe.Field]; ok {
			if fe.Line != w[0] || fe.Col != w[1] || fe.File != file {
				t.Errorf("%s at %s:%d:%d, want %d:%d", fe.Field, fe.File, fe.Line, fe.Col, w[0], w[1])
			}
			delete(want, fe.Field)
		}
	}
	if len(want) > 0 {
		t.Errorf("missing errors %v in %v", want, err)
	}
}

func TestLoadChecksLimitsAgainstPolicy(t *testing.T) {
	dir := t.TempDir()
	src := `policy:
  version: 1
  shell: sh
  defaults:
    filesystem: {read: ["${WORKSPACE}"], exec: [/usr, /bin]}
    limits: {timeout: 10s, output: 1MiB, memory: 1GiB, pids: 10, cpu: 1}
  tools:
    sh: {}
steps:
  - name: a
    sh: "true"
    timeout: 1m
    limits: {output: 2MiB, memory: 2GiB, pids: 11, cpu: 2}
  - name: b
    sh: "true"
    cwd: ../elsewhere
  - name: c
    run: [nosuchtool]
    limits: {memory: 100GiB}
`
	file := filepath.Join(dir, "job.yaml")
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err := Load(file, LoadOptions{Home: "/root", TmpDir: "/tmp"})
	if err == nil {
		t.Fatal("no error")
	}
	want := map[string]int{"steps[0].timeout": 12, "steps[0].limits.output": 13, "steps[0].limits.memory": 13,
		"steps[0].limits.pids": 13, "steps[0].limits.cpu": 13, "steps[1].cwd": 16}
	for _, fe := range fieldErrors(t, err) {
		if l, ok := want[fe.Field]; ok && fe.Line == l {
			delete(want, fe.Field)
			continue
		}
		t.Errorf("unexpected error %v", fe)
	}
	if len(want) > 0 {
		t.Errorf("missing errors for %v in:\n%v", want, err)
	}
}

func TestLoadShellFromPolicy(t *testing.T) {
	dir := t.TempDir()
	src := `policy:
  version: 1
  defaults:
    filesystem: {read: ["${WORKSPACE}"], exec: [/usr, /bin]}
  tools:
    sh: {}
steps:
  - name: a
    sh: "true"
`
	file := filepath.Join(dir, "job.yaml")
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err := Load(file, LoadOptions{Home: "/root", TmpDir: "/tmp"})
	if err == nil || !strings.Contains(err.Error(), "job.yaml:9:9: steps[0].sh: the policy has no shell") {
		t.Errorf("got %v", err)
	}
	if err := os.WriteFile(file, []byte(strings.Replace(src, "version: 1\n", "version: 1\n  shell: sh\n", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	j, pol, err := Load(file, LoadOptions{Home: "/root", TmpDir: "/tmp"})
	if err != nil {
		t.Fatal(err)
	}
	if s := j.Steps[0]; s.Tool != "sh" || len(s.Args) != 2 || s.Args[0] != "-c" || s.Args[1] != "true" {
		t.Errorf("step launch %q %q", s.Tool, s.Args)
	}
	if pol.Workspace != dir {
		t.Errorf("workspace %q, want the job file's directory %q", pol.Workspace, dir)
	}
}

// TestExampleJobsLoad loads every example job in configs/jobs with its policy.
func TestExampleJobsLoad(t *testing.T) {
	jobs, err := filepath.Glob(filepath.Join("..", "..", "configs", "jobs", "*.yaml"))
	if err != nil || len(jobs) < 3 {
		t.Fatalf("example jobs: %v %v", jobs, err)
	}
	for _, j := range jobs {
		job, pol, err := Load(j, LoadOptions{Home: "/root", TmpDir: "/tmp", CPUs: 2})
		if err != nil {
			t.Errorf("%s: %v", j, err)
			continue
		}
		for _, s := range job.Steps {
			if s.Tool == "" {
				t.Errorf("%s: step %s has no tool", j, s.Name)
			}
		}
		if pol.Shell == "" {
			t.Errorf("%s: policy without shell", j)
		}
	}
}

func TestLoadWorkspaceMissing(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "job.yaml")
	if err := os.WriteFile(file, []byte("policy: p.yaml\nworkspace: nope\nsteps: [{name: a, run: [x]}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err := Load(file, LoadOptions{})
	if err == nil || !strings.HasPrefix(err.Error(), file+":2:12: workspace: stat "+filepath.Join(dir, "nope")) {
		t.Errorf("got %v", err)
	}
}

// TestLoadRootWorkspace: with the workspace "/", every cwd lies within it.
func TestLoadRootWorkspace(t *testing.T) {
	dir := t.TempDir()
	src := `policy:
  version: 1
  defaults:
    filesystem: {read: ["${WORKSPACE}"], exec: [/usr, /bin]}
  tools:
    sh: {}
steps:
  - name: rel
    run: [sh, -c, "true"]
    cwd: tmp
  - name: abs
    run: [sh, -c, "true"]
    cwd: /usr
`
	file := filepath.Join(dir, "job.yaml")
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	j, pol, err := Load(file, LoadOptions{Workspace: "/", Home: "/root", TmpDir: "/tmp"})
	if err != nil {
		t.Fatal(err)
	}
	if pol.Workspace != "/" {
		t.Errorf("workspace %q, want /", pol.Workspace)
	}
	if len(j.Steps) != 2 || j.Steps[0].Cwd != "tmp" || j.Steps[1].Cwd != "/usr" {
		t.Errorf("steps %+v", j.Steps)
	}
}
