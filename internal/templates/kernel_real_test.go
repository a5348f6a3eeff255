package templates

import (
	"io"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// requireKernelTemplates skips unless this kernel carries the spawn_template RFC
// series (the VM tier with a patched kernel; no CI kernel has it).
func requireKernelTemplates(t testing.TB) KernelSys {
	t.Helper()
	p := ProbeKernel(0, 0)
	if !p.Available {
		if kernelTemplatesRequired() {
			t.Fatalf("%s=1 (the VM tier's RFC kernel): the spawn_template syscalls must be usable: %s", requireKernelTemplatesEnv, p.Reason)
		}
		t.Skipf("requires the spawn_template syscalls (Linux RFC series): %s", p.Reason)
	}
	ks, err := p.Syscalls()
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

// kernelRun spawns spec from k, returns what the child wrote to stdout and its
// decoded status.
func kernelRun(t *testing.T, k *KernelTemplate, spec SpawnSpec) (string, bool, ChildStatus) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	spec.Stdout = int(w.Fd())
	pid, pidfd, recreated, err := k.Spawn(spec)
	w.Close()
	if err != nil {
		t.Fatalf("Spawn: %v", err)
	}
	defer unix.Close(pidfd)
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil {
		t.Fatalf("wait4 %d: %v", pid, err)
	}
	return string(out), recreated, DecodeKernelWaitStatus(ws)
}

// TestKernelBackendReal exercises the kernel backend on a kernel that has it: output
// through a DUP2'd pipe, an OPEN failure reported as 127, and a rename-replaced
// binary recreated transparently.
func TestKernelBackendReal(t *testing.T) {
	ks := requireKernelTemplates(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	dir := t.TempDir()
	path := copyFile(t, binary(t, "echo"), filepath.Join(dir, "echo"), 0o755)
	k, err := NewKernel(ks, path)
	if err != nil {
		t.Fatalf("NewKernel: %v", err)
	}
	defer k.Close()
	if link, err := ks.FDLink(k.FD()); err != nil || link != "anon_inode:spawn_template" {
		t.Fatalf("template fd links to %q, %v", link, err)
	}

	spec := SpawnSpec{Argv: []string{"echo", "hi"}, Stdin: NoFD, Stderr: NoFD, DirFD: NoFD, ResetSignals: true}
	out, recreated, st := kernelRun(t, k, spec)
	if out != "hi\n" || recreated || st != (ChildStatus{}) {
		t.Fatalf("echo hi: %q, recreated=%v, %+v", out, recreated, st)
	}

	bad := spec
	bad.StdinPath = filepath.Join(dir, "missing")
	if _, _, st := kernelRun(t, k, bad); !st.ExecFailed || st.ExitCode != 127 {
		t.Fatalf("OPEN of a missing stdin: %+v, want exec failure 127", st)
	}

	tmp := copyFile(t, binary(t, "printf"), filepath.Join(dir, ".echo.new"), 0o755)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	spec.Argv = []string{"printf", "new"}
	out, recreated, st = kernelRun(t, k, spec)
	if out != "new" || !recreated || st != (ChildStatus{}) {
		t.Fatalf("after rename: %q, recreated=%v, %+v", out, recreated, st)
	}
	if s := k.Stats(); s.Recreations != 1 {
		t.Fatalf("Stats = %+v", s)
	}
}

// The working directory of a kernel-template child, on a kernel that has the
// syscalls: without FCHDIR the child starts in the calling thread's working
// directory (the RFC clones without CLONE_FS, so a thread that unshared CLONE_FS
// passes its own: the spawner's kernel launcher relies on it, internal/spawner
// kernelCwd), and FCHDIR still moves it (TestKernelBackendRealDirFD has the
// O_PATH case).
func TestKernelWorkingDirectoryReal(t *testing.T) {
	ks := requireKernelTemplates(t)
	pwd := binary(t, "pwd")
	dir, other := t.TempDir(), t.TempDir()
	type outcome struct {
		out string
		st  ChildStatus
		err error
	}
	results := make(chan []outcome, 1)
	go func() {
		// This thread gets a working directory of its own: it is never unlocked, so
		// it ends with the goroutine and no other goroutine runs in that directory.
		runtime.LockOSThread()
		var res []outcome
		defer func() { results <- res }()
		fail := func(err error) { res = append(res, outcome{err: err}) }
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			fail(err)
			return
		}
		if err := unix.Chdir(dir); err != nil {
			fail(err)
			return
		}
		k, err := NewKernel(ks, pwd)
		if err != nil {
			fail(err)
			return
		}
		defer k.Close()
		rdFD, err := unix.Open(other, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			fail(err)
			return
		}
		defer unix.Close(rdFD)
		for _, dirFD := range []int{NoFD, rdFD} {
			r, w, err := os.Pipe()
			if err != nil {
				fail(err)
				return
			}
			pid, pidfd, _, err := k.Spawn(SpawnSpec{Argv: []string{"pwd"}, Stdin: NoFD, Stdout: int(w.Fd()), Stderr: NoFD, DirFD: dirFD, ResetSignals: true})
			w.Close()
			if err != nil {
				r.Close()
				fail(err)
				return
			}
			out, _ := io.ReadAll(r)
			r.Close()
			unix.Close(pidfd)
			var ws syscall.WaitStatus
			_, err = syscall.Wait4(pid, &ws, 0, nil)
			res = append(res, outcome{out: string(out), st: DecodeKernelWaitStatus(ws), err: err})
		}
	}()
	res := <-results
	if len(res) != 2 {
		t.Fatalf("setup: %+v", res)
	}
	if res[0].err != nil || res[0].out != dir+"\n" || res[0].st != (ChildStatus{}) {
		t.Errorf("no FCHDIR from a thread in %s: %+v; want the thread's directory", dir, res[0])
	}
	if res[1].err != nil || res[1].out != other+"\n" || res[1].st != (ChildStatus{}) {
		t.Errorf("FCHDIR to a readable fd of %s: %+v", other, res[1])
	}
}
