package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentexec/agentexec/internal/testutil"
)

// runPolicy is a policy with sh and a few tools for TestOneShotSameAsRuntime.
const runPolicy = `version: 1
workspace: ${WORKSPACE}
path: [/usr/local/bin, /usr/bin, /bin]
defaults:
  filesystem:
    read: [/usr, /lib, /lib64, /bin, /etc/ld.so.cache, /etc/passwd, /etc/group, /dev/null, "${WORKSPACE}"]
    write: [/dev/null]
    exec: [/usr, /bin, /lib, /lib64, "${WORKSPACE}/bin"]
  limits: {timeout: 60s, output: 16}
  enforcement: {landlock: require, cgroup: best_effort}
tools:
  sh: {}
  cat: {}
  sleep: {}
  badinterp: {exec: "${WORKSPACE}/bin/badinterp"}
`

// oneShotWorkspace is a workspace the tool identity can reach, with a.txt, a
// script whose interpreter does not exist and the policy above.
func oneShotWorkspace(t *testing.T) (ws, pol string) {
	t.Helper()
	ws = t.TempDir()
	for _, d := range []string{filepath.Dir(ws), ws} {
		os.Chmod(d, 0o755)
	}
	os.WriteFile(filepath.Join(ws, "a.txt"), []byte("hello\n"), 0o644)
	os.Mkdir(filepath.Join(ws, "bin"), 0o755)
	os.WriteFile(filepath.Join(ws, "bin", "badinterp"), []byte("#!/nonexistent/interpreter\n"), 0o755)
	pol = filepath.Join(ws, "policy.yaml")
	os.WriteFile(pol, []byte(runPolicy), 0o644)
	return ws, pol
}

type runOutcome struct {
	stdout, stderr string
	code           int
}

func runBin(t *testing.T, bin, dir, stdin string, env []string, args ...string) runOutcome {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code := 0
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return runOutcome{o.String(), e.String(), code}
}

var elapsedRE = regexp.MustCompile(`after [0-9.]+m?s`)

// `agentexec run` prints the same output and exits with the same status on the
// one-shot path as on the Runtime path (AGENTEXEC_RUN_NO_FAST=1), case by case,
// and the one-shot path is the one taken (AGENTEXEC_RUN_DEBUG=1 would name the
// reason of a fallback).
func TestOneShotSameAsRuntime(t *testing.T) {
	testutil.RequireLandlockABI(t, 6)
	testutil.RequireCgroup2(t)
	bin := testutil.AgentexecBinary(t)
	ws, pol := oneShotWorkspace(t)
	cases := []struct {
		name  string
		stdin string
		args  []string
		code  int
		fast  bool // the one-shot path applies (else both take the Runtime path)
	}{
		{"true", "", []string{"run", "--", "true"}, 0, true},
		{"cat", "", []string{"run", "--", "cat", "a.txt"}, 0, true},
		{"stdin", "from stdin\n", []string{"run", "--", "cat"}, 0, true},
		{"grep no match", "", []string{"run", "-q", "--", "grep", "nomatch", "a.txt"}, 1, true},
		{"missing file", "", []string{"run", "-q", "--", "cat", "missing.txt"}, 1, true},
		{"landlock denial", "", []string{"run", "-q", "--", "cat", "/etc/shadow"}, 1, true},
		{"refused tool", "", []string{"run", "--", "rm", "a.txt"}, 125, false},
		{"unknown tool", "", []string{"run", "--", "nosuchtool"}, 125, false},
		{"json", "", []string{"run", "-q", "--json", "--", "cat", "a.txt"}, 0, false},
		{"exit 7", "", []string{"run", "--policy", pol, "--", "sh", "-c", "exit 7"}, 7, true},
		{"signal", "", []string{"run", "--policy", pol, "-q", "--", "sh", "-c", "kill -9 $$"}, 128 + 9, true},
		{"timeout", "", []string{"run", "--policy", pol, "-q", "--timeout", "300ms", "--", "sh", "-c", "sleep 30"}, 124, true},
		{"exec not found", "", []string{"run", "--policy", pol, "-q", "--", "badinterp"}, 127, true},
		{"output cap", "", []string{"run", "--policy", pol, "-q", "--", "sh", "-c", "echo 0123456789abcdefXYZ; echo e >&2"}, 0, true},
		{"no-fast flag", "", []string{"run", "--no-fast", "-q", "--", "true"}, 0, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fast := runBin(t, bin, ws, c.stdin, []string{"AGENTEXEC_RUN_DEBUG=1", "AGENTEXEC_ONESHOT_TRACE=1"}, c.args...)
			slow := runBin(t, bin, ws, c.stdin, []string{"AGENTEXEC_RUN_NO_FAST=1"}, c.args...)
			took := strings.Contains(fast.stderr, "oneshot: fork+exec")
			if c.fast && !took {
				if testutil.Strict() && os.Geteuid() == 0 {
					t.Fatalf("the one-shot path was not taken: %q", fast.stderr)
				}
				t.Skipf("the one-shot path does not apply on this host: %q", fast.stderr)
			}
			if !c.fast && took {
				t.Errorf("the one-shot path was taken: %q", fast.stderr)
			}
			fast.stderr = elapsedRE.ReplaceAllString(dropDebug(fast.stderr), "after T")
			slow.stderr = elapsedRE.ReplaceAllString(slow.stderr, "after T")
			if c.name == "json" {
				// Durations and cgroup names differ from run to run: the same
				// result status and output is what counts.
				for _, o := range []*runOutcome{&fast, &slow} {
					o.stdout = regexp.MustCompile(`"status":"[a-z]+".*"stdout":"[^"]*"`).FindString(o.stdout)
				}
			}
			if fast != slow {
				t.Errorf("one-shot %+v\nRuntime  %+v", fast, slow)
			}
			if fast.code != c.code {
				t.Errorf("exit %d, want %d (%+v)", fast.code, c.code, fast)
			}
		})
	}
}

// dropDebug removes the lines of AGENTEXEC_RUN_DEBUG and AGENTEXEC_ONESHOT_TRACE.
func dropDebug(s string) string {
	var keep []string
	for _, l := range strings.SplitAfter(s, "\n") {
		if !strings.Contains(l, "agentexec run: Runtime path:") && !strings.HasPrefix(l, "oneshot: ") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "")
}

// When the supervisor itself is SIGKILLed the tool dies with it (PR_SET_PDEATHSIG
// from the forking thread). What the tool started in the background survives in
// the tool's cgroup until the next agentexec start on this host removes stale
// groups (docs/cli.md says so): the kernel kills nothing else on a process's
// death. Control: without the fast path's Pdeathsig the same tool survives its
// parent's SIGKILL.
func TestOneShotSupervisorKilled(t *testing.T) {
	testutil.RequireLandlockABI(t, 6)
	testutil.RequireCgroup2(t)
	bin := testutil.AgentexecBinary(t)
	ws, pol := oneShotWorkspace(t)
	// Ten times: which of the supervisor's threads exits last when it is killed
	// varies, and the kernel sends Pdeathsig with that thread's credentials (a
	// forking thread without CAP_KILL let a tool of another uid survive in about
	// one kill of eight).
	for i := 0; i < 10 && !t.Failed(); i++ {
		supervisorKilled(t, bin, ws, pol)
	}
}

func supervisorKilled(t *testing.T, bin, ws, pol string) {
	marker := testutil.SleepMarker()
	cmd := exec.Command(bin, "run", "-q", "--policy", pol, "--", "sh", "-c", "exec sleep "+marker)
	cmd.Dir = ws
	cmd.Env = append(os.Environ(), "AGENTEXEC_RUN_DEBUG=1")
	var e bytes.Buffer
	cmd.Stderr = &e
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if !waitFor(func() bool { return len(sleeps(marker)) > 0 }) {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("the tool never started: %q", e.String())
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if strings.Contains(e.String(), "Runtime path:") {
		killMarked(marker)
		t.Skipf("the one-shot path does not apply on this host: %q", e.String())
	}
	if !waitFor(func() bool { return len(sleeps(marker)) == 0 }) {
		var st []string
		for _, pid := range sleeps(marker) {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
			for _, l := range strings.Split(string(b), "\n") {
				if strings.HasPrefix(l, "PPid:") || strings.HasPrefix(l, "State:") || strings.HasPrefix(l, "Uid:") {
					st = append(st, fmt.Sprintf("%d %s", pid, l))
				}
			}
		}
		killMarked(marker)
		t.Errorf("the tool outlived its SIGKILLed supervisor: %v", st)
	}
}

// TestOneShotSupervisorKilledControl: a plain sh parent SIGKILLed leaves its child
// running, so TestOneShotSupervisorKilled's tool died of the supervisor's death.
func TestOneShotSupervisorKilledControl(t *testing.T) {
	// Control: a plain sh parent SIGKILLed leaves its child running.
	control := testutil.SleepMarker()
	ctl := exec.Command("sh", "-c", "sleep "+control+"; :")
	if err := ctl.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(func() bool { return len(sleeps(control)) > 0 })
	ctl.Process.Signal(syscall.SIGKILL)
	ctl.Wait()
	defer killMarked(control)
	if len(sleeps(control)) == 0 {
		t.Errorf("control: the child of a SIGKILLed plain parent died too, so the test proves nothing")
	}
}

// waitFor polls cond for up to 20 s (a bound for a broken case, not a timing
// assertion).
func waitFor(cond func() bool) bool {
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return false
}

// sleeps lists the live (not zombie) sleep processes with marker in their
// command line (the shells and the supervisor that name it are not counted).
func sleeps(marker string) []int {
	var live []int
	for _, pid := range testutil.ProcsWith(marker) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		if !bytes.Contains(b, []byte("(sleep)")) || i < 0 || i+2 >= len(b) || b[i+2] == 'Z' {
			continue
		}
		live = append(live, pid)
	}
	return live
}

func killMarked(marker string) {
	for _, pid := range testutil.ProcsWith(marker) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}
