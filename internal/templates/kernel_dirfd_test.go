package templates

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec/internal/sys"
)

// openDir opens dir with flags and closes it at the end of the test.
func openDir(t *testing.T, dir string, flags int) int {
	t.Helper()
	fd, err := unix.Open(dir, flags|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// The RFC's FCHDIR skips O_PATH fds (fdget): a child given one dies before exec
// with status 1. Spawn refuses such a DirFD before any child exists; the fake
// applies the RFC's rule, so that the control (the same spec encoded and spawned
// without that check) shows the child the kernel would have killed.
func TestKernelSpawnRefusesOPathDirFD(t *testing.T) {
	dir := t.TempDir()
	f := newFakeSys()
	k, err := NewKernel(f, "/usr/bin/rg")
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()

	spec := simpleSpec()
	spec.DirFD = openDir(t, dir, unix.O_PATH)
	_, _, _, err = k.Spawn(spec)
	var se *KernelSpawnError
	if !errors.Is(err, ErrDirFDPath) || !errors.As(err, &se) || se.Field != "SpawnSpec.DirFD" {
		t.Fatalf("Spawn with an O_PATH DirFD: %v, want ErrDirFDPath naming SpawnSpec.DirFD", err)
	}
	if len(f.spawned) != 0 {
		t.Fatalf("the kernel was called (%v) with an O_PATH DirFD", f.spawned)
	}

	// Control: without the check the spawn "succeeds" and the child dies with 1.
	c, err := encodeSpawn(spec)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.Spawn(k.FD(), c); err != nil || f.childDied != 1 {
		t.Fatalf("control: spawn %v, child died with %d; want the RFC's status 1", err, f.childDied)
	}

	// A readable directory fd is what FCHDIR takes.
	spec.DirFD = openDir(t, dir, unix.O_RDONLY)
	if _, _, _, err := k.Spawn(spec); err != nil || f.childDied != 0 {
		t.Fatalf("Spawn with an O_RDONLY|O_DIRECTORY DirFD: %v, child died with %d", err, f.childDied)
	}
	if got := acts(f.lastCall); len(got) == 0 || got[0].typ != sys.SPAWN_TEMPLATE_ACTION_FCHDIR || int(got[0].fd) != spec.DirFD {
		t.Fatalf("first action %v, want FCHDIR(%d)", got, spec.DirFD)
	}

	// A closed fd is refused too, naming the field.
	closed := openDir(t, dir, unix.O_RDONLY)
	unix.Close(closed)
	spec.DirFD = closed
	if _, _, _, err := k.Spawn(spec); !errors.Is(err, unix.EBADF) || !errors.As(err, &se) || se.Field != "SpawnSpec.DirFD" {
		t.Fatalf("Spawn with a closed DirFD: %v", err)
	}
}

// TestKernelBackendRealDirFD runs a child in a directory through FCHDIR on a kernel
// with the RFC: with an O_RDONLY|O_DIRECTORY fd it starts there; the control gives
// the kernel an O_PATH fd past Spawn's check, and the child dies before exec with
// the raw status 1 (CLD_KILLED 1, "killed by SIGHUP or launch action failed").
func TestKernelBackendRealDirFD(t *testing.T) {
	ks := requireKernelTemplates(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	k, err := NewKernel(ks, binary(t, "sh"))
	if err != nil {
		t.Fatalf("NewKernel: %v", err)
	}
	defer k.Close()

	spec := SpawnSpec{Argv: []string{"sh", "-c", "pwd"}, Stdin: NoFD, Stderr: NoFD, ResetSignals: true}
	spec.DirFD = openDir(t, dir, unix.O_RDONLY)
	out, _, st := kernelRun(t, k, spec)
	if strings.TrimSpace(out) != dir || st != (ChildStatus{}) {
		t.Fatalf("pwd with DirFD on %s: %q, %+v", dir, out, st)
	}

	// Control: the RFC's FCHDIR with an O_PATH fd.
	opath := openDir(t, dir, unix.O_PATH)
	spec.DirFD = opath
	if _, _, _, err := k.Spawn(spec); !errors.Is(err, ErrDirFDPath) {
		t.Fatalf("Spawn with an O_PATH DirFD: %v, want ErrDirFDPath", err)
	}
	c, err := encodeSpawn(spec)
	if err != nil {
		t.Fatal(err)
	}
	pid, pidfd, err := ks.Spawn(k.FD(), c)
	if err != nil {
		t.Fatalf("control: spawn_template_spawn: %v", err)
	}
	defer unix.Close(pidfd)
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil {
		t.Fatal(err)
	}
	if cs := DecodeKernelWaitStatus(ws); !cs.Ambiguous {
		t.Fatalf("control: a child given an O_PATH FCHDIR fd ended with %#x (%+v); the RFC kills it with status 1", uint32(ws), cs)
	}
}

// requireKernelTemplatesEnv is set in the VM tier's RFC-kernel guests: there the
// kernel backend's tests must run, and a missing backend fails them.
const requireKernelTemplatesEnv = "AGENTEXEC_REQUIRE_SPAWN_TEMPLATE"

func kernelTemplatesRequired() bool { return os.Getenv(requireKernelTemplatesEnv) == "1" }
