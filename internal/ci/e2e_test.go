package ci

// End-to-end tests of the built agentexec binary: `agentexec ci` on real job files,
// with real Landlock and real process trees. Set AGENTEXEC_BIN to test an existing
// binary; otherwise one is built (CGO_ENABLED=0) into a temporary directory.

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/agentexec/agentexec/internal/testutil"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.RemoveAgentexecBinary()
	os.Exit(code)
}

func requireSandbox(t *testing.T) {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireLandlockABI(t, 1)
}

// jobDir is a job's directory: ws/ (the workspace) and outside/ (readable by the
// policy, not writable).
type jobDir struct {
	dir, ws, outside, file string
}

// writeJob writes a job file with an inline policy (tools sh, echo) and the given steps.
func writeJob(t *testing.T, name, steps string) *jobDir {
	t.Helper()
	d := &jobDir{dir: t.TempDir()}
	d.ws, d.outside = filepath.Join(d.dir, "ws"), filepath.Join(d.dir, "outside")
	for _, p := range []string{d.ws, d.outside} {
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	src := fmt.Sprintf(`name: %s
workspace: ws
policy:
  version: 1
  shell: sh
  defaults:
    filesystem:
      read: [/usr, /lib, /lib64, /bin, /etc, /proc, /dev/null, "${WORKSPACE}", %q]
      write: ["${WORKSPACE}", /dev/null]
      exec: [/usr, /bin, /lib, /lib64]
    env: {allow: [GREETING]}
    limits: {timeout: 60s, output: 1MiB}
  tools:
    sh: {}
    echo: {}
steps:
%s`, name, d.outside, steps)
	d.file = filepath.Join(d.dir, "job.yaml")
	if err := os.WriteFile(d.file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return d
}

type ciRun struct {
	stdout, stderr string
	exit           int
	report         *Report
	reportRaw      []byte
	junit          []byte
	artifacts      string
}

// runCI runs agentexec ci on the job with a JSON report and a JUnit file.
func runCI(t *testing.T, d *jobDir, args ...string) *ciRun {
	t.Helper()
	r := &ciRun{artifacts: filepath.Join(d.dir, "artifacts")}
	repFile, junitFile := filepath.Join(d.dir, "report.json"), filepath.Join(d.dir, "junit.xml")
	os.Remove(repFile)
	os.Remove(junitFile)
	all := append([]string{"ci", "--report", repFile, "--junit", junitFile, "--artifacts", r.artifacts}, args...)
	all = append(all, d.file)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, testutil.AgentexecBinary(t), all...)
	cmd.Dir = d.dir
	cmd.Env = append(os.Environ(), "CI=true")
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	r.stdout, r.stderr = so.String(), se.String()
	if ctx.Err() != nil {
		t.Fatalf("agentexec ci did not finish in 90s\nstdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	}
	if ee, ok := err.(*exec.ExitError); ok {
		r.exit = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	t.Logf("agentexec %s → exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(all, " "), r.exit, r.stdout, r.stderr)
	if b, err := os.ReadFile(repFile); err == nil {
		r.reportRaw = b
		r.report = &Report{}
		if err := json.Unmarshal(b, r.report); err != nil {
			t.Fatalf("report: %v", err)
		}
		validateReportSchema(t, b)
	}
	if b, err := os.ReadFile(junitFile); err == nil {
		r.junit = b
	}
	return r
}

func (r *ciRun) step(t *testing.T, name string) ReportStep {
	t.Helper()
	if r.report == nil {
		t.Fatal("no report written")
	}
	for _, s := range r.report.Steps {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no step %q in the report", name)
	return ReportStep{}
}

func (r *ciRun) wantStatus(t *testing.T, want map[string]Status) {
	t.Helper()
	for name, st := range want {
		if got := r.step(t, name); got.Status != st {
			t.Errorf("step %s: status %s (%s), want %s", name, got.Status, got.Message, st)
		}
	}
}

// junitCounts parses the JUnit file and returns its suite's counts and each case's outcome.
func junitCounts(t *testing.T, b []byte) (tests, failures, errs, skipped int, cases map[string]string) {
	t.Helper()
	var doc struct {
		XMLName xml.Name `xml:"testsuites"`
		Suites  []struct {
			Tests    int `xml:"tests,attr"`
			Failures int `xml:"failures,attr"`
			Errors   int `xml:"errors,attr"`
			Skipped  int `xml:"skipped,attr"`
			Cases    []struct {
				Name    string    `xml:"name,attr"`
				Failure *struct{} `xml:"failure"`
				Error   *struct{} `xml:"error"`
				Skipped *struct{} `xml:"skipped"`
				Out     string    `xml:"system-out"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("JUnit XML does not parse: %v\n%s", err, b)
	}
	if len(doc.Suites) != 1 {
		t.Fatalf("%d testsuites, want 1", len(doc.Suites))
	}
	s := doc.Suites[0]
	cases = map[string]string{}
	for _, c := range s.Cases {
		switch {
		case c.Failure != nil:
			cases[c.Name] = "failure"
		case c.Error != nil:
			cases[c.Name] = "error"
		case c.Skipped != nil:
			cases[c.Name] = "skipped"
		default:
			cases[c.Name] = "pass"
		}
	}
	if len(s.Cases) != s.Tests {
		t.Errorf("tests=%d but %d testcases", s.Tests, len(s.Cases))
	}
	return s.Tests, s.Failures, s.Errors, s.Skipped, cases
}

func TestE2EPassFailFailFast(t *testing.T) {
	requireSandbox(t)
	d := writeJob(t, "basic", `  - name: hello
    run: [echo, hello-from-ci]
  - name: broken
    sh: "echo about to fail >&2; exit 3"
    needs: [hello]
  - name: after-broken
    sh: echo never
    needs: [broken]
  - name: later
    sh: echo later
    needs: [broken, hello]
`)
	r := runCI(t, d, "--jobs", "1")
	if r.exit != 1 {
		t.Errorf("exit %d, want 1", r.exit)
	}
	r.wantStatus(t, map[string]Status{"hello": StatusPassed, "broken": StatusFailed, "after-broken": StatusSkipped, "later": StatusSkipped})
	if b := r.step(t, "broken"); b.ExitCode == nil || *b.ExitCode != 3 || b.Message != "exit status 3" || !b.Required {
		t.Errorf("broken: %+v", b)
	}
	if s := r.step(t, "after-broken"); s.Message != "needs broken, which failed" || s.StartedAt != nil || s.ExitCode != nil {
		t.Errorf("after-broken: %+v", s)
	}
	if r.report.Status != "failed" || r.report.ExitCode != 1 || r.report.Summary != (ReportSummary{Total: 4, Passed: 1, Failed: 1, Skipped: 2}) {
		t.Errorf("report: status %s exit %d summary %+v", r.report.Status, r.report.ExitCode, r.report.Summary)
	}
	// Artifacts hold each step's full output.
	art := filepath.Join(r.artifacts, "basic")
	if b, err := os.ReadFile(filepath.Join(art, "hello.stdout")); err != nil || string(b) != "hello-from-ci\n" {
		t.Errorf("hello.stdout = %q, %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(art, "broken.stderr")); err != nil || string(b) != "about to fail\n" {
		t.Errorf("broken.stderr = %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(art, "later.stdout")); !os.IsNotExist(err) {
		t.Errorf("a skipped step has an artifact: %v", err)
	}
	// Plain output: timestamped lines prefixed by the step name; summary table.
	if !regexp.MustCompile(`(?m)^\d\d:\d\d:\d\d\.\d{3} \[hello\] hello-from-ci$`).MatchString(r.stdout) {
		t.Errorf("no plain timestamped output line for hello")
	}
	if !regexp.MustCompile(`(?m)^STEP\s+STATUS\s+DURATION\s+CPU\s+PEAK MEM\s+UNENFORCED$`).MatchString(r.stdout) ||
		!regexp.MustCompile(`(?m)^broken\s+failed\s+\S+`).MatchString(r.stdout) {
		t.Errorf("no summary table in stdout")
	}
	tests, failures, errs, skipped, cases := junitCounts(t, r.junit)
	if tests != 4 || failures != 1 || errs != 0 || skipped != 2 {
		t.Errorf("junit counts tests=%d failures=%d errors=%d skipped=%d, want 4 1 0 2", tests, failures, errs, skipped)
	}
	if cases["hello"] != "pass" || cases["broken"] != "failure" || cases["later"] != "skipped" {
		t.Errorf("junit cases %v", cases)
	}
}

func TestE2EFailFastVersusKeepGoing(t *testing.T) {
	requireSandbox(t)
	steps := `  - name: first
    sh: exit 1
  - name: second
    sh: echo independent
  - name: third
    sh: echo needs-first
    needs: [first]
`
	d := writeJob(t, "ff", steps)
	r := runCI(t, d, "--jobs", "1")
	if r.exit != 1 {
		t.Errorf("fail-fast: exit %d, want 1", r.exit)
	}
	r.wantStatus(t, map[string]Status{"first": StatusFailed, "second": StatusSkipped, "third": StatusSkipped})
	if m := r.step(t, "second").Message; !strings.Contains(m, "fail-fast") {
		t.Errorf("second skipped with %q, want a fail-fast reason", m)
	}

	r = runCI(t, d, "--jobs", "1", "--keep-going")
	if r.exit != 1 {
		t.Errorf("keep-going: exit %d, want 1", r.exit)
	}
	r.wantStatus(t, map[string]Status{"first": StatusFailed, "second": StatusPassed, "third": StatusSkipped})
	if !r.report.Options.KeepGoing {
		t.Error("report options.keep_going is false")
	}
	_, failures, _, skipped, _ := junitCounts(t, r.junit)
	if failures != 1 || skipped != 1 {
		t.Errorf("keep-going junit failures=%d skipped=%d, want 1 1", failures, skipped)
	}
}

func TestE2EContinueOnError(t *testing.T) {
	requireSandbox(t)
	d := writeJob(t, "coe", `  - name: flaky
    sh: exit 7
    continue_on_error: true
  - name: after
    sh: echo still-runs
    needs: [flaky]
`)
	r := runCI(t, d, "--jobs", "1")
	if r.exit != 0 {
		t.Errorf("exit %d, want 0 (the failing step may fail)", r.exit)
	}
	r.wantStatus(t, map[string]Status{"flaky": StatusFailed, "after": StatusPassed})
	if f := r.step(t, "flaky"); f.Required || !f.ContinueOnError {
		t.Errorf("flaky: required=%v continue_on_error=%v", f.Required, f.ContinueOnError)
	}
	if r.report.Status != "passed" {
		t.Errorf("report status %s, want passed", r.report.Status)
	}
}

// processWithCmdline returns the pids whose command line contains marker.
func processWithCmdline(marker string) []string {
	var pids []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(b, []byte(marker)) {
			pids = append(pids, e.Name())
		}
	}
	return pids
}

func TestE2ETimeoutKillsTree(t *testing.T) {
	requireSandbox(t)
	marker := fmt.Sprintf("1000.%09d", rand.IntN(1e9))
	d := writeJob(t, "to", fmt.Sprintf(`  - name: hang
    sh: "sleep %s & sleep %s & echo started; wait"
    timeout: 1s
`, marker, marker))
	// Without the policy's timeout the step's 1s is the only wall-clock limit, so a
	// timed-out step was stopped by it.
	src, err := os.ReadFile(d.file)
	if err != nil {
		t.Fatal(err)
	}
	noTimeout := strings.Replace(string(src), "limits: {timeout: 60s, output: 1MiB}", "limits: {output: 1MiB}", 1)
	if noTimeout == string(src) {
		t.Fatal("writeJob's policy limits changed; update this test")
	}
	if err := os.WriteFile(d.file, []byte(noTimeout), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runCI(t, d)
	if r.exit != 1 {
		t.Errorf("exit %d, want 1", r.exit)
	}
	h := r.step(t, "hang")
	if h.Status != StatusTimedOut || !h.TimedOut {
		t.Errorf("hang: status %s timed_out %v (%s)", h.Status, h.TimedOut, h.Message)
	}
	if !strings.Contains(h.Message, "(step limit 1s)") {
		t.Errorf("hang: message %q does not name the step limit", h.Message)
	}
	// The step's whole tree is gone (give the kernel a moment to reap).
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := processWithCmdline("sleep " + marker)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("processes of the timed-out step survive: pids %v", left)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if b, _ := os.ReadFile(filepath.Join(r.artifacts, "to", "hang.stdout")); string(b) != "started\n" {
		t.Errorf("hang.stdout = %q", b)
	}
	_, failures, _, _, cases := junitCounts(t, r.junit)
	if failures != 1 || cases["hang"] != "failure" {
		t.Errorf("junit: failures=%d cases=%v", failures, cases)
	}
}

func TestE2EDenied(t *testing.T) {
	requireSandbox(t)
	d := writeJob(t, "deny", `  - name: write-outside
    sh: echo x > "$0"/escaped
    continue_on_error: true
  - name: not-a-tool
    run: [curl, https://example.com]
  - name: write-inside
    sh: echo ok > inside && cat inside
`)
	// $0 in sh -c is the first argument after the script; pass the outside dir that way.
	b, _ := os.ReadFile(d.file)
	src := strings.Replace(string(b), `sh: echo x > "$0"/escaped`, fmt.Sprintf(`sh: echo x > %s/escaped`, d.outside), 1)
	if err := os.WriteFile(d.file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runCI(t, d, "--keep-going")
	if r.exit != 1 {
		t.Errorf("exit %d, want 1", r.exit)
	}
	r.wantStatus(t, map[string]Status{"write-outside": StatusFailed, "not-a-tool": StatusDenied, "write-inside": StatusPassed})
	// Landlock refused the write: EACCES from the shell, and no file.
	if _, err := os.Stat(filepath.Join(d.outside, "escaped")); !os.IsNotExist(err) {
		t.Errorf("the step wrote outside the workspace: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(r.artifacts, "deny", "write-outside.stderr")); !bytes.Contains(b, []byte("Permission denied")) {
		t.Errorf("write-outside.stderr = %q, want Permission denied", b)
	}
	if b, _ := os.ReadFile(filepath.Join(d.ws, "inside")); string(b) != "ok\n" {
		t.Errorf("write inside the workspace: %q", b)
	}
	nt := r.step(t, "not-a-tool")
	if nt.Denied == nil || nt.Denied.Rule != "tools" || nt.Denied.Op != "launch" || !strings.Contains(nt.Message, "rule tools") {
		t.Errorf("not-a-tool: denied %+v message %q", nt.Denied, nt.Message)
	}
	if !strings.Contains(r.stdout, `[not-a-tool] denied: rule tools: launch "curl"`) {
		t.Errorf("the denial's rule is not in the output")
	}
	tests, failures, errs, skipped, cases := junitCounts(t, r.junit)
	if tests != 3 || failures != 1 || errs != 1 || skipped != 0 || cases["not-a-tool"] != "error" {
		t.Errorf("junit tests=%d failures=%d errors=%d skipped=%d cases=%v", tests, failures, errs, skipped, cases)
	}
}

func TestE2EParallel(t *testing.T) {
	requireSandbox(t)
	d := writeJob(t, "par", `  - name: a
    sh: sleep 1
  - name: b
    sh: sleep 1
  - name: c
    sh: echo joined
    needs: [a, b]
`)
	overlap := func(r *ciRun) bool {
		a, b := r.step(t, "a"), r.step(t, "b")
		if a.StartedAt == nil || b.StartedAt == nil {
			t.Fatal("a step did not start")
		}
		return a.StartedAt.Before(*b.FinishedAt) && b.StartedAt.Before(*a.FinishedAt)
	}
	r := runCI(t, d, "--jobs", "2")
	r.wantStatus(t, map[string]Status{"a": StatusPassed, "b": StatusPassed, "c": StatusPassed})
	if !overlap(r) {
		t.Errorf("with --jobs 2 the independent steps did not overlap: a %v–%v, b %v–%v",
			r.step(t, "a").StartedAt, r.step(t, "a").FinishedAt, r.step(t, "b").StartedAt, r.step(t, "b").FinishedAt)
	}
	c := r.step(t, "c")
	for _, n := range []string{"a", "b"} {
		if s := r.step(t, n); c.StartedAt.Before(*s.FinishedAt) {
			t.Errorf("c started before its need %s finished", n)
		}
	}
	if r.report.Options.Jobs != 2 {
		t.Errorf("options.jobs %d", r.report.Options.Jobs)
	}
	r = runCI(t, d, "--jobs", "1")
	if overlap(r) {
		t.Errorf("with --jobs 1 the steps overlapped")
	}
}

func TestE2EMalformedJob(t *testing.T) {
	requireSandbox(t)
	d := writeJob(t, "bad", `  - name: a
    run: echo hi
    timeout: 5
  - name: b
    sh: "true"
    needz: [a]
`)
	r := runCI(t, d)
	if r.exit != 2 {
		t.Errorf("exit %d, want 2", r.exit)
	}
	for _, want := range []string{
		"job.yaml:18:10: steps[0].run: expected an argv list",
		"job.yaml:19:14: steps[0].timeout: 5 is not a duration",
		`job.yaml:22:5: steps[1].needz: unknown field "needz" (did you mean "needs"?)`,
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q", want)
		}
	}
	if r.report != nil || r.junit != nil {
		t.Error("reports were written for a job that did not run")
	}
	// A YAML syntax error names the line and column of the offending bracket.
	if err := os.WriteFile(d.file, []byte("name: x\npolicy: p.yaml\nsteps:\n  - name: [a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = runCI(t, d)
	if r.exit != 2 || !strings.Contains(r.stderr, "job.yaml:4:11: YAML syntax error: did not find expected ',' or ']': the '[' here is never closed") {
		t.Errorf("syntax error: exit %d stderr %q", r.exit, r.stderr)
	}
	// An inline policy's errors point at the job file's lines.
	d = writeJob(t, "badpol", "  - name: a\n    run: [echo, hi]\n")
	b, _ := os.ReadFile(d.file)
	if err := os.WriteFile(d.file, bytes.Replace(b, []byte("    echo: {}"), []byte("    echo: {hot: maybe}"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	r = runCI(t, d)
	if r.exit != 2 || !strings.Contains(r.stderr, "job.yaml:15:17: policy.tools.echo.hot: expected true or false") {
		t.Errorf("inline policy error: exit %d stderr %q", r.exit, r.stderr)
	}
}

func TestE2EUsage(t *testing.T) {
	requireSandbox(t)
	for _, args := range [][]string{{"ci"}, {"ci", "--jobs", "0", "x.yaml"}, {"ci", "a.yaml", "b.yaml"}, {"ci", "--nope", "x.yaml"}} {
		cmd := exec.Command(testutil.AgentexecBinary(t), args...)
		out, err := cmd.CombinedOutput()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 2 {
			t.Errorf("agentexec %v: %v, want exit 2\n%s", args, err, out)
		}
	}
	cmd := exec.Command(testutil.AgentexecBinary(t), "ci", filepath.Join(t.TempDir(), "missing.yaml"))
	if err := cmd.Run(); err == nil || err.(*exec.ExitError).ExitCode() != 2 {
		t.Errorf("missing job file: %v, want exit 2", err)
	}
}

// TestE2EExampleJobs runs the example jobs in configs/jobs (the Go project build
// among them) and expects them to pass.
func TestE2EExampleJobs(t *testing.T) {
	requireSandbox(t)
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	jobs, _ := filepath.Glob(filepath.Join(root, "configs", "jobs", "*.yaml"))
	if len(jobs) == 0 {
		t.Fatal("no example jobs in configs/jobs")
	}
	for _, j := range jobs {
		t.Run(filepath.Base(j), func(t *testing.T) {
			dir := t.TempDir()
			want := 0
			if strings.HasSuffix(j, "-fails.yaml") {
				want = 1
			}
			args := []string{"ci", "--artifacts", filepath.Join(dir, "art"), "--report", filepath.Join(dir, "r.json")}
			if filepath.Base(j) == "go-project.yaml" {
				// Build a copy: the job writes bin/ into its workspace.
				ws := filepath.Join(dir, "ci-project")
				if err := os.CopyFS(ws, os.DirFS(filepath.Join(root, "examples", "ci-project"))); err != nil {
					t.Fatal(err)
				}
				os.RemoveAll(filepath.Join(ws, "bin"))
				args = append(args, "--workspace", ws)
				defer func() {
					if _, err := os.Stat(filepath.Join(ws, "bin", "wordcount")); err != nil {
						t.Errorf("the build step left no binary in the workspace: %v", err)
					}
				}()
			}
			cmd := exec.Command(testutil.AgentexecBinary(t), append(args, j)...)
			cmd.Env = append(os.Environ(), "CI=true")
			out, err := cmd.CombinedOutput()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != want {
				t.Errorf("exit %d, want %d\n%s", code, want, out)
			}
			b, err := os.ReadFile(filepath.Join(dir, "r.json"))
			if err != nil {
				t.Fatal(err)
			}
			validateReportSchema(t, b)
		})
	}
}

func TestE2EEnvCwdOutputCap(t *testing.T) {
	requireSandbox(t)
	d := writeJob(t, "env", `  - name: mkdir
    sh: mkdir -p sub/dir
  - name: greet
    needs: [mkdir]
    sh: echo "$GREETING from $(pwd)"; echo "secret=[$SECRET_TOKEN]"
    cwd: sub/dir
  - name: secret
    sh: echo "$SECRET_TOKEN"
    env: {SECRET_TOKEN: hunter2}
    continue_on_error: true
  - name: chatty
    sh: yes 0123456789 | head -c 100000
    limits: {output: 1KiB}
`)
	b, _ := os.ReadFile(d.file)
	if err := os.WriteFile(d.file, bytes.Replace(b, []byte("steps:\n"), []byte("env: {GREETING: hi}\nsteps:\n"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SECRET_TOKEN", "from-the-runner")
	r := runCI(t, d, "--jobs", "1")
	r.wantStatus(t, map[string]Status{"mkdir": StatusPassed, "greet": StatusPassed, "secret": StatusDenied, "chatty": StatusPassed})
	want := fmt.Sprintf("hi from %s\nsecret=[]\n", filepath.Join(d.ws, "sub", "dir"))
	if b, _ := os.ReadFile(filepath.Join(r.artifacts, "env", "greet.stdout")); string(b) != want {
		t.Errorf("greet.stdout = %q, want %q (job env in, runner env out, cwd)", b, want)
	}
	if s := r.step(t, "secret"); s.Denied == nil || s.Denied.Rule != "tools.sh.env.allow" || s.Denied.Object != "SECRET_TOKEN" {
		t.Errorf("secret: %+v", s.Denied)
	}
	c := r.step(t, "chatty")
	if !c.StdoutTruncated || c.StdoutBytes != 1024 || !strings.Contains(c.Message, "truncated") {
		t.Errorf("chatty: truncated=%v bytes=%d message %q", c.StdoutTruncated, c.StdoutBytes, c.Message)
	}
	if st, err := os.Stat(filepath.Join(r.artifacts, "env", "chatty.stdout")); err != nil || st.Size() != 1024 {
		t.Errorf("chatty.stdout: %v %v, want 1024 bytes", st, err)
	}
}

// TestE2ERuntimeStartFailure: a policy the host cannot honour (kernel templates
// required on a kernel without them) fails every step as error, with reports.
func TestE2ERuntimeStartFailure(t *testing.T) {
	requireSandbox(t)
	if _, err := os.Stat("/proc/kallsyms"); err == nil {
		b, _ := os.ReadFile("/proc/kallsyms")
		if bytes.Contains(b, []byte("sys_spawn_template_create")) {
			t.Skip("this kernel has spawn_template; kernel_templates: require would start")
		}
	}
	d := writeJob(t, "nostart", "  - name: a\n    run: [echo, hi]\n  - name: b\n    run: [echo, hi]\n")
	b, _ := os.ReadFile(d.file)
	if err := os.WriteFile(d.file, bytes.Replace(b, []byte("  shell: sh\n"), []byte("  shell: sh\n  kernel_templates: require\n"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runCI(t, d)
	if r.exit != 1 || !strings.Contains(r.stderr, "start the runtime") {
		t.Errorf("exit %d, stderr %q", r.exit, r.stderr)
	}
	r.wantStatus(t, map[string]Status{"a": StatusError, "b": StatusError})
	if _, _, errs, _, _ := junitCounts(t, r.junit); errs != 2 {
		t.Errorf("junit errors %d, want 2", errs)
	}
}
