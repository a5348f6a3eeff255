package agentexec_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/configs"
	"github.com/agentexec/agentexec/internal/testutil"
	"github.com/agentexec/agentexec/policy"
)

// The attacks an "attack" helper tries on each target pid, in order.
var siblingAttacks = []string{"signal", "environ", "maps", "mem", "fd0", "fd1", "ptrace", "vm_readv"}

// attackMain is the test binary run as a hostile tool: `attack kill|probe PID…`
// tries every attack on every pid and prints "PID ATTACK ok" or "PID ATTACK ERROR".
// With kill the signal is SIGKILL, with probe signal 0 (same permission check).
func attackMain(args []string) int {
	sig := syscall.Signal(0)
	if args[0] == "kill" {
		sig = syscall.SIGKILL
	}
	for _, a := range args[1:] {
		pid, _ := strconv.Atoi(a)
		proc := func(f string) string { return fmt.Sprintf("/proc/%d/%s", pid, f) }
		for _, attack := range siblingAttacks {
			var err error
			switch attack {
			case "signal":
				err = syscall.Kill(pid, sig)
			case "environ", "maps":
				var b []byte
				if b, err = os.ReadFile(proc(attack)); err == nil && len(b) == 0 {
					err = fmt.Errorf("empty")
				}
			case "mem":
				var f *os.File
				if f, err = os.OpenFile(proc("mem"), os.O_RDWR, 0); err == nil {
					f.Close()
				}
			case "fd0":
				var fd int
				// Opening the victim's stdin is the breach (the data may not have
				// arrived yet); take whatever is there.
				if fd, err = unix.Open(proc("fd/0"), unix.O_RDONLY|unix.O_NONBLOCK, 0); err == nil {
					buf := make([]byte, 4096)
					_, _ = unix.Read(fd, buf)
					unix.Close(fd)
				}
			case "fd1":
				var f *os.File
				if f, err = os.OpenFile(proc("fd/1"), os.O_WRONLY, 0); err == nil {
					_, err = f.WriteString("FORGED\n")
					f.Close()
				}
			case "ptrace":
				if err = syscall.PtraceAttach(pid); err == nil {
					_ = syscall.PtraceDetach(pid)
				}
			case "vm_readv":
				b := make([]byte, 8)
				_, err = unix.ProcessVMReadv(pid, []unix.Iovec{{Base: &b[0], Len: 8}}, []unix.RemoteIovec{{Base: 0x400000, Len: 8}}, 0)
				if errors.Is(err, unix.EFAULT) {
					err = nil // permitted; the address merely was not mapped
				}
			}
			res := "ok"
			if err != nil {
				res = strings.ReplaceAll(err.Error(), " ", "_")
			}
			fmt.Printf("%d %s %s\n", pid, attack, res)
		}
	}
	return 0
}

// victimMain is the test binary run as a victim: `victim GOFILE` prints its pid,
// waits until GOFILE exists, then echoes its stdin and a closing marker.
func victimMain(args []string) int {
	fmt.Printf("pid=%d\n", os.Getpid())
	for {
		if _, err := os.Stat(args[0]); err == nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	in, _ := io.ReadAll(os.Stdin)
	fmt.Printf("stdin=%s\nvictim-ok\n", in)
	return 0
}

type victimRun struct {
	proc   *agentexec.Process
	secret string
	out    bytes.Buffer
	done   chan struct{}
	res    agentexec.Result
	err    error
}

// siblingAttack starts k victims (a secret in their environment and stdin) and then
// k attackers aimed at every victim, all at once in one profile whose concurrency is
// above the spawner's launcher count, and returns the attackers' reports and the
// victims' results.
func siblingAttack(t *testing.T, k int, mode string, opts ...agentexec.Option) (reports []string, victims []*victimRun) {
	t.Helper()
	exe, _ := os.Executable()
	p, ws := testPolicy(t, fmt.Sprintf("  atk: {exec: %q, hot: true, concurrency: %d}\n", exe, 2*k+2))
	rt := newRuntime(t, p, opts...)
	goFile := filepath.Join(ws, "out", "go")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var pids []string
	for i := range k {
		v := &victimRun{secret: fmt.Sprintf("secret-%d-%d", i, time.Now().UnixNano()), done: make(chan struct{})}
		proc, err := rt.Start(ctx, agentexec.Request{Tool: "atk", Args: []string{"-helper", "victim", goFile},
			Env: map[string]string{"FOO": v.secret}, Stdin: strings.NewReader(v.secret)})
		if err != nil {
			t.Fatalf("start victim %d: %v", i, err)
		}
		v.proc = proc
		go func() {
			defer close(v.done)
			_, _ = io.Copy(&v.out, proc.Stdout())
			v.res, v.err = proc.Wait()
		}()
		victims = append(victims, v)
		pids = append(pids, strconv.Itoa(proc.Pid()))
	}
	var wg sync.WaitGroup
	reports = make([]string, k)
	for i := range k {
		wg.Go(func() {
			res, err := rt.Run(ctx, agentexec.Request{Tool: "atk", Args: append([]string{"-helper", "attack", mode}, pids...)})
			if err != nil || res.ExitCode != 0 {
				t.Errorf("attacker %d: %v, exit %d, stderr %s", i, err, res.ExitCode, res.Stderr)
			}
			reports[i] = string(res.Stdout)
		})
	}
	wg.Wait()
	if err := os.WriteFile(goFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, v := range victims {
		<-v.done
	}
	return reports, victims
}

// No launch in flight can signal, ptrace, process_vm_readv, read the environment or
// maps of, open the memory or fds of, or write into the output of another launch of
// the same profile, even on the same launcher thread.
func TestSiblingLaunchesAreIsolated(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireLandlockABI(t, 6)
	const k = 4
	reports, victims := siblingAttack(t, k, "kill")
	for i, r := range reports {
		lines := strings.Fields(r)
		if len(lines) != 3*k*len(siblingAttacks) {
			t.Errorf("attacker %d reported %d fields, want %d: %q", i, len(lines), 3*k*len(siblingAttacks), r)
		}
		for _, l := range strings.Split(strings.TrimSpace(r), "\n") {
			if strings.HasSuffix(l, " ok") {
				t.Errorf("attacker %d: %s succeeded", i, l)
			}
		}
	}
	for i, v := range victims {
		want := fmt.Sprintf("pid=%d\nstdin=%s\nvictim-ok\n", v.proc.Pid(), v.secret)
		if v.err != nil || v.res.ExitCode != 0 || v.out.String() != want {
			t.Errorf("victim %d: err %v, exit %d, signal %v, output %q; want %q untouched", i, v.err, v.res.ExitCode, v.res.Signal, v.out.String(), want)
		}
	}
}

// The control: without the per-launch layer and the tool identity, on one launcher
// thread, the same attackers signal the victims, read their environment and maps,
// steal their stdin and write into their output — the attacks the isolation refuses
// are real. (ptrace and process_vm_readv are refused by the seccomp filter either
// way, and opening /proc/PID/mem read-write by the kernel's own ptrace access rules
// for these victims; TestSiblingLaunchesAreIsolated still tries all three.)
func TestSiblingAttackControl(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireLandlockABI(t, 6)
	const k = 2
	reports, victims := siblingAttack(t, k, "probe", agentexec.WithoutLaunchIsolationForTest())
	succeeded := map[string]int{}
	for _, r := range reports {
		for _, l := range strings.Split(strings.TrimSpace(r), "\n") {
			if f := strings.Fields(l); len(f) == 3 && f[2] == "ok" {
				succeeded[f[1]]++
			}
		}
	}
	for _, attack := range []string{"signal", "environ", "maps", "fd0", "fd1"} {
		if succeeded[attack] == 0 {
			t.Errorf("control: %s never succeeded without the isolation (reports %q)", attack, reports)
		}
	}
	forged := 0
	for _, v := range victims {
		forged += strings.Count(v.out.String(), "FORGED")
	}
	if forged == 0 {
		t.Errorf("control: no victim output carries a forged line")
	}
	t.Logf("control: attacks that succeeded without the isolation: %v", succeeded)
}

// connectMain is the test binary run as a tool: `connect PATH` dials a unix socket.
func connectMain(args []string) int {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err == nil {
		err = unix.Connect(fd, &unix.SockaddrUnix{Name: args[0]})
		unix.Close(fd)
	}
	if err != nil {
		fmt.Println("refused:", err)
		return 1
	}
	fmt.Println("connected")
	return 0
}

// rootSocket listens on a root-owned, mode 0600 unix socket (a stand-in for
// docker.sock or a root tmux server) in a directory tools can search.
func rootSocket(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	// Searchable by anyone, so that only the socket's own mode stands in the way.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "root.sock")
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 16); err != nil {
		t.Fatal(err)
	}
	return path
}

// A tool cannot connect to a root-owned unix socket under any shipped config; the
// controls show the connection works for a tool the policy lets (user: root with the
// socket named), and that the tool identity alone already refuses it.
func TestRootSocketUnreachable(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireLandlockABI(t, 6)
	sock := rootSocket(t)
	exe, _ := os.Executable()
	probe := fmt.Sprintf("  sockprobe: {exec: %q, filesystem: {read+: [%q], exec+: [%q]}}\n", exe, filepath.Dir(exe), filepath.Dir(exe))
	ws := t.TempDir()
	opts := policy.Options{Workspace: ws, Home: "/root", TmpDir: t.TempDir(), CPUs: 2}
	connect := func(t *testing.T, name string, data []byte) agentexec.Result {
		t.Helper()
		p, err := policy.LoadBytes(name, data, opts)
		if err != nil {
			t.Fatalf("policy %s: %v", name, err)
		}
		rt := newRuntime(t, p)
		res, err := rt.Run(context.Background(), agentexec.Request{Tool: "sockprobe", Args: []string{"-helper", "connect", sock}})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return res
	}
	for _, name := range []string{"default.yaml", "agent.yaml", "ci.yaml", "readonly.yaml"} {
		t.Run(name, func(t *testing.T) {
			data, err := configs.FS.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			res := connect(t, name, append(data, probe...))
			if res.ExitCode == 0 || !strings.HasPrefix(string(res.Stdout), "refused:") {
				t.Errorf("connect under %s: exit %d, %q %q; want refused", name, res.ExitCode, res.Stdout, res.Stderr)
			}
		})
	}
	base := fmt.Sprintf(`version: 1
workspace: %s
defaults:
  filesystem: {read: [/usr, /lib, /lib64, /etc, "${WORKSPACE}"], exec: [/usr, /lib, /lib64]}
  network: %%s
  enforcement: {landlock: best_effort, cgroup: best_effort}
%%s
tools:
%s`, ws, probe)
	t.Run("control: user root, socket named", func(t *testing.T) {
		res := connect(t, "named.yaml", fmt.Appendf(nil, base, fmt.Sprintf("{unix_sockets: [%q]}", sock), "  user: root"))
		if res.ExitCode != 0 || string(res.Stdout) != "connected\n" {
			t.Errorf("connect to a named socket as root: exit %d, %q %q; want connected", res.ExitCode, res.Stdout, res.Stderr)
		}
		if !slices.ContainsFunc(res.Unenforced, func(s string) bool { return strings.Contains(s, "unix socket paths") }) {
			t.Errorf("Unenforced %q does not report that other root sockets stay reachable (Landlock ABI < 9)", res.Unenforced)
		}
	})
	t.Run("tool identity with unix sockets allowed", func(t *testing.T) {
		res := connect(t, "unix.yaml", fmt.Appendf(nil, base, "{unix: true}", ""))
		if res.ExitCode == 0 || !strings.Contains(string(res.Stdout), "permission denied") {
			t.Errorf("connect as the tool identity: exit %d, %q %q; want permission denied", res.ExitCode, res.Stdout, res.Stderr)
		}
	})
}

// Tools of a root runtime run as its unprivileged tool identity and still use a
// workspace that identity cannot reach by permission bits (inside a mode 0700
// directory, itself mode 0700, owned by root): the spawner's view shims the
// directory and idmaps the workspace. What a tool writes is root's on disk, the
// rest of the 0700 directory stays out of reach, and the host's mount table is
// untouched. (Without the view the same tool fails at chdir: EACCES on the 0700
// parents, as TestPlanToolView's plan says.)
func TestToolIdentityUsesRootsItDoesNotOwn(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireLandlockABI(t, 6)
	base := t.TempDir() // mode 0700, in a mode 0700 parent
	ws := filepath.Join(base, "ws")
	if err := os.Mkdir(ws, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(base, "secret.txt"), []byte("s3cret"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ws, "in.txt"), []byte("input"), 0o600); err != nil {
		t.Fatal(err)
	}
	mountsBefore := mountLinesUnder(t, base)
	y := fmt.Sprintf(`version: 1
workspace: %s
defaults:
  filesystem:
    read: [/usr, /lib, /lib64, /bin, /etc, "${WORKSPACE}"]
    write: ["${WORKSPACE}"]
    exec: [/usr, /bin, /lib, /lib64]
  env: {set: {PATH: /usr/bin:/bin}}
  enforcement: {landlock: require, cgroup: best_effort}
tools:
  sh: {exec: /bin/sh}
`, ws)
	p, err := policy.Parse("view.yaml", []byte(y), policy.Options{Workspace: ws, Home: "/root", CPUs: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := policy.Resolve(p); err != nil {
		t.Fatal(err)
	}
	rt := newRuntime(t, p)
	res, err := rt.Run(context.Background(), agentexec.Request{Tool: "sh", Args: []string{"-c",
		`id -u; cat in.txt; echo; echo made > made.txt && echo wrote; cat ../secret.txt 2>&1 || echo hidden`}})
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(res.Stdout)), "\n")
	if len(lines) < 4 {
		t.Fatalf("output %q (stderr %q)", res.Stdout, res.Stderr)
	}
	if uid, _ := strconv.Atoi(lines[0]); uid < agentexec.ToolIDBase || uid >= agentexec.ToolIDBase+agentexec.ToolIDCount {
		t.Errorf("tool ran as uid %s, want one of the tool identities from %d", lines[0], agentexec.ToolIDBase)
	}
	if lines[1] != "input" || lines[2] != "wrote" {
		t.Errorf("read %q, write %q; want input and wrote (stderr %q)", lines[1], lines[2], res.Stderr)
	}
	if !strings.Contains(lines[len(lines)-1], "hidden") {
		t.Errorf("reading a file beside the workspace: %q, want it hidden", lines[len(lines)-1])
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(ws, "made.txt"), &st); err != nil || st.Uid != 0 || st.Gid != 0 {
		t.Errorf("made.txt on disk: %v, owner %d:%d; want root's (the idmapped workspace writes as its owner)", err, st.Uid, st.Gid)
	}
	if after := mountLinesUnder(t, base); after != mountsBefore {
		t.Errorf("host mount table changed under %s:\nbefore %q\nafter  %q", base, mountsBefore, after)
	}
}

// mountLinesUnder returns the lines of this process's mountinfo that mention dir.
func mountLinesUnder(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, dir) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
