package configs_test

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

	"github.com/agentexec/agentexec/configs"
	"github.com/agentexec/agentexec/internal/testutil"
	"github.com/agentexec/agentexec/policy"
	"github.com/landlock-lsm/go-landlock/landlock"
	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
)

// These tests check that the example policies' filesystem rules are enough for their
// tools to work, and keep out what they should, under a real Landlock ruleset. The
// ruleset is built here directly from each profile (read roots: read files and list
// directories; write roots: every filesystem right; exec roots: execute and read;
// rules on files keep only the file rights), in a subprocess, because Landlock
// cannot be undone. The runtime's own sandbox is tested in internal/spawner.

const helperEnv = "AGENTEXEC_CONFIGS_HELPER"

// helperRequest is what the parent test asks the subprocess to do.
type helperRequest struct {
	Config string
	Opts   policy.Options
	Tool   string
	Args   []string
}

// TestHelperLandlock is the subprocess: it restricts itself with the tool's profile
// and runs the tool, passing on its output and exit status.
func TestHelperLandlock(t *testing.T) {
	raw := os.Getenv(helperEnv)
	if raw == "" {
		t.Skip("helper process for TestConfigsUnderLandlock")
	}
	var req helperRequest
	if err := json.Unmarshal([]byte(raw), &req); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(200)
	}
	data, err := configs.FS.ReadFile(req.Config)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(200)
	}
	p, err := policy.LoadBytes(req.Config, data, req.Opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(200)
	}
	tool, ok := p.Tool(req.Tool)
	if !ok || tool.Path == "" {
		fmt.Fprintf(os.Stderr, "helper: tool %s unusable: %v\n", req.Tool, tool.ResolveError)
		os.Exit(201)
	}
	if err := restrict(tool.Profile); err != nil {
		fmt.Fprintln(os.Stderr, "helper: restrict:", err)
		os.Exit(200)
	}
	cmd := exec.Command(tool.Path, req.Args...)
	cmd.Dir = p.Workspace
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	for _, e := range tool.Env.Set {
		cmd.Env = append(cmd.Env, e.Name+"="+e.Value)
	}
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		os.Exit(ee.ExitCode())
	case err != nil:
		fmt.Fprintln(os.Stderr, "helper: run:", err)
		os.Exit(202)
	}
	os.Exit(0)
}

const fileRights = landlock.AccessFSSet(ll.AccessFSExecute | ll.AccessFSWriteFile | ll.AccessFSReadFile | ll.AccessFSTruncate | ll.AccessFSIoctlDev)

func restrict(pr *policy.Profile) error {
	read := landlock.AccessFSSet(ll.AccessFSReadFile | ll.AccessFSReadDir)
	exe := read | landlock.AccessFSSet(ll.AccessFSExecute)
	write := landlock.AccessFSSet(ll.AccessFSReadFile | ll.AccessFSReadDir | ll.AccessFSWriteFile | ll.AccessFSTruncate |
		ll.AccessFSRemoveDir | ll.AccessFSRemoveFile | ll.AccessFSMakeDir | ll.AccessFSMakeReg | ll.AccessFSMakeSym |
		ll.AccessFSMakeSock | ll.AccessFSMakeFifo | ll.AccessFSRefer)
	var rules []landlock.Rule
	add := func(paths []string, acc landlock.AccessFSSet) {
		for _, path := range paths {
			a := acc
			if fi, err := os.Stat(path); err == nil && !fi.IsDir() {
				a &= fileRights
			}
			rules = append(rules, landlock.PathAccess(a, path).IgnoreIfMissing())
		}
	}
	add(pr.FS.Read, read)
	add(pr.FS.Write, write)
	add(pr.FS.Exec, exe)
	return landlock.V5.BestEffort().RestrictPaths(rules...)
}

// run launches tool under its profile in a subprocess and returns its exit status
// and combined output.
func run(t *testing.T, req helperRequest) (int, string) {
	t.Helper()
	raw, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperLandlock$")
	cmd.Env = append(os.Environ(), helperEnv+"="+string(raw))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("helper: %v", err)
	}
	if code == 200 || code == 202 {
		t.Fatalf("helper failed: %s", out.String())
	}
	return code, out.String()
}

func gitRepo(t *testing.T, dir string) {
	t.Helper()
	for _, args := range [][]string{
		{"init", "-q", "."},
		{"add", "."},
		{"-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "first"},
	} {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
}

func TestConfigsUnderLandlock(t *testing.T) {
	testutil.RequireLandlockABI(t, 1)
	testutil.RequireCommand(t, "git")
	ws := t.TempDir()
	home := t.TempDir()
	tmp := t.TempDir()
	for _, d := range []string{".cache", "go"} {
		if err := os.MkdirAll(filepath.Join(home, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(ws, "hello.txt"), []byte("hello\nworld\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ws, "hello.c"), []byte("int main(void){return 0;}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gitRepo(t, ws)
	opts := policy.Options{Workspace: ws, Home: home, TmpDir: tmp}

	type tc struct {
		config, tool string
		args         []string
		ok           bool
		want         string // substring of the output
	}
	tests := []tc{
		{"default.yaml", "cat", []string{"hello.txt"}, true, "hello"},
		{"default.yaml", "ls", []string{"-l"}, true, "hello.txt"},
		{"default.yaml", "grep", []string{"-rn", "world", "."}, true, "hello.txt:2:world"},
		{"default.yaml", "git", []string{"log", "--oneline"}, true, "first"},
		{"default.yaml", "git", []string{"status", "--short"}, true, ""},
		{"default.yaml", "sed", []string{"-n", "2p", "hello.txt"}, true, "world"},
		{"default.yaml", "find", []string{".", "-name", "*.txt"}, true, "./hello.txt"},
		{"default.yaml", "wc", []string{"-l", "hello.txt"}, true, "2 hello.txt"},
		{"default.yaml", "cat", []string{"/etc/shadow"}, false, "Permission denied"},
		{"default.yaml", "ls", []string{home}, false, "Permission denied"},
		{"default.yaml", "sed", []string{"-n", "w copy.txt", "hello.txt"}, false, "Permission denied"},
		{"readonly.yaml", "cat", []string{"hello.txt"}, true, "hello"},
		{"readonly.yaml", "git", []string{"log", "--oneline"}, true, "first"},
		{"readonly.yaml", "cat", []string{"/etc/hosts"}, false, "Permission denied"},
		{"agent.yaml", "sed", []string{"-i", "s/world/there/", "hello.txt"}, true, ""},
		{"agent.yaml", "cat", []string{"hello.txt"}, true, "there"},
		{"agent.yaml", "git", []string{"status", "--short"}, true, "M hello.txt"},
		{"agent.yaml", "sh", []string{"-c", "echo made > made.txt && cat made.txt && echo t > \"$TMPDIR/t\" && cat \"$TMPDIR/t\""}, true, "made\nt"},
		{"agent.yaml", "sh", []string{"-c", "echo x > " + home + "/x"}, false, "Permission denied"},
		{"agent.yaml", "python3", []string{"-c", "import ssl, json; print(open('hello.txt').read().split()[1])"}, true, "there"},
		{"agent.yaml", "node", []string{"-e", "console.log(require('fs').readFileSync('hello.txt', 'utf8').length)"}, true, "12"},
		{"ci.yaml", "gcc", []string{"-o", "hello", "hello.c"}, true, ""},
		{"ci.yaml", "sh", []string{"-c", "./hello && echo ran"}, true, "ran"},
		{"ci.yaml", "go", []string{"env", "GOCACHE"}, true, home + "/.cache/go-build"},
		{"ci.yaml", "git", []string{"log", "--oneline"}, true, "first"},
		{"ci.yaml", "cat", []string{"/etc/ssl/private/ssl-cert-snakeoil.key"}, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.config+"/"+tt.tool+" "+strings.Join(tt.args, " "), func(t *testing.T) {
			code, out := run(t, helperRequest{Config: tt.config, Opts: opts, Tool: tt.tool, Args: tt.args})
			if code == 201 {
				testutil.SkipMissingCommand(t, tt.tool, "tool absent on this host: %s", strings.TrimSpace(out))
			}
			if (code == 0) != tt.ok || !strings.Contains(out, tt.want) {
				t.Errorf("exit %d (want success %v), output:\n%s\nwant it to contain %q", code, tt.ok, out, tt.want)
			}
		})
	}
}
