package templates

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec/internal/sys"
)

// fakeSys is a scripted KernelSys: createErrs and spawnErrs are consumed per call
// (nil or exhausted: success).
type fakeSys struct {
	tid        int
	nextFD     int
	link       string
	createErrs []error
	spawnErrs  []error

	created  []string // filenames passed to create
	spawned  []int    // template fds passed to spawn
	closed   []int
	open     map[int]bool
	lastCall *sys.SpawnTemplateSpawnCall
	// childDied is the raw status the last spawned child died with before exec
	// (0: it exec'd), as the RFC reports a failed action: the fake applies the RFC's
	// FCHDIR rule (the fd is looked up with fdget, which skips O_PATH files, so an
	// O_PATH directory fd, or a closed one, kills the child with status 1).
	childDied int
}

func newFakeSys() *fakeSys {
	return &fakeSys{tid: 100, nextFD: 10, link: sys.SpawnTemplateFDLinkName, open: map[int]bool{}}
}

func (f *fakeSys) Create(c *sys.SpawnTemplateCreateCall) (int, error) {
	f.created = append(f.created, c.Filename())
	if c.Args.Execfd != -1 || c.Args.Flags != sys.SPAWN_TEMPLATE_CREATE_CLOEXEC || c.Args.Actions != 0 || c.Args.ActionsLen != 0 {
		return -1, fmt.Errorf("fake: bad create args %+v", c.Args)
	}
	if len(f.createErrs) > 0 {
		err := f.createErrs[0]
		f.createErrs = f.createErrs[1:]
		if err != nil {
			return -1, err
		}
	}
	fd := f.nextFD
	f.nextFD++
	f.open[fd] = true
	return fd, nil
}

func (f *fakeSys) Spawn(fd int, c *sys.SpawnTemplateSpawnCall) (int, int, error) {
	f.spawned = append(f.spawned, fd)
	f.lastCall = c
	if !f.open[fd] {
		return -1, -1, unix.EBADF
	}
	if len(f.spawnErrs) > 0 {
		err := f.spawnErrs[0]
		f.spawnErrs = f.spawnErrs[1:]
		if err != nil {
			return -1, -1, err
		}
	}
	f.childDied = 0
	for _, a := range c.Actions() {
		if a.Type != sys.SPAWN_TEMPLATE_ACTION_FCHDIR {
			continue
		}
		fl, err := unix.FcntlInt(uintptr(a.Fd), unix.F_GETFL, 0)
		if err != nil || fl&unix.O_PATH != 0 {
			f.childDied = 1
			break
		}
	}
	return 4242, 77, nil
}

func (f *fakeSys) FDLink(fd int) (string, error) {
	if !f.open[fd] {
		return "", unix.ENOENT
	}
	return f.link, nil
}

func (f *fakeSys) Close(fd int) error {
	if !f.open[fd] {
		return unix.EBADF
	}
	delete(f.open, fd)
	f.closed = append(f.closed, fd)
	return nil
}

func (f *fakeSys) Gettid() int { return f.tid }

var _ KernelSys = sys.SpawnTemplateSyscalls{} // the real one satisfies the interface

func simpleSpec() SpawnSpec {
	return SpawnSpec{Argv: []string{"rg", "x"}, Envp: []string{"PATH=/usr/bin"}, Stdin: NoFD, Stdout: 20, Stderr: 21, DirFD: NoFD}
}

func TestKernelSpawnHit(t *testing.T) {
	f := newFakeSys()
	k, err := NewKernel(f, "/usr/bin/rg")
	if err != nil {
		t.Fatal(err)
	}
	pid, pidfd, recreated, err := k.Spawn(simpleSpec())
	if err != nil || pid != 4242 || pidfd != 77 || recreated {
		t.Fatalf("Spawn = %d, %d, %v, %v", pid, pidfd, recreated, err)
	}
	if s := k.Stats(); s != (Stats{Hits: 1, Creations: 1}) {
		t.Fatalf("Stats = %+v", s)
	}
	if err := k.Close(); err != nil || len(f.open) != 0 {
		t.Fatalf("Close: %v, still open %v", err, f.open)
	}
	if _, _, _, err := k.Spawn(simpleSpec()); !errors.Is(err, unix.EBADF) {
		t.Fatalf("Spawn after Close: %v", err)
	}
}

func TestKernelSpawnRecreate(t *testing.T) {
	for _, c := range []struct {
		name  string
		errno unix.Errno
	}{
		{"stale", unix.ESTALE},
		{"cred mismatch", unix.EACCES},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFakeSys()
			k, err := NewKernel(f, "/usr/bin/rg")
			if err != nil {
				t.Fatal(err)
			}
			first := k.FD()
			f.spawnErrs = []error{c.errno}
			f.tid = 100 // same thread; the kernel's credentials changed under it
			pid, _, recreated, err := k.Spawn(simpleSpec())
			if err != nil || pid != 4242 || !recreated {
				t.Fatalf("Spawn = %d, %v, %v; want success after recreating", pid, recreated, err)
			}
			if len(f.created) != 2 || f.created[1] != "/usr/bin/rg" {
				t.Fatalf("creates %v, want two of /usr/bin/rg", f.created)
			}
			if len(f.closed) != 1 || f.closed[0] != first || f.open[first] {
				t.Fatalf("old fd %d not closed (closed %v)", first, f.closed)
			}
			if k.FD() == first || !f.open[k.FD()] || f.spawned[1] != k.FD() {
				t.Fatalf("retry used fd %d; template fd now %d", f.spawned[1], k.FD())
			}
			if s := k.Stats(); s != (Stats{Recreations: 1, Creations: 2}) {
				t.Fatalf("Stats = %+v", s)
			}
			// The next spawn is a plain hit on the new template.
			if _, _, recreated, err := k.Spawn(simpleSpec()); err != nil || recreated {
				t.Fatalf("next Spawn = %v, %v", recreated, err)
			}
		})
	}
}

func TestKernelSpawnSecondFailure(t *testing.T) {
	f := newFakeSys()
	k, _ := NewKernel(f, "/usr/bin/rg")
	f.spawnErrs = []error{unix.ESTALE, unix.ESTALE}
	_, _, recreated, err := k.Spawn(simpleSpec())
	if err == nil || !errors.Is(err, unix.ESTALE) || !strings.Contains(err.Error(), "after recreating") {
		t.Fatalf("double ESTALE: %v", err)
	}
	if !recreated || len(f.spawned) != 2 {
		t.Fatalf("recreated=%v, %d spawn calls; want exactly one retry", recreated, len(f.spawned))
	}
}

func TestKernelSpawnRecreateFails(t *testing.T) {
	f := newFakeSys()
	k, _ := NewKernel(f, "/usr/bin/rg")
	f.spawnErrs = []error{unix.ESTALE}
	f.createErrs = []error{unix.ENOENT} // the binary was removed
	_, _, _, err := k.Spawn(simpleSpec())
	var ce *KernelCreateError
	if !errors.Is(err, unix.ENOENT) || !errors.As(err, &ce) {
		t.Fatalf("recreate failure: %v", err)
	}
	if len(f.open) != 0 {
		t.Fatalf("fds left open: %v", f.open)
	}
	if _, _, _, err := k.Spawn(simpleSpec()); !errors.Is(err, unix.EBADF) {
		t.Fatalf("Spawn on a dead template: %v", err)
	}
}

func TestKernelCreateFallback(t *testing.T) {
	script := filepath.Join(t.TempDir(), "tool.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	f := newFakeSys()
	f.createErrs = []error{unix.ENOEXEC}
	_, err := NewKernel(f, script)
	if !errors.Is(err, ErrNotELF) || !errors.Is(err, unix.ENOEXEC) {
		t.Fatalf("NewKernel of a script: %v, want ErrNotELF", err)
	}
	// The caller's fallback: the userspace backend takes the same tool.
	u, err := New(script)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if u.ELF {
		t.Fatal("script reported as ELF")
	}

	// NewKernelFor refuses the script before any syscall.
	f = newFakeSys()
	if _, err := NewKernelFor(f, u); !errors.Is(err, ErrNotELF) || len(f.created) != 0 {
		t.Fatalf("NewKernelFor(script) = %v after %d creates", err, len(f.created))
	}
	elf, err := New(binary(t, "true"))
	if err != nil {
		t.Fatal(err)
	}
	defer elf.Close()
	if k, err := NewKernelFor(f, elf); err != nil || len(f.created) != 1 || f.created[0] != elf.Path {
		t.Fatalf("NewKernelFor(true) = %v, creates %v", err, f.created)
	} else {
		k.Close()
	}

	f = newFakeSys()
	f.createErrs = []error{unix.EACCES}
	if _, err := NewKernel(f, "/usr/bin/rg"); errors.Is(err, ErrNotELF) || !errors.Is(err, unix.EACCES) {
		t.Fatalf("EACCES create: %v", err)
	}
	if _, err := NewKernel(newFakeSys(), "usr/bin/rg"); !errors.Is(err, unix.EINVAL) || !strings.Contains(err.Error(), "filename") {
		t.Fatalf("relative path: %v, want EINVAL naming filename", err)
	}
}

func TestKernelCreateWrongLink(t *testing.T) {
	f := newFakeSys()
	f.link = "anon_inode:[eventfd]" // 472 is another syscall on this kernel
	_, err := NewKernel(f, "/usr/bin/rg")
	if !errors.Is(err, ErrNotSpawnTemplate) || !strings.Contains(err.Error(), "eventfd") {
		t.Fatalf("wrong link: %v", err)
	}
	if len(f.open) != 0 {
		t.Fatalf("the foreign fd was not closed: %v", f.open)
	}
}

func TestKernelSpawnWrongThread(t *testing.T) {
	f := newFakeSys()
	k, _ := NewKernel(f, "/usr/bin/rg")
	f.tid = 101
	if _, _, _, err := k.Spawn(simpleSpec()); !errors.Is(err, ErrWrongThread) {
		t.Fatalf("other thread: %v", err)
	}
	if len(f.spawned) != 0 {
		t.Fatal("spawn called from the wrong thread")
	}
}

func TestKernelSpawnFieldErrors(t *testing.T) {
	f := newFakeSys()
	k, _ := NewKernel(f, "/usr/bin/rg")

	s := simpleSpec()
	for i := range 300 {
		s.ExtraFDs = append(s.ExtraFDs, 30+i)
	}
	_, _, _, err := k.Spawn(s)
	var se *KernelSpawnError
	if !errors.Is(err, unix.E2BIG) || !errors.As(err, &se) || se.Field != "actions_len" ||
		!strings.Contains(err.Error(), "actions_len") || !strings.Contains(err.Error(), "ExtraFDs") {
		t.Fatalf("300 extra fds: %v", err)
	}
	if len(f.spawned) != 0 {
		t.Fatal("spawn called with an oversized action list")
	}

	for _, c := range []struct {
		errno unix.Errno
		field string
	}{
		{unix.E2BIG, "actions_len"},
		{unix.EINVAL, "flags, pidfd, reserved or an action's unused fields"},
	} {
		f.spawnErrs = []error{c.errno}
		_, _, _, err := k.Spawn(simpleSpec())
		if !errors.Is(err, c.errno) || !errors.As(err, &se) || se.Field != c.field || !strings.Contains(err.Error(), c.field) {
			t.Errorf("kernel %v: %v, want field %q", c.errno, err, c.field)
		}
	}

	bad := simpleSpec()
	bad.Argv = nil
	if _, _, _, err := k.Spawn(bad); !errors.As(err, &se) || se.Field != "argv" {
		t.Errorf("empty argv: %v", err)
	}
	bad = simpleSpec()
	bad.Envp = []string{"A=\x00"}
	if _, _, _, err := k.Spawn(bad); !errors.As(err, &se) || se.Field != "envp[0]" {
		t.Errorf("NUL in envp: %v", err)
	}
	bad = simpleSpec()
	bad.ExtraFDs = []int{5, -3}
	if _, _, _, err := k.Spawn(bad); !errors.As(err, &se) || se.Field != "SpawnSpec.ExtraFDs[1]" {
		t.Errorf("negative extra fd: %v", err)
	}
}

// act is a readable form of one encoded action.
type act struct {
	typ       uint32
	flags     uint32
	fd, newfd int32
	hasArg    bool
}

func acts(c *sys.SpawnTemplateSpawnCall) []act {
	var out []act
	for _, a := range c.Actions() {
		out = append(out, act{a.Type, a.Flags, a.Fd, a.Newfd, a.Arg != 0})
	}
	return out
}

const (
	aDup2   = sys.SPAWN_TEMPLATE_ACTION_DUP2
	aFchdir = sys.SPAWN_TEMPLATE_ACTION_FCHDIR
	aOpen   = sys.SPAWN_TEMPLATE_ACTION_OPEN
	aRange  = sys.SPAWN_TEMPLATE_ACTION_CLOSE_RANGE
	aMask   = sys.SPAWN_TEMPLATE_ACTION_SIGMASK
	aDef    = sys.SPAWN_TEMPLATE_ACTION_SIGDEFAULT
)

func TestEncodeSpawn(t *testing.T) {
	for _, c := range []struct {
		name  string
		spec  SpawnSpec
		flags uint64
		want  []act
	}{
		{
			name: "pipes, /dev/null stdin, cwd, signals",
			spec: SpawnSpec{Argv: []string{"rg"}, Stdin: NoFD, Stdout: 20, Stderr: 21, DirFD: 9, ResetSignals: true},
			want: []act{
				{aFchdir, 0, 9, 0, false},
				{aOpen, 0, unix.AT_FDCWD, 0, true},
				{aDup2, 0, 20, 1, false},
				{aDup2, 0, 21, 2, false},
				{aMask, 0, 0, 0, true},
				{aDef, 0, 0, 0, true},
			},
		},
		{
			name: "stdin path, shared stdout/stderr, no dir",
			spec: SpawnSpec{Argv: []string{"cat"}, StdinPath: "/etc/hostname", Stdin: 7, Stdout: 8, Stderr: 8, DirFD: NoFD},
			want: []act{
				{aOpen, 0, unix.AT_FDCWD, 0, true},
				{aDup2, 0, 8, 1, false},
				{aDup2, 0, 8, 2, false},
			},
		},
		{
			// Sources inside the target range are moved above every fd first (with
			// O_CLOEXEC), so stdout=0 survives the stdin install and fd 1 → 1 loses
			// the caller's close-on-exec.
			name: "sources in the target range",
			spec: SpawnSpec{Argv: []string{"x"}, Stdin: 2, Stdout: 0, Stderr: 2, DirFD: NoFD},
			want: []act{
				{aDup2, unix.O_CLOEXEC, 2, 3, false},
				{aDup2, unix.O_CLOEXEC, 0, 4, false},
				{aDup2, 0, 3, 0, false},
				{aDup2, 0, 4, 1, false},
				{aDup2, 0, 3, 2, false},
			},
		},
		{
			name:  "extra fds",
			spec:  SpawnSpec{Argv: []string{"x"}, Stdin: 10, Stdout: 11, Stderr: NoFD, DirFD: NoFD, ExtraFDs: []int{12, 3}},
			flags: sys.SPAWN_TEMPLATE_SPAWN_INHERIT_FDS,
			want: []act{
				{aDup2, unix.O_CLOEXEC, 3, 13, false},
				{aDup2, 0, 10, 0, false},
				{aDup2, 0, 11, 1, false},
				{aOpen, 0, unix.AT_FDCWD, 2, true},
				{aDup2, 0, 12, 3, false},
				{aDup2, 0, 13, 4, false},
				{aRange, 0, 5, sys.SpawnTemplateCloseRangeMax, false},
			},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			call, err := encodeSpawn(c.spec)
			if err != nil {
				t.Fatal(err)
			}
			got := acts(call)
			if fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Fatalf("actions\n got %v\nwant %v", got, c.want)
			}
			if call.Args.Flags != c.flags || call.Args.ActionsLen != uint64(len(c.want)) || call.Args.Pidfd == 0 {
				t.Fatalf("args %+v", call.Args)
			}
		})
	}
}
