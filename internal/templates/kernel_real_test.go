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
