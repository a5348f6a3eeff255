package agentexec_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/internal/testutil"
	"github.com/agentexec/agentexec/policy"
)

// The test binary serves as the spawner, and as a tool (TestHelperProcess).
func TestMain(m *testing.M) {
	agentexec.ServeSpawner()
	if len(os.Args) > 2 && os.Args[1] == "-helper" {
		os.Exit(helperMain(os.Args[2], os.Args[3:]))
	}
	os.Exit(m.Run())
}

// helperMain is the test binary run as a sandboxed tool.
func helperMain(mode string, args []string) int {
	switch mode {
	case "cgroup":
		b, _ := os.ReadFile("/proc/self/cgroup")
		os.Stdout.Write(b)
	case "fds":
		// Raw syscalls only: the Go runtime's poller would add fds of its own.
		dfd, err := syscall.Open("/proc/self/fd", syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 3
		}
		buf := make([]byte, 4096)
		var names []string
		for {
			n, err := syscall.ReadDirent(dfd, buf)
			if err != nil || n == 0 {
				break
			}
			_, _, names = syscall.ParseDirent(buf[:n], -1, names)
		}
		var fds []string
		for _, n := range names {
			if n == strconv.Itoa(dfd) {
				continue
			}
			// The Go runtime's own poller fds, made by package initialisation of
			// this test binary before main.
			if l, _ := os.Readlink("/proc/self/fd/" + n); l == "anon_inode:[eventpoll]" || l == "anon_inode:[eventfd]" {
				continue
			}
			fds = append(fds, n)
		}
		fmt.Println(strings.Join(fds, " "))
	case "status":
		b, _ := os.ReadFile("/proc/self/status")
		os.Stdout.Write(b)
	case "kill":
		pid, _ := strconv.Atoi(args[0])
		if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
			fmt.Println("kill:", err)
			return 1
		}
		fmt.Println("kill: ok")
	case "ptrace":
		pid, _ := strconv.Atoi(args[0])
		runtime.LockOSThread()
		if err := syscall.PtraceAttach(pid); err != nil {
			fmt.Println("ptrace:", err)
			return 1
		}
		fmt.Println("ptrace: ok")
		syscall.PtraceDetach(pid)
	case "read":
		if _, err := os.ReadFile(args[0]); err != nil {
			fmt.Println("read:", err)
			return 1
		}
		fmt.Println("read: ok")
	case "write":
		if err := os.WriteFile(args[0], []byte("x"), 0o644); err != nil {
			fmt.Println("write:", err)
			return 1
		}
		fmt.Println("write: ok")
	case "exit":
		n, _ := strconv.Atoi(args[0])
		return n
	case "signal":
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		time.Sleep(time.Second)
	case "spew":
		n, _ := strconv.Atoi(args[0])
		buf := bytes.Repeat([]byte("0123456789abcdef"), 4096)
		for written := 0; written < n; written += len(buf) {
			os.Stdout.Write(buf[:min(len(buf), n-written)])
			os.Stderr.Write(buf[:min(len(buf), n-written)])
		}
	case "alloc":
		n, _ := strconv.Atoi(args[0])
		b := make([]byte, n<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		fmt.Println("allocated", len(b))
	case "killparent":
		// The parent of a launched tool is its spawner.
		sig := map[string]syscall.Signal{"KILL": syscall.SIGKILL, "STOP": syscall.SIGSTOP, "TERM": syscall.SIGTERM}[args[0]]
		if err := syscall.Kill(os.Getppid(), sig); err != nil {
			fmt.Println("killparent:", err)
			return 1
		}
		fmt.Println("killparent: ok")
	case "killparenttasks":
		// kill(tid) of any thread signals the whole process: try every thread id.
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", os.Getppid()))
		if err != nil || len(ents) == 0 {
			fmt.Println("killparenttasks: list threads:", err)
			return 2
		}
		for _, e := range ents {
			tid, _ := strconv.Atoi(e.Name())
			if err := syscall.Kill(tid, syscall.SIGKILL); err == nil {
				fmt.Println("killparenttasks: killed thread", tid)
				return 0
			}
			if err := syscall.Tgkill(os.Getppid(), tid, syscall.SIGKILL); err == nil {
				fmt.Println("killparenttasks: tgkilled thread", tid)
				return 0
			}
		}
		fmt.Printf("killparenttasks: %d threads: operation not permitted\n", len(ents))
		return 1
	case "ptraceparent":
		runtime.LockOSThread()
		if err := syscall.PtraceAttach(os.Getppid()); err != nil {
			fmt.Println("ptraceparent:", err)
			return 1
		}
		fmt.Println("ptraceparent: ok")
	case "net":
		if err := netProbe(args[0], args[1]); err != nil {
			fmt.Println("net:", err)
			return 1
		}
		fmt.Println("net: ok")
	case "forkbomb":
		var started, failed int
		var cmds []*exec.Cmd
		for range 100 {
			c := exec.Command("/bin/sleep", "5")
			if err := c.Start(); err != nil {
				failed++
				continue
			}
			started++
			cmds = append(cmds, c)
		}
		for _, c := range cmds {
			c.Process.Kill()
			c.Wait()
		}
		fmt.Printf("started %d failed %d\n", started, failed)
	case "spin":
		ms, _ := strconv.Atoi(args[0])
		end := time.Now().Add(time.Duration(ms) * time.Millisecond)
		x := 0
		for time.Now().Before(end) {
			x++
		}
		fmt.Println(x > 0)
	case "attack":
		return attackMain(args)
	case "victim":
		return victimMain(args)
	case "connect":
		return connectMain(args)
	case "proxyget":
		return proxyGet(args[0])
	case "denials": // denials_more_test.go
		return denialsHelper(args)
	case "env":
		for _, e := range os.Environ() {
			fmt.Println(e)
		}
	default:
		fmt.Fprintln(os.Stderr, "unknown helper mode", mode)
		return 2
	}
	return 0
}

// testPolicy builds a policy whose tools include the test binary itself ("self")
// with read access to ws and the test binary's directory, write access to ws/out.
func testPolicy(t testing.TB, extra string) (*policy.Policy, string) {
	t.Helper()
	return testPolicyLandlock(t, extra, "require")
}

// testPolicyLandlock is testPolicy with the given landlock enforcement.
func testPolicyLandlock(t testing.TB, extra, landlock string) (*policy.Policy, string) {
	t.Helper()
	return testPolicyFull(t, "", extra, landlock)
}

// testPolicyTop is testPolicy with top-level keys (such as kernel_templates) added.
func testPolicyTop(t testing.TB, top string) (*policy.Policy, string) {
	t.Helper()
	return testPolicyFull(t, top, "", "require")
}

func testPolicyFull(t testing.TB, top, extra, landlock string) (*policy.Policy, string) {
	t.Helper()
	ws := t.TempDir()
	for _, d := range []string{"out", "bin"} {
		if err := os.Mkdir(filepath.Join(ws, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	y := fmt.Sprintf(`version: 1
%sworkspace: %s
defaults:
  filesystem:
    read: [/usr, /lib, /lib64, /bin, /etc, /proc, /dev/null, "${WORKSPACE}", %q]
    write: ["${WORKSPACE}/out", /dev/null]
    exec: [/usr, /bin, /lib, /lib64, %q, "${WORKSPACE}/bin"]
  env:
    allow: [FOO, LC_*]
    set:
      PATH: /usr/bin:/bin
  limits:
    timeout: 20s
    output: 1MiB
  enforcement:
    landlock: %s
    cgroup: best_effort
tools:
  self: {exec: %q, hot: true}
  sh: {exec: /bin/sh}
  cat: {exec: /bin/cat, hot: true}
  true: {exec: /bin/true}
  sleep: {exec: /bin/sleep}
  git:
    exec: /usr/bin/git
    args:
      allow: ["status|log|--version"]
      deny: ["push", "-c"]
%s`, top, ws, filepath.Dir(exe), filepath.Dir(exe), landlock, exe, extra)
	p, err := policy.Parse("test.yaml", []byte(y), policy.Options{Workspace: ws, Home: "/root", CPUs: runtime.NumCPU()})
	if err != nil {
		t.Fatalf("policy: %v", err)
	}
	if err := policy.Resolve(p); err != nil {
		t.Fatalf("resolve: %v", err)
	}
	return p, ws
}

func newRuntime(t testing.TB, p *policy.Policy, opts ...agentexec.Option) *agentexec.Runtime {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireLandlockABI(t, 6)
	rt, err := agentexec.New(context.Background(), p, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := rt.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return rt
}

func run(t testing.TB, rt *agentexec.Runtime, tool string, args ...string) agentexec.Result {
	t.Helper()
	r, err := rt.Run(context.Background(), agentexec.Request{Tool: tool, Args: args})
	if err != nil {
		t.Fatalf("Run %s %q: %v", tool, args, err)
	}
	return r
}

// On both backends (backend-aware: sh is not hot and takes the userspace path with
// either; self, a hot ELF tool, reports its profile's backend).
func TestRunEchoAndExitCodes(t *testing.T) {
	for _, b := range testBackends() {
		t.Run(b.name, func(t *testing.T) {
			p, _ := b.policy(t, "")
			rt := newRuntime(t, p)
			r := run(t, rt, "sh", "-c", "echo hello; echo oops >&2; exit 3")
			if string(r.Stdout) != "hello\n" || string(r.Stderr) != "oops\n" || r.ExitCode != 3 {
				t.Fatalf("got stdout %q stderr %q exit %d", r.Stdout, r.Stderr, r.ExitCode)
			}
			if r.Backend != agentexec.BackendUserspace {
				t.Errorf("sh (not hot): backend %q, want userspace", r.Backend)
			}
			for _, code := range []int{0, 1} {
				r := run(t, rt, "self", "-helper", "exit", strconv.Itoa(code))
				if r.ExitCode != code || r.Backend != b.hot {
					t.Errorf("exit %d: got %d from the %s backend, want the %s backend", code, r.ExitCode, r.Backend, b.hot)
				}
			}
			if r := run(t, rt, "self", "-helper", "signal"); r.Signal != syscall.SIGKILL || r.ExitCode != -1 || r.Backend != b.hot {
				t.Errorf("signal: got signal %v exit %d backend %q", r.Signal, r.ExitCode, r.Backend)
			}
			// 126 and 127 come from the shell inside the sandbox and from exec itself.
			if r := run(t, rt, "sh", "-c", "/nonexistent"); r.ExitCode != 127 {
				t.Errorf("sh not found: %d", r.ExitCode)
			}
		})
	}
}

func TestExecFailureStatus(t *testing.T) {
	dir := t.TempDir()
	gone := filepath.Join(dir, "gone")
	script := filepath.Join(dir, "noexec")
	for _, f := range []string{gone, script} {
		if err := os.WriteFile(f, []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	p, _ := testPolicy(t, fmt.Sprintf(`  gone: {exec: %s, filesystem: {exec+: [%s]}}
  noexec: {exec: %s, filesystem: {exec+: [%s]}}
`, gone, dir, script, dir))
	rt := newRuntime(t, p)
	// The binary vanished after the policy was resolved: 127. It lost its execute
	// permission: 126.
	os.Remove(gone)
	os.Chmod(script, 0o644)
	r, err := rt.Run(context.Background(), agentexec.Request{Tool: "gone"})
	if err != nil || r.ExitCode != 127 || r.ExecError == "" {
		t.Errorf("vanished binary: exit %d exec error %q err %v, want 127", r.ExitCode, r.ExecError, err)
	}
	r, err = rt.Run(context.Background(), agentexec.Request{Tool: "noexec"})
	if err != nil || r.ExitCode != 126 || r.ExecError == "" {
		t.Errorf("non-executable: exit %d exec error %q err %v, want 126", r.ExitCode, r.ExecError, err)
	}
}

func TestDenied(t *testing.T) {
	p, _ := testPolicy(t, "")
	rt := newRuntime(t, p)
	cases := []struct {
		req  agentexec.Request
		rule string
	}{
		{agentexec.Request{Tool: "rm"}, "tools"},
		{agentexec.Request{Tool: "git", Args: []string{"push"}}, "tools.git.args.deny[0]"},
		{agentexec.Request{Tool: "git", Args: []string{"log", "-c", "x=y"}}, "tools.git.args.deny[1]"},
		{agentexec.Request{Tool: "git", Args: []string{"commit"}}, "tools.git.args.allow"},
		{agentexec.Request{Tool: "cat", Dir: "/var"}, "tools.cat.filesystem"},
		{agentexec.Request{Tool: "cat", Env: map[string]string{"SECRET": "x"}}, "tools.cat.env.allow"},
	}
	for _, c := range cases {
		_, err := rt.Run(context.Background(), c.req)
		var d *agentexec.DeniedError
		if !errors.As(err, &d) || !errors.Is(err, agentexec.ErrDenied) {
			t.Errorf("%+v: err %v, want DeniedError", c.req, err)
			continue
		}
		if d.Rule != c.rule || d.Op == "" || d.Object == "" {
			t.Errorf("%+v: rule %q op %q object %q, want rule %q", c.req, d.Rule, d.Op, d.Object, c.rule)
		}
		if !strings.Contains(err.Error(), c.rule) {
			t.Errorf("error text %q does not name rule %q", err, c.rule)
		}
	}
}

func TestEnvironment(t *testing.T) {
	os.Setenv("AGENTEXEC_TEST_SECRET", "hunter2")
	defer os.Unsetenv("AGENTEXEC_TEST_SECRET")
	p, _ := testPolicy(t, "")
	rt := newRuntime(t, p)
	r, err := rt.Run(context.Background(), agentexec.Request{Tool: "self", Args: []string{"-helper", "env"}, Env: map[string]string{"FOO": "bar", "LC_ALL": "C"}})
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Fields(string(r.Stdout))
	want := []string{"FOO=bar", "LC_ALL=C", "PATH=/usr/bin:/bin"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("env %q, want exactly %q (nothing inherited from the agent)", got, want)
	}
}

func TestLandlockFilesystem(t *testing.T) {
	p, ws := testPolicy(t, "")
	// The secret is readable by its permission bits (in directories anyone may
	// search, before the runtime plans its view), so that only Landlock refuses it.
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		os.Chmod(d, 0o755)
	}
	secret := filepath.Join(dir, "secret")
	os.WriteFile(secret, []byte("s"), 0o644)
	os.WriteFile(filepath.Join(ws, "in.txt"), []byte("hello"), 0o644)
	rt := newRuntime(t, p)
	cases := []struct {
		mode, path string
		ok         bool
	}{
		{"read", filepath.Join(ws, "in.txt"), true},
		{"read", secret, false},
		{"write", filepath.Join(ws, "out", "x"), true},
		{"write", filepath.Join(ws, "x"), false},
		{"write", "/tmp/agentexec-landlock-test", false},
	}
	for _, c := range cases {
		r := run(t, rt, "self", "-helper", c.mode, c.path)
		if (r.ExitCode == 0) != c.ok {
			t.Errorf("%s %s: exit %d out %q, want ok=%v", c.mode, c.path, r.ExitCode, r.Stdout, c.ok)
		}
		if !c.ok && !strings.Contains(string(r.Stdout), "permission denied") {
			t.Errorf("%s %s: %q, want permission denied", c.mode, c.path, r.Stdout)
		}
	}
	// The main process itself is not restricted.
	if _, err := os.ReadFile(secret); err != nil {
		t.Errorf("main process lost access: %v", err)
	}
	// Executing outside the exec roots is refused.
	tool := filepath.Join(ws, "out", "true")
	b, _ := os.ReadFile("/bin/true")
	os.WriteFile(tool, b, 0o755)
	r := run(t, rt, "sh", "-c", tool)
	if r.ExitCode != 126 {
		t.Errorf("exec outside exec roots: exit %d stderr %q, want 126", r.ExitCode, r.Stderr)
	}
}

func TestChildCannotReachAgent(t *testing.T) {
	p, _ := testPolicy(t, "")
	rt := newRuntime(t, p)
	me := strconv.Itoa(os.Getpid())
	for _, c := range [][]string{
		{"kill", me},
		{"ptrace", me},
		{"read", "/proc/" + me + "/environ"},
		{"read", "/proc/" + me + "/mem"},
	} {
		r := run(t, rt, "self", append([]string{"-helper"}, c...)...)
		if r.ExitCode == 0 {
			t.Errorf("%v: the child reached the agent process: %s", c, r.Stdout)
		}
	}
}

func TestFDHygiene(t *testing.T) {
	p, _ := testPolicy(t, "")
	// An fd the embedding program opened without O_CLOEXEC before New.
	fd, err := unix.Open("/dev/null", unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	rt := newRuntime(t, p)
	// And one opened after.
	fd2, err := unix.Open("/dev/null", unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd2)
	r := run(t, rt, "self", "-helper", "fds")
	if got := strings.Join(strings.Fields(string(r.Stdout)), " "); got != "0 1 2" {
		t.Fatalf("child fds %q, want exactly 0 1 2", got)
	}
	// An explicit extra fd arrives as fd 3, and nothing else does.
	f, _ := os.Open("/dev/null")
	defer f.Close()
	r2, err := rt.Run(context.Background(), agentexec.Request{Tool: "self", Args: []string{"-helper", "fds"}, ExtraFiles: []*os.File{f}})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(strings.Fields(string(r2.Stdout)), " "); got != "0 1 2 3" {
		t.Fatalf("with an extra fd: %q, want 0 1 2 3", got)
	}
}

func TestStdinAndLargeOutput(t *testing.T) {
	p, ws := testPolicy(t, "")
	rt := newRuntime(t, p)
	r, err := rt.Run(context.Background(), agentexec.Request{Tool: "cat", Stdin: strings.NewReader("from stdin")})
	if err != nil || string(r.Stdout) != "from stdin" {
		t.Fatalf("stdin bytes: %q %v", r.Stdout, err)
	}
	os.WriteFile(filepath.Join(ws, "f"), []byte("from file"), 0o644)
	r, err = rt.Run(context.Background(), agentexec.Request{Tool: "cat", StdinFile: "f"})
	if err != nil || string(r.Stdout) != "from file" {
		t.Fatalf("stdin file: %q %v", r.Stdout, err)
	}
	if r := run(t, rt, "cat"); len(r.Stdout) != 0 || r.ExitCode != 0 {
		t.Fatalf("null stdin: %q %d", r.Stdout, r.ExitCode)
	}
	// 64 MiB on each stream against a 1 MiB cap: no deadlock, excess counted.
	r = run(t, rt, "self", "-helper", "spew", strconv.Itoa(64<<20))
	if r.ExitCode != 0 || len(r.Stdout) != 1<<20 || len(r.Stderr) != 1<<20 {
		t.Fatalf("spew: exit %d, %d/%d bytes kept", r.ExitCode, len(r.Stdout), len(r.Stderr))
	}
	if !r.StdoutTruncated || r.StdoutDropped != 63<<20 || r.StderrDropped != 63<<20 {
		t.Fatalf("spew: truncated %v dropped %d/%d", r.StdoutTruncated, r.StdoutDropped, r.StderrDropped)
	}
}

func TestTimeoutKillsTree(t *testing.T) {
	p, _ := testPolicy(t, "")
	rt := newRuntime(t, p, agentexec.WithKillGrace(200*time.Millisecond))
	m := testutil.SleepMarker()
	r, err := rt.Run(context.Background(), agentexec.Request{Tool: "sh", Args: []string{"-c", "sleep " + m + " & sleep " + m}, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if !r.TimedOut || r.Signal == 0 {
		t.Fatalf("not timed out: %+v", r)
	}
	if left := testutil.ProcsWith(m); len(left) > 0 {
		t.Fatalf("processes left behind: %v", left)
	}
}

func TestCancelKillsTree(t *testing.T) {
	p, _ := testPolicy(t, "")
	rt := newRuntime(t, p, agentexec.WithKillGrace(200*time.Millisecond))
	m := testutil.SleepMarker()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	// The inner sh ignores SIGTERM, so only the tree kill after the grace ends it.
	r, err := rt.Run(ctx, agentexec.Request{Tool: "sh", Args: []string{"-c", "trap '' TERM; (sleep " + m + " &); sleep " + m}})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Canceled || r.Signal == 0 {
		t.Fatalf("cancel: %+v", r)
	}
	if left := testutil.ProcsWith(m); len(left) > 0 {
		t.Fatalf("processes left behind: %v", left)
	}
}

func TestConcurrentRuns(t *testing.T) {
	p, _ := testPolicy(t, "")
	rt := newRuntime(t, p)
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			want := fmt.Sprintf("call-%d", i)
			r, err := rt.Run(context.Background(), agentexec.Request{Tool: "sh", Args: []string{"-c", "echo " + want}})
			if err != nil {
				errs <- err
				return
			}
			if strings.TrimSpace(string(r.Stdout)) != want || r.ExitCode != 0 {
				errs <- fmt.Errorf("call %d: got %q exit %d", i, r.Stdout, r.ExitCode)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestSpawnerRestart(t *testing.T) {
	p, _ := testPolicy(t, "")
	rt := newRuntime(t, p)
	ctx := context.Background()
	proc, err := rt.Start(ctx, agentexec.Request{Tool: "sleep", Args: []string{"100"}})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = readAll(proc) }()
	agentexec.KillSpawnerForTest(rt, "sleep")
	done := make(chan struct{})
	go func() {
		_, err = proc.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("launch in flight hung after its spawner died")
	}
	if err == nil {
		t.Fatal("launch in flight when the spawner died: no error")
	}
	// The next launch restarts the spawner.
	if r := run(t, rt, "true"); r.ExitCode != 0 {
		t.Fatalf("after restart: %+v", r)
	}
	if rt.Stats().SpawnerRestarts == 0 {
		t.Error("restart not counted")
	}
}

func readAll(p *agentexec.Process) ([]byte, error) {
	var b bytes.Buffer
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); b2 := new(bytes.Buffer); b2.ReadFrom(p.Stderr()) }()
	_, err := b.ReadFrom(p.Stdout())
	wg.Wait()
	return b.Bytes(), err
}

func TestWithoutTemplates(t *testing.T) {
	p, _ := testPolicy(t, "  echo: {exec: echo}\n")
	rt := newRuntime(t, p, agentexec.WithoutTemplates())
	r := run(t, rt, "echo", "hi")
	if string(r.Stdout) != "hi\n" || r.Backend != agentexec.BackendNone || r.Template != agentexec.TemplateNone {
		t.Fatalf("got %q backend %q template %q", r.Stdout, r.Backend, r.Template)
	}
}

// On both backends: a rename-replaced binary is picked up. With the kernel backend
// the script that replaces the ELF tool cannot have a kernel template, so it runs
// from the userspace path (recreated there, then a hit).
func TestTemplateRecreatedAfterReplace(t *testing.T) {
	for _, b := range testBackends() {
		t.Run(b.name, func(t *testing.T) {
			dir := t.TempDir()
			bin := filepath.Join(dir, "tool")
			replace := func(content []byte) {
				tmp := bin + ".new"
				if err := os.WriteFile(tmp, content, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(tmp, bin); err != nil { // as a package manager does
					t.Fatal(err)
				}
			}
			exe, _ := os.Executable()
			self, err := os.ReadFile(exe)
			if err != nil {
				t.Fatal(err)
			}
			replace(self)
			p, _ := b.policy(t, fmt.Sprintf("  tool: {exec: %s, hot: true, filesystem: {exec+: [%s]}}\n", bin, dir))
			rt := newRuntime(t, p)
			if r := run(t, rt, "tool", "-helper", "exit", "3"); r.ExitCode != 3 || r.Template != agentexec.TemplateHit || r.Backend != b.hot {
				t.Fatalf("first: exit %d template %q backend %q", r.ExitCode, r.Template, r.Backend)
			}
			replace([]byte("#!/bin/sh\nexit 5\n"))
			if r := run(t, rt, "tool", "-helper", "exit", "3"); r.ExitCode != 5 || r.Template != agentexec.TemplateRecreated || r.Backend != agentexec.BackendUserspace {
				t.Fatalf("after replace: exit %d template %q backend %q (%s), want 5 (the new binary), recreated, userspace",
					r.ExitCode, r.Template, r.Backend, r.ExecError)
			}
			if r := run(t, rt, "tool"); r.Template != agentexec.TemplateHit || r.ExitCode != 5 || r.Backend != agentexec.BackendUserspace {
				t.Fatalf("then: exit %d template %q backend %q, want 5, hit, userspace", r.ExitCode, r.Template, r.Backend)
			}
			if s := rt.Stats(); s.TemplateRecreations != 1 {
				t.Errorf("recreations %d, want 1", s.TemplateRecreations)
			}
		})
	}
}

// statusMask returns a hex mask field (SigIgn, SigBlk) of /proc/PID/status text.
func statusMask(status []byte, field string) string {
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

func TestSignalsResetInChild(t *testing.T) {
	// The agent ignores SIGHUP and SIGPIPE (as under nohup or a shell pipeline); its
	// tools must not inherit that.
	signal.Ignore(syscall.SIGHUP, syscall.SIGINT, syscall.SIGUSR2)
	defer signal.Reset(syscall.SIGHUP, syscall.SIGINT, syscall.SIGUSR2)
	p, _ := testPolicy(t, "")
	rt := newRuntime(t, p)
	r := run(t, rt, "cat", "/proc/self/status")
	if ign, blk := statusMask(r.Stdout, "SigIgn"), statusMask(r.Stdout, "SigBlk"); ign != "0000000000000000" || blk != "0000000000000000" {
		t.Fatalf("child SigIgn %s SigBlk %s, want all zero", ign, blk)
	}
}

// Close does not hang on a streaming launch whose caller never reads or waits.
func TestCloseWithUnreadStream(t *testing.T) {
	p, _ := testPolicy(t, "")
	testutil.RequireRoot(t)
	testutil.RequireLandlockABI(t, 6)
	rt, err := agentexec.New(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	m := testutil.SleepMarker()
	if _, err := rt.Start(context.Background(), agentexec.Request{Tool: "sh", Args: []string{"-c", "yes | head -c 10000000; sleep " + m}}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- rt.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Close hung on an unread streaming launch")
	}
	if left := testutil.ProcsWith(m); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}

// A streaming reader gets EOF when the tool exits, even if it left a background
// process holding the pipes, without calling Wait first.
func TestStreamEOFWithBackgroundChild(t *testing.T) {
	p, _ := testPolicy(t, "")
	rt := newRuntime(t, p)
	m := testutil.SleepMarker()
	proc, err := rt.Start(context.Background(), agentexec.Request{Tool: "sh", Args: []string{"-c", "sleep " + m + " & echo started"}})
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan []byte, 1)
	go func() { b, _ := readAll(proc); out <- b }()
	select {
	case b := <-out:
		if string(b) != "started\n" {
			t.Errorf("stdout %q", b)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no EOF while a background child held the pipes")
	}
	if _, err := proc.Wait(); err != nil {
		t.Fatal(err)
	}
	if left := testutil.ProcsWith(m); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}

func TestRequestLimits(t *testing.T) {
	exe, _ := os.Executable()
	p, _ := testPolicy(t, fmt.Sprintf("  lim: {exec: %q, limits: {memory: 256MiB, pids: 64}}\n", exe))
	rt := newRuntime(t, p)
	_, err := rt.Run(context.Background(), agentexec.Request{Tool: "lim", Args: []string{"-helper", "exit", "0"}, Limits: &policy.Limits{Memory: 1 << 30}})
	var d *agentexec.DeniedError
	if !errors.As(err, &d) || d.Rule != "tools.lim.limits.memory" {
		t.Fatalf("a request above the policy's memory limit: %v, want denied by tools.lim.limits.memory", err)
	}
	r, err := rt.Run(context.Background(), agentexec.Request{Tool: "lim", Args: []string{"-helper", "exit", "0"}, Limits: &policy.Limits{Memory: 64 << 20, Pids: 32}})
	if err != nil || r.ExitCode != 0 {
		t.Fatalf("lower limits: %v %+v", err, r)
	}
	if !strings.Contains(r.Cgroup, "-l1") {
		t.Errorf("cgroup %q is not from the per-request pool", r.Cgroup)
	}
}

// Launches of one profile run in parallel up to its concurrency: three launches that
// each wait until all three have started can only finish if they overlap.
func TestLaunchesRunInParallel(t *testing.T) {
	p, ws := testPolicy(t, "")
	rt := newRuntime(t, p)
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			script := fmt.Sprintf("touch %s/out/%d; n=0; while [ $(ls %s/out | wc -l) -lt 3 ]; do sleep 0.05; n=$((n+1)); [ $n -gt 200 ] && exit 9; done; true", ws, i, ws)
			if r := run(t, rt, "sh", "-c", script); r.ExitCode != 0 {
				t.Errorf("launch %d never saw the other two running (exit %d): launches are serialized", i, r.ExitCode)
			}
		}()
	}
	wg.Wait()
}

// A spawner forks from one launcher thread per CPU (two to eight), never more than
// the profile's concurrency, so that launches in flight overlap their clone and
// execve; all of them launch.
func TestSpawnerLauncherThreads(t *testing.T) {
	for _, c := range []struct{ concurrency, cpus, want int }{
		{1, 2, 1}, {1, 32, 1}, {2, 16, 2}, {3, 32, 3}, {64, 1, 2}, {64, 2, 2}, {64, 4, 4}, {64, 32, 8},
	} {
		if got := agentexec.LauncherThreadsForTest(c.concurrency, c.cpus); got != c.want {
			t.Errorf("launcherThreads(concurrency %d, %d CPUs) = %d, want %d", c.concurrency, c.cpus, got, c.want)
		}
	}
	for _, conc := range []int{1, 3} {
		p, _ := testPolicy(t, "")
		for _, pr := range p.Profiles {
			pr.Concurrency = conc
		}
		rt := newRuntime(t, p)
		want := agentexec.LauncherThreadsForTest(conc, runtime.NumCPU())
		got := agentexec.SpawnerLaunchersForTest(rt)
		if len(got) == 0 {
			t.Fatal("no spawners")
		}
		for _, n := range got {
			if n != want {
				t.Fatalf("concurrency %d: spawner launcher threads %v, want %d each", conc, got, want)
			}
		}
		var wg sync.WaitGroup
		errs := make(chan error, 12)
		for i := range 12 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, err := rt.Run(context.Background(), agentexec.Request{Tool: "sh", Args: []string{"-c", fmt.Sprintf("echo %d", i)}})
				if err == nil && (r.ExitCode != 0 || string(r.Stdout) != fmt.Sprintf("%d\n", i)) {
					err = fmt.Errorf("launch %d: exit %d, stdout %q", i, r.ExitCode, r.Stdout)
				}
				if err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("concurrency %d: %v", conc, err)
		}
	}
}
