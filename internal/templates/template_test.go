package templates

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// binary returns the absolute path of a host binary, resolving symlinks.
func binary(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("test needs %s: %v", name, err)
	}
	p, err = filepath.EvalSymlinks(p)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// copyFile copies src to dst (created, mode) and returns dst.
func copyFile(t testing.TB, src, dst string, mode os.FileMode) string {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

// run execs path with argv[0] set to name and returns its exit status. A tool is
// launched by its name, and a multi-call binary (busybox, whose copied "true" is a
// copy of busybox) chooses what to be by it.
func run(t testing.TB, path, name string) int {
	t.Helper()
	cmd := exec.Command(path)
	cmd.Args[0] = name
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	default:
		t.Fatalf("run %s: %v", path, err)
		return -1
	}
}

func fdIno(t testing.TB, fd int) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func TestNewAndHit(t *testing.T) {
	path := copyFile(t, binary(t, "true"), filepath.Join(t.TempDir(), "tool"), 0o755)
	tm, err := New(path)
	if err != nil {
		t.Fatal(err)
	}
	defer tm.Close()
	if !tm.ELF {
		t.Error("copy of true: ELF = false")
	}
	id, err := IdentityOf(path)
	if err != nil {
		t.Fatal(err)
	}
	if tm.ID != id || id.Ino == 0 || id.Size == 0 || id.Mode&unix.S_IFMT != unix.S_IFREG || id.Mode&0o777 != 0o755 {
		t.Fatalf("template ID %v, IdentityOf %v", tm.ID, id)
	}
	if fdIno(t, tm.FD) != id.Ino {
		t.Fatal("FD does not refer to the file of ID")
	}
	for range 3 {
		recreated, err := tm.Revalidate()
		if err != nil || recreated {
			t.Fatalf("Revalidate on an unchanged binary = %v, %v", recreated, err)
		}
	}
	if s := tm.Stats(); s != (Stats{Hits: 3, Creations: 1}) {
		t.Fatalf("Stats = %+v, want 3 hits, 1 creation", s)
	}
}

func TestRevalidateRenameReplaced(t *testing.T) {
	dir := t.TempDir()
	path := copyFile(t, binary(t, "true"), filepath.Join(dir, "tool"), 0o755)
	tm, err := New(path)
	if err != nil {
		t.Fatal(err)
	}
	defer tm.Close()
	oldID, oldFD := tm.ID, tm.FD
	if got := run(t, tm.Path, "true"); got != 0 {
		t.Fatalf("true exited %d", got)
	}

	// What a package manager does: write the new version beside, rename it over.
	tmp := copyFile(t, binary(t, "false"), filepath.Join(dir, ".tool.new"), 0o755)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	recreated, err := tm.Revalidate()
	if err != nil || !recreated {
		t.Fatalf("Revalidate after rename = %v, %v; want recreated", recreated, err)
	}
	newID, _ := IdentityOf(path)
	if tm.ID != newID || tm.ID.Ino == oldID.Ino {
		t.Fatalf("ID after recreate %v, want the new file's %v (old ino %d)", tm.ID, newID, oldID.Ino)
	}
	if fdIno(t, tm.FD) != newID.Ino {
		t.Fatal("FD still refers to the old inode")
	}
	if _, err := unix.FcntlInt(uintptr(oldFD), unix.F_GETFD, 0); err == nil && oldFD != tm.FD {
		t.Fatalf("old fd %d is still open", oldFD)
	}
	if got := run(t, tm.Snapshot().Path, "false"); got != 1 {
		t.Fatalf("launch after recreate exited %d, want 1 (the new binary is false)", got)
	}
	if recreated, err := tm.Revalidate(); err != nil || recreated {
		t.Fatalf("second Revalidate = %v, %v; want a hit", recreated, err)
	}
	if s := tm.Stats(); s != (Stats{Hits: 1, Recreations: 1, Creations: 2}) {
		t.Fatalf("Stats = %+v", s)
	}
}

func TestRevalidateInPlaceRewrite(t *testing.T) {
	t.Run("size", func(t *testing.T) {
		path := copyFile(t, binary(t, "true"), filepath.Join(t.TempDir(), "tool"), 0o755)
		tm, err := New(path)
		if err != nil {
			t.Fatal(err)
		}
		defer tm.Close()
		old := tm.ID
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write([]byte("appended by an in-place writer")); err != nil {
			t.Fatal(err)
		}
		f.Close()
		recreated, err := tm.Revalidate()
		if err != nil || !recreated {
			t.Fatalf("Revalidate after an in-place append = %v, %v; want recreated", recreated, err)
		}
		if tm.ID.Ino != old.Ino || tm.ID.Size != old.Size+30 {
			t.Fatalf("ID %v; want the same inode %d with size %d", tm.ID, old.Ino, old.Size+30)
		}
	})
	t.Run("mtime", func(t *testing.T) {
		path := copyFile(t, binary(t, "true"), filepath.Join(t.TempDir(), "tool"), 0o755)
		tm, err := New(path)
		if err != nil {
			t.Fatal(err)
		}
		defer tm.Close()
		old := tm.ID
		// Same size and inode, different content date (a same-length rewrite).
		when := time.Date(2020, 1, 2, 3, 4, 5, 6000, time.UTC)
		if err := os.Chtimes(path, when, when); err != nil {
			t.Fatal(err)
		}
		recreated, err := tm.Revalidate()
		if err != nil || !recreated {
			t.Fatalf("Revalidate after an mtime change = %v, %v; want recreated", recreated, err)
		}
		if tm.ID.Ino != old.Ino || tm.ID.Size != old.Size || tm.ID.Mtime != when.UnixNano() {
			t.Fatalf("ID %v; want inode %d, size %d, mtime %d", tm.ID, old.Ino, old.Size, when.UnixNano())
		}
	})
	t.Run("chmod", func(t *testing.T) {
		path := copyFile(t, binary(t, "true"), filepath.Join(t.TempDir(), "tool"), 0o755)
		tm, err := New(path)
		if err != nil {
			t.Fatal(err)
		}
		defer tm.Close()
		if err := os.Chmod(path, 0o700); err != nil {
			t.Fatal(err)
		}
		if recreated, err := tm.Revalidate(); err != nil || !recreated || tm.ID.Mode&0o777 != 0o700 {
			t.Fatalf("Revalidate after chmod = %v, %v, mode %#o", recreated, err, tm.ID.Mode&0o777)
		}
	})
}

func TestRevalidateRemoved(t *testing.T) {
	path := copyFile(t, binary(t, "true"), filepath.Join(t.TempDir(), "tool"), 0o755)
	tm, err := New(path)
	if err != nil {
		t.Fatal(err)
	}
	defer tm.Close()
	before := tm.Snapshot()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	recreated, err := tm.Revalidate()
	if recreated || !errors.Is(err, unix.ENOENT) {
		t.Fatalf("Revalidate of a removed binary = %v, %v; want ENOENT", recreated, err)
	}
	if tm.Snapshot().ID != before.ID {
		t.Fatal("a failed Revalidate changed the template")
	}
	// A launch by path now reports "not found" as 127.
	_, err = syscall.ForkExec(tm.Path, []string{"tool"}, &syscall.ProcAttr{})
	if st, msg := ExitStatusForExecError(err); st != 127 || msg != "not found" {
		t.Fatalf("exec of the removed binary: %v → %d %q, want 127 not found", err, st, msg)
	}
}

func TestNewErrors(t *testing.T) {
	if _, err := New("bin/true"); err == nil {
		t.Error("relative path accepted")
	}
	if _, err := New(t.TempDir()); !errors.Is(err, ErrNotRegular) {
		t.Errorf("directory: err = %v, want ErrNotRegular", err)
	}
	if _, err := New("/nonexistent/agentexec-tool"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing: err = %v, want ErrNotExist", err)
	}
	script := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tm, err := New(script)
	if err != nil {
		t.Fatal(err)
	}
	defer tm.Close()
	if tm.ELF {
		t.Error("script: ELF = true")
	}
	if got := run(t, tm.Path, "script"); got != 3 {
		t.Errorf("script exited %d, want 3", got)
	}
}

func TestClose(t *testing.T) {
	tm, err := New(binary(t, "true"))
	if err != nil {
		t.Fatal(err)
	}
	fd := tm.FD
	if err := tm.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); !errors.Is(err, unix.EBADF) {
		t.Fatalf("fd %d still open after Close (%v)", fd, err)
	}
	if err := tm.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := tm.Revalidate(); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Revalidate after Close: %v, want ErrClosed", err)
	}
}

func TestRevalidateAllocs(t *testing.T) {
	tm, err := New(binary(t, "true"))
	if err != nil {
		t.Fatal(err)
	}
	defer tm.Close()
	if n := testing.AllocsPerRun(200, func() {
		if _, err := tm.Revalidate(); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("Revalidate of a valid template allocates %v times, want 0", n)
	}
}

// TestRevalidateConcurrent replaces the binary while goroutines revalidate and take
// snapshots; run with -race. Every snapshot must describe a whole file: its ID must
// be the identity of the old or of the new binary, never a mix.
func TestRevalidateConcurrent(t *testing.T) {
	dir := t.TempDir()
	path := copyFile(t, binary(t, "true"), filepath.Join(dir, "tool"), 0o755)
	tm, err := New(path)
	if err != nil {
		t.Fatal(err)
	}
	defer tm.Close()
	oldID := tm.ID
	newPath := copyFile(t, binary(t, "false"), filepath.Join(dir, "new"), 0o755)
	newID, _ := IdentityOf(newPath)

	var wg sync.WaitGroup
	errc := make(chan error, 8)
	for range 4 {
		wg.Go(func() {
			for range 200 {
				if _, err := tm.Revalidate(); err != nil {
					errc <- err
					return
				}
				if s := tm.Snapshot(); s.ID != oldID && s.ID.Ino != newID.Ino {
					errc <- errors.New("snapshot with a foreign identity")
					return
				}
			}
		})
	}
	if err := os.Rename(newPath, path); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	if _, err := tm.Revalidate(); err != nil {
		t.Fatal(err)
	}
	if s := tm.Stats(); s.Recreations != 1 {
		t.Fatalf("Recreations = %d, want exactly 1", s.Recreations)
	}
}
