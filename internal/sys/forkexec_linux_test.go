//go:build linux && (amd64 || arm64)

package sys

import (
	"errors"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"
)

// struct clone_args, CLONE_ARGS_SIZE_VER2 (include/uapi/linux/sched.h).
func TestCloneArgsLayout(t *testing.T) {
	var a CloneArgs
	if got := unsafe.Sizeof(a); got != 88 {
		t.Errorf("sizeof(clone_args) = %d, want 88", got)
	}
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"flags", unsafe.Offsetof(a.Flags), 0},
		{"pidfd", unsafe.Offsetof(a.PidFD), 8},
		{"child_tid", unsafe.Offsetof(a.ChildTID), 16},
		{"parent_tid", unsafe.Offsetof(a.ParentTID), 24},
		{"exit_signal", unsafe.Offsetof(a.ExitSignal), 32},
		{"stack", unsafe.Offsetof(a.Stack), 40},
		{"stack_size", unsafe.Offsetof(a.StackSize), 48},
		{"tls", unsafe.Offsetof(a.TLS), 56},
		{"set_tid", unsafe.Offsetof(a.SetTID), 64},
		{"set_tid_size", unsafe.Offsetof(a.SetTIDSize), 72},
		{"cgroup", unsafe.Offsetof(a.Cgroup), 80},
	} {
		if c.got != c.want {
			t.Errorf("offsetof(clone_args.%s) = %d, want %d", c.name, c.got, c.want)
		}
	}
}

// spawn runs argv through ForkExec with stdin from /dev/null and stdout and stderr
// into one pipe, and returns the output and the wait status.
func spawn(t *testing.T, attr SpawnAttr, argv ...string) (string, syscall.WaitStatus) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	attr.Files = []int{int(null.Fd()), int(w.Fd()), int(w.Fd())}
	if attr.Env == nil {
		attr.Env = []string{"PATH=/usr/bin:/bin"}
	}
	pid, pidfd, err := ForkExec(argv[0], argv, &attr)
	w.Close()
	if err != nil {
		t.Fatalf("ForkExec %v: %v", argv, err)
	}
	defer unix.Close(pidfd)
	out, _ := io.ReadAll(r)
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil {
		t.Fatalf("wait4: %v", err)
	}
	return string(out), ws
}

func noLandlock() SpawnAttr { return SpawnAttr{CgroupFD: -1, LandlockRuleset: -1} }

func TestForkExecRunsAndWires(t *testing.T) {
	attr := noLandlock()
	attr.Dir = "/usr"
	attr.Env = []string{"A=1", "PATH=/usr/bin:/bin"}
	attr.Setsid = true
	out, ws := spawn(t, attr, "/bin/sh", "-c", `echo "$A $(pwd)"; echo err >&2; [ "$(cut -d' ' -f6 /proc/$$/stat)" = "$$" ] && echo leader; exit 7`)
	if ws.ExitStatus() != 7 {
		t.Errorf("exit status %d, want 7 (out %q)", ws.ExitStatus(), out)
	}
	for _, want := range []string{"1 /usr", "err", "leader"} {
		if !strings.Contains(out, want) {
			t.Errorf("output %q lacks %q", out, want)
		}
	}
}

// An fd below its target index is moved out of the way before it is overwritten:
// Files = [b, a] with a < b gives the child a as fd 1 and b as fd 0.
func TestForkExecSwapsFDs(t *testing.T) {
	ra, wa, _ := os.Pipe()
	rb, wb, _ := os.Pipe()
	defer ra.Close()
	defer rb.Close()
	lo, hi := wa, rb // hi becomes stdin, lo stdout
	if lo.Fd() > hi.Fd() {
		t.Skip("pipe fds came in an unexpected order")
	}
	attr := noLandlock()
	attr.Env = []string{"PATH=/usr/bin:/bin"}
	attr.Files = []int{int(hi.Fd()), int(lo.Fd()), int(lo.Fd())}
	pid, pidfd, err := ForkExec("/bin/cat", []string{"cat"}, &attr)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pidfd)
	wa.Close()
	_, _ = wb.WriteString("through")
	wb.Close()
	out, _ := io.ReadAll(ra)
	var ws syscall.WaitStatus
	_, _ = syscall.Wait4(pid, &ws, 0, nil)
	if string(out) != "through" || ws.ExitStatus() != 0 {
		t.Errorf("cat copied %q (status %v), want %q", out, ws, "through")
	}
}

func TestForkExecReportsTheFailedStep(t *testing.T) {
	for _, c := range []struct {
		name  string
		attr  func(*SpawnAttr)
		path  string
		step  ForkStep
		errno syscall.Errno
	}{
		{"missing binary", func(*SpawnAttr) {}, "/nonexistent/tool", StepExec, syscall.ENOENT},
		{"missing directory", func(a *SpawnAttr) { a.Dir = "/nonexistent/dir" }, "/bin/true", StepChdir, syscall.ENOENT},
		{"bad fd", func(a *SpawnAttr) { a.Files = []int{1000, 1, 2} }, "/bin/true", StepDupFDs, syscall.EBADF},
	} {
		t.Run(c.name, func(t *testing.T) {
			attr := noLandlock()
			attr.Files = []int{0, 1, 2}
			c.attr(&attr)
			_, _, err := ForkExec(c.path, []string{c.path}, &attr)
			fe, ok := errors.AsType[*ForkError](err)
			if !ok {
				t.Fatalf("err = %v, want a *ForkError", err)
			}
			if fe.Step != c.step || fe.Errno != c.errno {
				t.Errorf("err = %v, want %v: %v", err, c.step, c.errno)
			}
			if !errors.Is(err, c.errno) {
				t.Errorf("errors.Is(%v, %v) = false", err, c.errno)
			}
		})
	}
	// The failed children were reaped by ForkExec: none is left to wait for.
	if _, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil); !errors.Is(err, syscall.ECHILD) {
		t.Errorf("wait4(-1) after failed launches: %v, want ECHILD (a zombie was left)", err)
	}
}

// requireRootLandlock6 skips unless the test can make a scope-only Landlock ruleset
// and enforce it without no_new_privs (root).
func scopeRuleset(t *testing.T) int {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (landlock_restrict_self without no_new_privs needs CAP_SYS_ADMIN)")
	}
	abi, err := ll.LandlockGetABIVersion()
	if err != nil || abi < 6 {
		t.Skipf("needs Landlock ABI >= 6 for signal scoping (have %d, %v)", abi, err)
	}
	fd, err := ll.LandlockCreateRuleset(&ll.RulesetAttr{Scoped: ll.ScopeSignal}, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// A child with a Landlock layer of its own cannot signal its parent (outside its
// domain); the same child without it can.
func TestForkExecLandlockLayer(t *testing.T) {
	fd := scopeRuleset(t)
	script := `kill -0 $PPID 2>/dev/null && echo reached || echo refused`
	attr := noLandlock()
	out, _ := spawn(t, attr, "/bin/sh", "-c", script)
	if strings.TrimSpace(out) != "reached" {
		t.Fatalf("control: without a layer the child printed %q, want reached", out)
	}
	attr.LandlockRuleset = fd
	out, _ = spawn(t, attr, "/bin/sh", "-c", script)
	if strings.TrimSpace(out) != "refused" {
		t.Errorf("with its own layer the child printed %q, want refused", out)
	}
}

// Cred switches the child's identity before exec; as a non-root uid after exec the
// child holds no capabilities.
func TestForkExecCred(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch uid")
	}
	attr := noLandlock()
	attr.Cred = &Cred{UID: 65534, GID: 65533, Groups: []uint32{65532}}
	out, ws := spawn(t, attr, "/bin/sh", "-c", `echo "$(id -u) $(id -g) $(id -G)"; grep -E '^Cap(Eff|Prm)' /proc/self/status`)
	if ws.ExitStatus() != 0 {
		t.Fatalf("status %v: %s", ws, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if lines[0] != "65534 65533 65533 65532" {
		t.Errorf("ids = %q, want %q", lines[0], "65534 65533 65533 65532")
	}
	for _, l := range lines[1:] {
		if !strings.HasSuffix(l, "0000000000000000") {
			t.Errorf("child kept capabilities: %s", l)
		}
	}
}
