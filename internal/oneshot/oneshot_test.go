package oneshot_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/internal/oneshot"
	"github.com/agentexec/agentexec/internal/spawner"
	"github.com/agentexec/agentexec/internal/testutil"
	"github.com/agentexec/agentexec/policy"
)

var hooks = oneshot.Hooks{ToolIdentity: agentexec.OneShotToolIdentity, UsesTmpDir: agentexec.OneShotUsesTmpDir,
	UnixSocketGap: agentexec.OneShotUnixSocketGap}

// workspace makes a workspace the tool identity of a root supervisor can reach
// (t.TempDir's directories are 0700) with out/ writable by anyone.
func workspace(t *testing.T) string {
	t.Helper()
	ws := t.TempDir()
	for _, d := range []string{filepath.Dir(ws), ws} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(ws, "out")
	if err := os.Mkdir(out, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(out, 0o777); err != nil {
		t.Fatal(err)
	}
	return ws
}

// loadPolicy is a policy with sh and cat reading /usr, /proc and the workspace and
// writing ws/out; extra is added under defaults: and tools may replace the tools.
func loadPolicy(t *testing.T, ws, limits, extra, tools string) *policy.Policy {
	t.Helper()
	if limits == "" {
		limits = "{timeout: 60s}"
	}
	if tools == "" {
		tools = "  sh: {}\n  cat: {}\n"
	}
	y := fmt.Sprintf(`version: 1
workspace: ${WORKSPACE}
path: [/usr/local/bin, /usr/bin, /bin]
defaults:
  filesystem:
    read: [/usr, /lib, /lib64, /bin, /etc/ld.so.cache, /etc/passwd, /etc/group, /etc/nsswitch.conf, /proc, /dev/null, "${WORKSPACE}"]
    write: [/dev/null, "${WORKSPACE}/out"]
    exec: [/usr, /bin, /lib, /lib64]
  limits: %s
  enforcement: {landlock: require, cgroup: best_effort}
%s
tools:
%s`, limits, extra, tools)
	p, err := policy.LoadBytes("oneshot_test.yaml", []byte(y), policy.Options{Workspace: ws})
	if err != nil {
		t.Fatalf("policy: %v\n%s", err, y)
	}
	return p
}

// prepare returns the fast path's launch, skipping (failing with
// AGENTEXEC_STRICT=1 as root) when this host needs the Runtime path.
func prepare(t *testing.T, req oneshot.Request) *oneshot.Launch {
	t.Helper()
	testutil.RequireLandlockABI(t, 6)
	testutil.RequireCgroup2(t)
	req.Hooks = hooks
	l, err := oneshot.Prepare(req)
	if errors.Is(err, oneshot.ErrFallback) {
		if testutil.Strict() && os.Geteuid() == 0 {
			t.Fatalf("AGENTEXEC_STRICT=1: the fast path must apply on the CI host: %v", err)
		}
		t.Skipf("the fast path does not apply on this host: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// result of one launch with stdout and stderr in files.
type result struct {
	oneshot.Result
	stdout, stderr string
}

func launch(t *testing.T, p *policy.Policy, timeout time.Duration, stdin *os.File, args ...string) result {
	t.Helper()
	return launchReq(t, oneshot.Request{Policy: p, Tool: args[0], Args: args[1:], Timeout: timeout, Stdin: stdin})
}

// launchReq runs req (Policy, Tool, Args, Timeout, Stdin, WithoutCgroups) with its
// output in files.
func launchReq(t *testing.T, req oneshot.Request) result {
	t.Helper()
	stdin := req.Stdin
	dir := t.TempDir()
	out, _ := os.Create(filepath.Join(dir, "stdout"))
	errf, _ := os.Create(filepath.Join(dir, "stderr"))
	defer out.Close()
	defer errf.Close()
	if stdin == nil {
		stdin, _ = os.Open(os.DevNull)
		defer stdin.Close()
	}
	req.Stdin, req.Stdout, req.Stderr, req.Grace = stdin, out, errf, 100*time.Millisecond
	l := prepare(t, req)
	res, err := l.Run(context.Background())
	if err != nil {
		t.Fatalf("Run %s %v: %v", req.Tool, req.Args, err)
	}
	o, _ := os.ReadFile(out.Name())
	e, _ := os.ReadFile(errf.Name())
	return result{Result: res, stdout: string(o), stderr: string(e)}
}

// waitGone polls until no process has marker in its command line (false after
// 20 s: a bound for a broken kill, not a timing assertion).
func waitGone(marker string) bool {
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if len(alive(marker)) == 0 {
			return true
		}
	}
	return false
}

// alive lists the processes with marker in their command line that are not
// zombies.
func alive(marker string) []int {
	var live []int
	for _, pid := range testutil.ProcsWith(marker) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i > 0 && i+2 < len(s) && s[i+2] == 'Z' {
			continue
		}
		live = append(live, pid)
	}
	return live
}

// waitSleeper polls until a sleep process with marker runs (false after 10 s).
func waitSleeper(marker string) bool {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if len(testutil.SleepersWith(marker)) > 0 {
			return true
		}
	}
	return false
}

func killAll(marker string) {
	for _, pid := range testutil.ProcsWith(marker) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

func TestExitStatusAndSignal(t *testing.T) {
	ws := workspace(t)
	p := loadPolicy(t, ws, "", "", "")
	if r := launch(t, p, 0, nil, "sh", "-c", "echo out; echo err >&2; exit 7"); r.ExitCode != 7 || r.Signal != 0 || r.stdout != "out\n" || r.stderr != "err\n" {
		t.Errorf("exit 7: %+v", r)
	}
	if r := launch(t, p, 0, nil, "sh", "-c", "kill -TERM $$"); r.Signal != syscall.SIGTERM || r.ExitCode != -1 {
		t.Errorf("killed by SIGTERM: %+v", r)
	}
	if r := launch(t, p, 0, nil, "sh", "-c", "exit 0"); r.ExitCode != 0 || r.TimedOut {
		t.Errorf("exit 0: %+v", r)
	}
}

// The tool gets the caller's stdin and stdout themselves when they are neither a
// terminal nor capped (nothing is copied); with an output cap, stdout is a pipe
// (the control: the same probe sees the difference) and the cap holds.
func TestStdioInherited(t *testing.T) {
	ws := workspace(t)
	in := filepath.Join(t.TempDir(), "stdin")
	os.WriteFile(in, []byte("from-stdin\n"), 0o644)
	f, _ := os.Open(in)
	defer f.Close()
	probe := `readlink /proc/self/fd/0; readlink /proc/self/fd/1; cat`
	r := launch(t, loadPolicy(t, ws, "{timeout: 60s, output: unlimited}", "", ""), 0, f, "sh", "-c", probe)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 || lines[0] != in || !strings.HasSuffix(lines[1], "/stdout") || lines[2] != "from-stdin" {
		t.Errorf("uncapped: stdin and stdout not inherited: %q (%+v)", r.stdout, r)
	}
	f.Seek(0, 0)
	os.WriteFile(filepath.Join(ws, "big"), []byte(strings.Repeat("x", 300)), 0o644)
	r = launch(t, loadPolicy(t, ws, "{timeout: 60s, output: 100}", "", ""), 0, f, "sh", "-c", probe+"; cat big")
	if !strings.HasPrefix(r.stdout, in+"\npipe:[") || len(r.stdout) != 100 || r.StdoutDropped == 0 {
		t.Errorf("capped at 100: stdout %q (%d bytes), dropped %d", r.stdout, len(r.stdout), r.StdoutDropped)
	}
}

// A timeout kills the tool's whole tree through its cgroup, which is not the
// supervisor's; the supervisor (this test process) goes on. Control: the same
// tree started without the fast path leaves the background sleep running.
func TestTimeoutKillsTree(t *testing.T) {
	t.Run("cgroup", func(t *testing.T) { timeoutKillsTree(t, false) })
	t.Run("no cgroup", func(t *testing.T) { timeoutKillsTree(t, true) })
}

func timeoutKillsTree(t *testing.T, noCgroup bool) {
	ws := workspace(t)
	p := loadPolicy(t, ws, "", "", "  sh: {}\n  sleep: {}\n")
	marker := testutil.SleepMarker()
	// A background sleep in the tool's process group, and one in a session of its
	// own whose parent dies first (reparented: found without a cgroup only because
	// the supervisor is a subreaper).
	script := "sleep " + marker + " & sh -c 'setsid sleep " + marker + " & exit 0'; cat /proc/self/cgroup; sleep " + marker
	r := launchReq(t, oneshot.Request{Policy: p, Tool: "sh", Args: []string{"-c", script}, Timeout: 300 * time.Millisecond, WithoutCgroups: noCgroup})
	if !r.TimedOut {
		t.Errorf("not timed out: %+v", r)
	}
	if !waitGone(marker) {
		killAll(marker)
		t.Errorf("the tool's tree outlived its timeout")
	}
	if noCgroup {
		if strings.Contains(strings.Join(r.Layers, " "), "cgroup") || len(r.Unenforced) != 0 && !strings.HasPrefix(r.Unenforced[0], "cgroup: ") {
			t.Errorf("without a cgroup: layers %v, unenforced %v", r.Layers, r.Unenforced)
		}
		return
	}
	self, _ := os.ReadFile("/proc/self/cgroup")
	toolCG, ourCG := lastField(r.stdout), lastField(string(self))
	if toolCG == "" || toolCG == ourCG || strings.HasPrefix(ourCG+"/", toolCG+"/") {
		t.Errorf("tool cgroup %q, supervisor's %q: a kill of the tool's group must not reach the supervisor", toolCG, ourCG)
	}

	control := testutil.SleepMarker()
	cmd := exec.Command("sh", "-c", "sleep "+control+" & exit 0")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	defer killAll(control)
	// The background child may still be in its execve of sleep, when its command
	// line reads empty: wait for the sleep itself (a dead one never shows).
	if !waitSleeper(control) {
		t.Errorf("control: the background sleep of a plain launch died, so the test proves nothing")
	}
}

func lastField(cgroupFile string) string {
	lines := strings.Split(strings.TrimSpace(cgroupFile), "\n")
	for _, l := range lines {
		if strings.HasPrefix(l, "0::") {
			return strings.TrimPrefix(l, "0::")
		}
	}
	return ""
}

// What the tool leaves running when it exits is killed before Run returns.
func TestLeftoversKilled(t *testing.T) {
	t.Run("cgroup", func(t *testing.T) { leftoversKilled(t, false) })
	t.Run("no cgroup", func(t *testing.T) { leftoversKilled(t, true) })
}

func leftoversKilled(t *testing.T, noCgroup bool) {
	ws := workspace(t)
	p := loadPolicy(t, ws, "", "", "  sh: {}\n  sleep: {}\n")
	marker := testutil.SleepMarker()
	script := "sleep " + marker + " >/dev/null 2>&1 & setsid sleep " + marker + " >/dev/null 2>&1 & sh -c 'sh -c \"sleep " + marker + "\" >/dev/null 2>&1 & exit 0'; exit 3"
	r := launchReq(t, oneshot.Request{Policy: p, Tool: "sh", Args: []string{"-c", script}, WithoutCgroups: noCgroup})
	if r.ExitCode != 3 {
		t.Errorf("exit %+v", r)
	}
	if live := alive(marker); len(live) > 0 {
		killAll(marker)
		t.Errorf("processes the tool left are alive after Run: %v", live)
	}
}

// A hostile tool can neither signal the supervisor nor read its memory or
// environment (ptrace access). Control: the same commands from a plain child of
// this process succeed.
func TestHostileToolCannotReachSupervisor(t *testing.T) {
	t.Run("own identity", func(t *testing.T) { hostile(t, "") })
	// As root, user: root keeps the tool at uid 0 (without capabilities), where
	// DAC no longer stands between it and the supervisor: the Landlock domain, the
	// seccomp filter and non-dumpable do.
	t.Run("uid 0", func(t *testing.T) {
		testutil.RequireRoot(t)
		hostile(t, "  user: root\n")
	})
}

func hostile(t *testing.T, extra string) {
	ws := workspace(t)
	p := loadPolicy(t, ws, "", extra, "")
	me := strconv.Itoa(os.Getpid())
	// (Only this process is ever aimed at: a kill(-1) here would, in the control,
	// reach every process of the user.)
	script := `kill -USR1 ` + me + ` 2>/dev/null; echo kill=$?
cat /proc/` + me + `/environ >/dev/null 2>&1; echo environ=$?; head -c1 /proc/` + me + `/mem >/dev/null 2>&1; echo mem=$?`
	got := make(chan os.Signal, 4)
	signal.Notify(got, syscall.SIGUSR1)
	defer signal.Stop(got)
	r := launch(t, p, 0, nil, "sh", "-c", script)
	for _, want := range []string{"kill=1", "environ=1", "mem=1"} {
		if !strings.Contains(r.stdout, want+"\n") {
			t.Errorf("hostile tool: want %s, got %q", want, r.stdout)
		}
	}
	// Control: a plain child of this process can signal it (the signal arrives)
	// and read its environment.
	out, err := exec.Command("sh", "-c", script).Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "kill=0") || !strings.Contains(string(out), "environ=0") {
		t.Errorf("control: a plain child could not reach this process either: %q", out)
	}
	select {
	case <-got:
	case <-time.After(20 * time.Second):
		t.Errorf("control: the plain child's SIGUSR1 never arrived")
	}
	select {
	case <-got:
		t.Errorf("a second SIGUSR1 arrived: the tool's kill got through")
	default:
	}
}

// Landlock: the tool reads only the policy's read roots and writes only its write
// roots. Controls: the same reads and writes inside the roots succeed.
func TestLandlockRulesEnforced(t *testing.T) {
	ws := workspace(t)
	outside := t.TempDir()
	os.Chmod(outside, 0o755)
	os.Chmod(filepath.Dir(outside), 0o755)
	secret := filepath.Join(outside, "secret")
	os.WriteFile(secret, []byte("s\n"), 0o644)
	inside := filepath.Join(ws, "inside")
	os.WriteFile(inside, []byte("i\n"), 0o644)
	p := loadPolicy(t, ws, "", "", "")
	script := fmt.Sprintf(`cat %s >/dev/null 2>&1; echo read-outside=$?; cat %s >/dev/null; echo read-inside=$?
echo x > %s/new 2>/dev/null; echo write-ws=$?; echo x > %s/out/new; echo write-out=$?`, secret, inside, ws, ws)
	r := launch(t, p, 0, nil, "sh", "-c", script)
	for _, want := range []string{"read-outside=1", "read-inside=0", "write-ws=2", "write-out=0"} {
		if !strings.Contains(r.stdout, want+"\n") {
			t.Errorf("want %s, got %q (stderr %q)", want, r.stdout, r.stderr)
		}
	}
	if _, err := os.Stat(filepath.Join(ws, "new")); err == nil {
		t.Errorf("the tool wrote outside its write roots")
	}
}

// A root supervisor's tool runs as the unprivileged tool identity, without
// capabilities. Control: a root-only file this process reads is refused to the
// tool by DAC (Landlock grants the workspace).
func TestToolIdentityAsRoot(t *testing.T) {
	testutil.RequireRoot(t)
	ws := workspace(t)
	rootOnly := filepath.Join(ws, "root-only")
	if err := os.WriteFile(rootOnly, []byte("r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(rootOnly); err != nil || string(b) != "r\n" {
		t.Fatalf("control: root cannot read its own file: %v", err)
	}
	p := loadPolicy(t, ws, "", "", "  sh: {}\n  id: {}\n")
	r := launch(t, p, 0, nil, "sh", "-c", "id -u; grep CapEff /proc/self/status; cat "+rootOnly+" >/dev/null 2>&1; echo root-only=$?; id -un 2>&1")
	lines := strings.Split(r.stdout, "\n")
	// The identity has an account in the tool's view, as under a Runtime
	// (spawner.AccountBinds); the host's /etc/passwd does not name it (the
	// control: there, the uid has no name).
	if !strings.Contains(r.stdout, "\n"+spawner.ToolAccountName+"\n") {
		t.Errorf("id -un did not print %s: %q", spawner.ToolAccountName, r.stdout)
	}
	if b, _ := os.ReadFile("/etc/passwd"); strings.Contains(string(b), ":"+lines[0]+":") {
		t.Errorf("the host's /etc/passwd names uid %s", lines[0])
	}
	uid, err := strconv.Atoi(lines[0])
	if err != nil || uid < agentexec.ToolIDBase || uid >= agentexec.ToolIDBase+agentexec.ToolIDCount {
		t.Errorf("tool uid %q, want one of [%d, %d)", lines[0], agentexec.ToolIDBase, agentexec.ToolIDBase+agentexec.ToolIDCount)
	}
	if !strings.Contains(r.stdout, "CapEff:\t0000000000000000") || !strings.Contains(r.stdout, "root-only=1") {
		t.Errorf("tool: %q", r.stdout)
	}
	if !strings.Contains(strings.Join(r.Layers, " "), fmt.Sprintf("tool-uid-%d", uid)) {
		t.Errorf("layers %v lack the tool identity", r.Layers)
	}
}

// A root supervisor keeps the repository metadata in a writable workspace
// read-only for the tool (in the tool's own mount namespace), and gives it a
// private ${TMPDIR} that is gone afterwards. Control: this process writes the same
// file, so only the protection refused the tool.
func TestProtectionAndTmpDirAsRoot(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireCommand(t, "git")
	ws := workspace(t)
	if out, err := exec.Command("git", "init", "-q", ws).CombinedOutput(); err != nil {
		t.Fatalf("git init: %v %s", err, out)
	}
	// user: root keeps uid 0 (without capabilities): a writable workspace then
	// needs no tool view.
	y := strings.Replace(string(mustPolicyText(t, ws)), `write: [/dev/null, "${WORKSPACE}/out"]`, `write: [/dev/null, "${WORKSPACE}", "${TMPDIR}"]`, 1)
	y = strings.Replace(y, `/dev/null, "${WORKSPACE}"]`, `/dev/null, "${WORKSPACE}", "${TMPDIR}"]`, 1)
	p2, err := policy.LoadBytes("t.yaml", []byte(y), policy.Options{Workspace: ws})
	if err != nil {
		t.Fatal(err)
	}
	r := launch(t, p2, 0, nil, "sh", "-c", `echo x >> .git/config 2>/dev/null; echo git-config=$?; echo x > new; echo ws=$?
echo $TMPDIR; echo t > "$TMPDIR/f" && echo tmp=ok`)
	lines := strings.Split(r.stdout, "\n")
	if len(lines) < 4 || lines[0] != "git-config=2" || lines[1] != "ws=0" || lines[3] != "tmp=ok" {
		t.Fatalf("tool: %q (stderr %q)", r.stdout, r.stderr)
	}
	if _, err := os.Stat(lines[2]); !errors.Is(err, os.ErrNotExist) || !strings.Contains(lines[2], "agentexec-tmp-") {
		t.Errorf("private TMPDIR %q still there after the launch (%v)", lines[2], err)
	}
	f, err := os.OpenFile(filepath.Join(ws, ".git", "config"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatalf("control: this process cannot write .git/config either: %v", err)
	}
	f.Close()
}

func mustPolicyText(t *testing.T, ws string) []byte {
	t.Helper()
	return []byte(`version: 1
workspace: ${WORKSPACE}
path: [/usr/local/bin, /usr/bin, /bin]
defaults:
  filesystem:
    read: [/usr, /lib, /lib64, /bin, /etc/ld.so.cache, /etc/passwd, /etc/group, /proc, /dev/null, "${WORKSPACE}"]
    write: [/dev/null, "${WORKSPACE}/out"]
    exec: [/usr, /bin, /lib, /lib64]
  limits: {timeout: 60s}
  enforcement: {landlock: require, cgroup: best_effort}
  user: root
tools:
  sh: {}
`)
}

// What the fast path does not do itself is left to the Runtime path, never done
// less well: each of these policies is refused with ErrFallback naming why.
func TestFallback(t *testing.T) {
	testutil.RequireLandlockABI(t, 6)
	ws := workspace(t)
	for _, c := range []struct{ name, extra, tools, want string }{
		{"egress", "", "  sh: {network: {allow: [example.com]}}\n", "egress"},
		{"kernel denials", "", "  sh: {}\n", "kernel_denials"},
		{"isolated network", "  network: {isolated: require}\n", "  sh: {}\n", "network isolated"},
	} {
		t.Run(c.name, func(t *testing.T) {
			y := string(mustPolicyText(t, ws))
			y = strings.Replace(y, "  user: root\n", c.extra, 1)
			y = strings.Replace(y, "tools:\n  sh: {}\n", "tools:\n"+c.tools, 1)
			if c.name == "kernel denials" {
				y = strings.Replace(y, "version: 1\n", "version: 1\nkernel_denials: on\n", 1)
			}
			p, err := policy.LoadBytes("t.yaml", []byte(y), policy.Options{Workspace: ws})
			if err != nil {
				t.Fatalf("%v\n%s", err, y)
			}
			_, err = oneshot.Prepare(oneshot.Request{Policy: p, Tool: "sh", Hooks: hooks})
			if !errors.Is(err, oneshot.ErrFallback) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Prepare: %v, want ErrFallback naming %q", err, c.want)
			}
		})
	}
	// Control: the same policy without any of them takes the fast path (or falls
	// back for a reason of the host, not of the policy).
	p, err := policy.LoadBytes("t.yaml", mustPolicyText(t, ws), policy.Options{Workspace: ws})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := oneshot.Prepare(oneshot.Request{Policy: p, Tool: "sh", Hooks: hooks}); err != nil {
		for _, w := range []string{"egress", "kernel_denials", "network isolated"} {
			if strings.Contains(err.Error(), w) {
				t.Errorf("control: %v", err)
			}
		}
	}
}

// The tool gets fds 0, 1 and 2 only, whatever its supervisor inherited without
// O_CLOEXEC. Control: a plain child of this process sees the leaked fd.
func TestInheritedFDsClosed(t *testing.T) {
	ws := workspace(t)
	fd, err := syscall.Open(filepath.Join(ws, "out"), syscall.O_RDONLY|syscall.O_DIRECTORY, 0) // no O_CLOEXEC
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	probe := fmt.Sprintf("test -e /proc/self/fd/%d && echo leaked || echo closed", fd)
	out, err := exec.Command("sh", "-c", probe).Output()
	if err != nil || strings.TrimSpace(string(out)) != "leaked" {
		t.Fatalf("control: a plain child does not see fd %d (%q, %v)", fd, out, err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0); err != nil { // still inheritable
		t.Fatal(err)
	}
	r := launch(t, loadPolicy(t, ws, "", "", ""), 0, nil, "sh", "-c", probe)
	if strings.TrimSpace(r.stdout) != "closed" {
		t.Errorf("the tool inherited fd %d: %q", fd, r.stdout)
	}
}
