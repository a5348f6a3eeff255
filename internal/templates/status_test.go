package templates

import (
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func TestExitStatusForExecError(t *testing.T) {
	dir := t.TempDir()
	noexec := filepath.Join(dir, "noexec")
	if err := os.WriteFile(noexec, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(dir, "garbage")
	if err := os.WriteFile(garbage, []byte{0, 1, 2, 3, 4, 5, 6, 7}, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path   string
		status int
		msg    string
	}{
		{filepath.Join(dir, "missing"), 127, "not found"},
		{noexec, 126, "permission denied"},
		{garbage, 126, "exec format error"},
		{filepath.Join(noexec, "x"), 1, "launch failed: fork/exec " + filepath.Join(noexec, "x") + ": not a directory"},
	} {
		_, err := syscall.ForkExec(c.path, []string{"x"}, &syscall.ProcAttr{})
		if err == nil {
			t.Fatalf("ForkExec %s succeeded", c.path)
		}
		st, msg := ExitStatusForExecError(&os.PathError{Op: "fork/exec", Path: c.path, Err: err})
		if st != c.status || msg != c.msg {
			t.Errorf("%s: %v → %d %q, want %d %q", c.path, err, st, msg, c.status, c.msg)
		}
	}
	if st, msg := ExitStatusForExecError(nil); st != 0 || msg != "" {
		t.Errorf("nil → %d %q", st, msg)
	}
}

func TestDecodeKernelChildStatus(t *testing.T) {
	for _, c := range []struct {
		name         string
		code, status int
		want         ChildStatus
	}{
		{"exit 0", CLD_EXITED, 0, ChildStatus{ExitCode: 0}},
		{"exit 127 by the tool", CLD_EXITED, 127, ChildStatus{ExitCode: 127}},
		{"exec not found", CLD_KILLED, 127, ChildStatus{ExitCode: 127, ExecFailed: true, Message: "not found"}},
		{"exec denied", CLD_KILLED, 126, ChildStatus{ExitCode: 126, ExecFailed: true, Message: "permission denied or exec format error"}},
		{"sighup or action", CLD_KILLED, 1, ChildStatus{ExitCode: -1, Signal: unix.SIGHUP, Ambiguous: true, Message: MsgSIGHUPOrLaunchFailed}},
		{"sigkill", CLD_KILLED, 9, ChildStatus{ExitCode: -1, Signal: unix.SIGKILL}},
		{"segv core", CLD_DUMPED, 11, ChildStatus{ExitCode: -1, Signal: unix.SIGSEGV}},
	} {
		if got := DecodeKernelChildStatus(c.code, c.status); got != c.want {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
	}
}

func TestDecodeKernelWaitStatus(t *testing.T) {
	for _, c := range []struct {
		name string
		ws   syscall.WaitStatus
		want ChildStatus
	}{
		{"exit 3", 3 << 8, ChildStatus{ExitCode: 3}},
		{"raw 127 reads as stopped", 0x7f, ChildStatus{ExitCode: 127, ExecFailed: true, Message: "not found"}},
		{"raw 126", 126, ChildStatus{ExitCode: 126, ExecFailed: true, Message: "permission denied or exec format error"}},
		{"raw 1", 1, ChildStatus{ExitCode: -1, Signal: unix.SIGHUP, Ambiguous: true, Message: MsgSIGHUPOrLaunchFailed}},
		{"sigterm", 15, ChildStatus{ExitCode: -1, Signal: unix.SIGTERM}},
		{"sigsegv core", 11 | 0x80, ChildStatus{ExitCode: -1, Signal: unix.SIGSEGV}},
	} {
		if got := DecodeKernelWaitStatus(c.ws); got != c.want {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
	}
	// The premise of the decoding: the WIF* view of the raw statuses.
	if ws := syscall.WaitStatus(0x7f); !ws.Stopped() || ws.Exited() {
		t.Error("0x7f should read as stopped to the WIF* macros")
	}
	if ws := syscall.WaitStatus(126); !ws.Signaled() || ws.Signal() != 126 {
		t.Error("126 should read as killed by signal 126")
	}
}

// TestDecodeRealSignals checks DecodeKernelWaitStatus on statuses of real children.
func TestDecodeRealSignals(t *testing.T) {
	if signal.Ignored(syscall.SIGHUP) {
		// A non-interactive sh cannot undo a signal ignored on entry (nohup).
		t.Skip("SIGHUP is ignored in this process (started under nohup?): sh would inherit it")
	}
	sh := binary(t, "sh")
	for _, c := range []struct {
		script string
		want   ChildStatus
	}{
		{"exit 5", ChildStatus{ExitCode: 5}},
		{"kill -HUP $$", ChildStatus{ExitCode: -1, Signal: unix.SIGHUP, Ambiguous: true, Message: MsgSIGHUPOrLaunchFailed}},
		{"kill -TERM $$", ChildStatus{ExitCode: -1, Signal: unix.SIGTERM}},
	} {
		pid, err := syscall.ForkExec(sh, []string{"sh", "-c", c.script}, &syscall.ProcAttr{})
		if err != nil {
			t.Fatal(err)
		}
		var ws syscall.WaitStatus
		if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil {
			t.Fatal(err)
		}
		if got := DecodeKernelWaitStatus(ws); got != c.want {
			t.Errorf("%q: %+v, want %+v", c.script, got, c.want)
		}
		if c.want.Ambiguous && !strings.Contains(DecodeKernelWaitStatus(ws).Message, "SIGHUP") {
			t.Error("ambiguous message must mention SIGHUP")
		}
	}
}
