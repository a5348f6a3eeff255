package templates

import (
	"errors"
	"syscall"

	"golang.org/x/sys/unix"
)

// Exit statuses of exec failures, the same for both backends (the kernel backend's
// child exits with them; the userspace backend maps ForkExec's error to them).
const (
	ExitNotFound      = 127 // ENOENT
	ExitNotExecutable = 126 // EACCES, ENOEXEC
	ExitLaunchFailed  = 1   // any other exec or launch-action failure
)

// ExitStatusForExecError maps an exec error (as returned by syscall.ForkExec or
// os/exec) to the exit status the kernel backend's child would have and a short
// description: ENOENT → 127 "not found", EACCES → 126 "permission denied",
// ENOEXEC → 126 "exec format error", anything else → 1 with the error's text.
func ExitStatusForExecError(err error) (status int, msg string) {
	switch {
	case err == nil:
		return 0, ""
	case errors.Is(err, unix.ENOENT):
		return ExitNotFound, "not found"
	case errors.Is(err, unix.EACCES):
		return ExitNotExecutable, "permission denied"
	case errors.Is(err, unix.ENOEXEC):
		return ExitNotExecutable, "exec format error"
	default:
		return ExitLaunchFailed, "launch failed: " + err.Error()
	}
}

// ChildStatus is a decoded wait status of a kernel-template child.
type ChildStatus struct {
	// ExitCode is the exit status, or -1 when the child was killed by a signal.
	ExitCode int
	// Signal is the signal that killed the child (0 when it exited).
	Signal syscall.Signal
	// ExecFailed reports an exec failure (ExitCode 127 or 126).
	ExecFailed bool
	// Ambiguous is set for CLD_KILLED with status 1: SIGHUP, or a failed launch action
	// or exec error other than ENOENT/EACCES/ENOEXEC. Signal is SIGHUP then.
	Ambiguous bool
	// Message describes an exec failure or the ambiguity, "" otherwise.
	Message string
}

// MsgSIGHUPOrLaunchFailed is the Message of an ambiguous status.
const MsgSIGHUPOrLaunchFailed = "killed by SIGHUP or launch action failed"

func killedStatus(sig int) ChildStatus {
	switch sig {
	case ExitNotFound:
		return ChildStatus{ExitCode: ExitNotFound, ExecFailed: true, Message: "not found"}
	case ExitNotExecutable:
		return ChildStatus{ExitCode: ExitNotExecutable, ExecFailed: true, Message: "permission denied or exec format error"}
	case int(unix.SIGHUP):
		return ChildStatus{ExitCode: -1, Signal: unix.SIGHUP, Ambiguous: true, Message: MsgSIGHUPOrLaunchFailed}
	default:
		return ChildStatus{ExitCode: -1, Signal: syscall.Signal(sig)}
	}
}

// siginfo si_code values of SIGCHLD/waitid, from Linux [include/uapi/asm-generic/siginfo.h].
const (
	CLD_EXITED = 1 // child has exited
	CLD_KILLED = 2 // child was killed
	CLD_DUMPED = 3 // child terminated abnormally (core dump)
)

// DecodeKernelChildStatus decodes waitid(P_PIDFD)'s si_code and si_status for a
// child started by spawn_template_spawn. The RFC's child exits with a raw status
// (127, 126 or 1) when an action or the exec fails, which waitid reports as
// CLD_KILLED: no signal has number 127 or 126, so those are exec failures; 1 cannot be
// told apart from SIGHUP. Normal exits and real signals decode as usual.
func DecodeKernelChildStatus(code, status int) ChildStatus {
	switch code {
	case CLD_EXITED:
		return ChildStatus{ExitCode: status}
	case CLD_KILLED:
		return killedStatus(status)
	case CLD_DUMPED:
		return ChildStatus{ExitCode: -1, Signal: syscall.Signal(status)}
	default:
		// CLD_STOPPED etc. are only reported when asked for; treat as a signal.
		return ChildStatus{ExitCode: -1, Signal: syscall.Signal(status)}
	}
}

// DecodeKernelWaitStatus decodes a wait4 status word (or os.ProcessState.Sys(), which
// Go builds the same way from waitid) of a kernel-template child. The raw exit 127
// reads as 0x7f, which the WIF* macros take for "stopped"; 126 and 1 read as signals.
func DecodeKernelWaitStatus(ws syscall.WaitStatus) ChildStatus {
	if ws.Exited() {
		return ChildStatus{ExitCode: ws.ExitStatus()}
	}
	low := int(ws & 0x7f)
	if low == 0x7f && ws>>8 == 0 {
		// "Stopped" by signal 0: the kernel's raw 127.
		return killedStatus(ExitNotFound)
	}
	if ws&0x80 != 0 { // core dumped: a real signal
		return ChildStatus{ExitCode: -1, Signal: syscall.Signal(low)}
	}
	return killedStatus(low)
}
