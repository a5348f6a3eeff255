package templates

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
)

// BenchmarkRevalidate measures the per-launch cost of the userspace backend: one
// statx of the path and a comparison (0 allocs).
func BenchmarkRevalidate(b *testing.B) {
	tm, err := New(binary(b, "true"))
	if err != nil {
		b.Fatal(err)
	}
	defer tm.Close()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tm.Revalidate(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLookPath is the per-launch cost a template saves over os/exec with a bare
// name: exec.LookPath walks PATH with one stat per directory until it finds the tool.
// Compare with BenchmarkRevalidate, which is what a template pays instead.
func BenchmarkLookPath(b *testing.B) {
	b.Setenv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := exec.LookPath("true"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLaunch compares, in one run, launching and reaping true through a userspace
// template (Revalidate + ForkExec of the absolute path), plain os/exec of the same
// absolute path, and os/exec with a PATH lookup. Every variant gets /dev/null as
// stdio (os/exec given *os.File copies no data), so the difference is the launch path.
func BenchmarkLaunch(b *testing.B) {
	abs := binary(b, "true")
	dir := filepath.Dir(abs)
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer devnull.Close()
	env := []string{"PATH=" + dir}

	b.Run("template-forkexec", func(b *testing.B) {
		tm, err := New(abs)
		if err != nil {
			b.Fatal(err)
		}
		defer tm.Close()
		attr := &syscall.ProcAttr{Env: env, Files: []uintptr{devnull.Fd(), devnull.Fd(), devnull.Fd()}}
		argv := []string{"true"}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := tm.Revalidate(); err != nil {
				b.Fatal(err)
			}
			pid, err := syscall.ForkExec(tm.Path, argv, attr)
			if err != nil {
				b.Fatal(err)
			}
			var ws syscall.WaitStatus
			if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil || ws.ExitStatus() != 0 {
				b.Fatalf("wait: %v %v", ws, err)
			}
		}
	})
	b.Run("osexec-abs", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			cmd := exec.Command(abs)
			cmd.Env, cmd.Stdin, cmd.Stdout, cmd.Stderr = env, devnull, devnull, devnull
			if err := cmd.Run(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("osexec-lookpath", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			cmd := exec.Command("true") // LookPath in the process's PATH per launch
			cmd.Env, cmd.Stdin, cmd.Stdout, cmd.Stderr = env, devnull, devnull, devnull
			if err := cmd.Run(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("kernel-template", func(b *testing.B) {
		ks := requireKernelTemplates(b)
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		k, err := NewKernel(ks, abs)
		if err != nil {
			b.Fatal(err)
		}
		defer k.Close()
		fd := int(devnull.Fd())
		spec := SpawnSpec{Argv: []string{"true"}, Envp: env, Stdin: fd, Stdout: fd, Stderr: fd, DirFD: NoFD}
		b.ReportAllocs()
		for b.Loop() {
			pid, pidfd, _, err := k.Spawn(spec)
			if err != nil {
				b.Fatal(err)
			}
			var ws syscall.WaitStatus
			if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil || ws.ExitStatus() != 0 {
				b.Fatalf("wait: %v %v", ws, err)
			}
			syscall.Close(pidfd)
		}
	})
}
