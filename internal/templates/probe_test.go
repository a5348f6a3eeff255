package templates

import (
	"bufio"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// kernelHasSpawnTemplate reads this kernel's kallsyms the way the probe does.
func kernelHasSpawnTemplate(t *testing.T) bool {
	t.Helper()
	f, err := os.Open(kallsymsPath)
	if err != nil {
		t.Skipf("requires a readable %s: %v", kallsymsPath, err)
	}
	defer f.Close()
	c, s, _, err := kallsymsHas(bufio.NewReader(f))
	if err != nil {
		t.Fatal(err)
	}
	return c && s
}

// TestProbeKernelHere runs the real probe. On a kernel without the RFC series (this
// machine, CI) it must say "not available" and why, without calling 472/473.
func TestProbeKernelHere(t *testing.T) {
	t.Setenv(SyscallNumbersEnv, "")
	has := kernelHasSpawnTemplate(t)
	p := ProbeKernel(0, 0)
	t.Logf("probe: %v", p)
	if p.Numbers != (SyscallNumbers{472, 473}) || p.Source != "default" {
		t.Errorf("numbers %v from %q, want 472,473 from default", p.Numbers, p.Source)
	}
	if has {
		if !p.Available {
			t.Fatalf("kallsyms lists the syscalls but the probe says %v", p)
		}
		return
	}
	if p.Available || !p.Conclusive {
		t.Fatalf("probe = %+v, want a conclusive not-available", p)
	}
	if !strings.Contains(p.Reason, "/proc/kallsyms") || !strings.Contains(p.Reason, "sys_spawn_template_create") {
		t.Fatalf("reason %q must name /proc/kallsyms and the missing symbol", p.Reason)
	}
	if q := ProbeKernel(0, 0); q != p {
		t.Fatalf("second probe %+v differs from the cached %+v", q, p)
	}
	if _, err := p.Syscalls(); !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("Syscalls() on an unavailable probe: %v", err)
	}
	// The environment override changes the numbers but not the name check.
	t.Setenv(SyscallNumbersEnv, "480,481")
	q := ProbeKernel(0, 0)
	if q.Available || q.Numbers != (SyscallNumbers{480, 481}) || q.Source != "env" {
		t.Fatalf("env probe = %+v", q)
	}
}

type fakeKallsyms string

func (k fakeKallsyms) open() (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader(string(k))), nil
}

const (
	symsWithout = "ffffffff81000000 T _stext\nffffffff81001000 T __x64_sys_clone3\n"
	symsWith    = symsWithout + "ffffffff81002000 T __x64_sys_spawn_template_create\nffffffff81003000 T __x64_sys_spawn_template_spawn\n"
	symsHalf    = symsWithout + "0000000000000000 T __x64_sys_spawn_template_create\n"
)

func TestProbeWith(t *testing.T) {
	nums := SyscallNumbers{472, 473}
	noCall := func(t *testing.T) func(int) error {
		return func(nr int) error {
			t.Fatalf("syscall %d called although kallsyms does not list it", nr)
			return nil
		}
	}
	callGives := func(err error) func(int) error { return func(int) error { return err } }
	unreadable := func() (io.ReadCloser, error) {
		return nil, &os.PathError{Op: "open", Path: kallsymsPath, Err: unix.ENOENT}
	}
	denied := func() (io.ReadCloser, error) {
		return nil, &os.PathError{Op: "open", Path: kallsymsPath, Err: unix.EACCES}
	}

	for _, c := range []struct {
		name       string
		source     string
		syms       func() (io.ReadCloser, error)
		call       func(*testing.T) func(int) error
		available  bool
		conclusive bool
		reason     string
	}{
		{"absent", "default", fakeKallsyms(symsWithout).open, noCall, false, true, "no __x64_sys_spawn_template_create"},
		{"half", "default", fakeKallsyms(symsHalf).open, noCall, false, true, "no __x64_sys_spawn_template_spawn"},
		{"present EBADF", "default", fakeKallsyms(symsWith).open, func(*testing.T) func(int) error { return callGives(unix.EBADF) }, true, true, "EBADF"},
		{"present ENOSYS", "default", fakeKallsyms(symsWith).open, func(*testing.T) func(int) error { return callGives(unix.ENOSYS) }, false, true, "ENOSYS"},
		{"present EPERM", "default", fakeKallsyms(symsWith).open, func(*testing.T) func(int) error { return callGives(unix.EPERM) }, false, false, "inconclusive"},
		{"present other errno", "default", fakeKallsyms(symsWith).open, func(*testing.T) func(int) error { return callGives(unix.EFAULT) }, false, false, "another syscall"},
		{"no kallsyms, default numbers", "default", unreadable, noCall, false, true, "cannot confirm"},
		{"kallsyms denied", "default", denied, noCall, false, false, "cannot confirm"},
		{"empty kallsyms", "default", fakeKallsyms("").open, noCall, false, true, "empty listing"},
		{"no kallsyms, env numbers", "env", unreadable, func(*testing.T) func(int) error { return callGives(unix.EBADF) }, true, true, "numbers given explicitly"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := probeWith(nums, c.source, c.syms, c.call(t))
			if p.Available != c.available || p.Conclusive != c.conclusive || !strings.Contains(p.Reason, c.reason) {
				t.Fatalf("probe = %+v; want available=%v conclusive=%v reason containing %q", p, c.available, c.conclusive, c.reason)
			}
		})
	}
}

func TestKallsymsHasArm64(t *testing.T) {
	c, s, _, err := kallsymsHas(strings.NewReader("0 T __arm64_sys_spawn_template_create\n0 T __arm64_sys_spawn_template_spawn\n"))
	if err != nil || !c || !s {
		t.Fatalf("arm64 names: %v %v %v", c, s, err)
	}
	c, _, _, _ = kallsymsHas(strings.NewReader("0 T __x64_sys_spawn_template_create_extra\n"))
	if c {
		t.Fatal("a longer symbol matched")
	}
}

func TestProbeNumbers(t *testing.T) {
	for _, c := range []struct {
		create, spawn int
		env           string
		want          SyscallNumbers
		source        string
		bad           bool
	}{
		{0, 0, "", SyscallNumbers{472, 473}, "default", false},
		{0, 0, "480, 481", SyscallNumbers{480, 481}, "env", false},
		{500, 501, "480,481", SyscallNumbers{500, 501}, "override", false},
		{0, 0, "480", SyscallNumbers{}, "", true},
		{0, 0, "a,b", SyscallNumbers{}, "", true},
		{0, 0, "-1,2", SyscallNumbers{}, "", true},
		{5, 0, "", SyscallNumbers{}, "", true},
	} {
		got, src, err := probeNumbers(c.create, c.spawn, c.env)
		if (err != nil) != c.bad || got != c.want || src != c.source {
			t.Errorf("probeNumbers(%d, %d, %q) = %v, %q, %v", c.create, c.spawn, c.env, got, src, err)
		}
	}
	t.Setenv(SyscallNumbersEnv, "nonsense")
	if p := ProbeKernel(0, 0); p.Available || p.Conclusive || !strings.Contains(p.Reason, SyscallNumbersEnv) {
		t.Fatalf("bad env: %+v", p)
	}
}

func TestUseKernel(t *testing.T) {
	yes := Probe{Available: true, Reason: "found"}
	no := Probe{Reason: "kallsyms has no __x64_sys_spawn_template_create"}
	for _, c := range []struct {
		mode string
		p    Probe
		use  bool
		err  bool
	}{
		{"auto", yes, true, false},
		{"", yes, true, false},
		{"auto", no, false, false},
		{"off", yes, false, false},
		{"require", yes, true, false},
		{"require", no, false, true},
		{"sometimes", yes, false, true},
	} {
		use, err := UseKernel(c.mode, c.p)
		if use != c.use || (err != nil) != c.err {
			t.Errorf("UseKernel(%q, available=%v) = %v, %v", c.mode, c.p.Available, use, err)
		}
	}
	_, err := UseKernel("require", no)
	if !errors.Is(err, errors.ErrUnsupported) || !strings.Contains(err.Error(), "kallsyms") {
		t.Errorf("require on a kernel without: %v", err)
	}
}
