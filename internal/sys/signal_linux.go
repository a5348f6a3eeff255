package sys

import (
	"structs"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// KernelSigaction is the kernel's struct sigaction for rt_sigaction(2).
// Matches Linux [arch/x86/include/uapi/asm/signal.h]:struct sigaction (the
// kernel's, not glibc's): handler, flags, restorer, a 64-bit mask.
type KernelSigaction struct {
	_        structs.HostLayout
	Handler  uint64
	Flags    uint64
	Restorer uint64
	Mask     uint64
}

// Signal dispositions.
const (
	SIG_DFL = 0
	SIG_IGN = 1
)

// sigsetSize is the kernel's sizeof(sigset_t) on 64-bit Linux.
const sigsetSize = 8

// RtSigaction calls rt_sigaction(2). act or old may be nil.
func RtSigaction(sig syscall.Signal, act, old *KernelSigaction) error {
	_, _, errno := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig),
		uintptr(unsafe.Pointer(act)), uintptr(unsafe.Pointer(old)), sigsetSize, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// ResetIgnoredSignals sets every signal whose disposition is SIG_IGN back to SIG_DFL
// and returns them. exec(2) keeps SIG_IGN, so a process that must hand its children
// default dispositions (a spawner started by an agent under nohup, say) calls this
// first. Only ignored signals are touched: the Go runtime's own handlers stay.
func ResetIgnoredSignals() ([]syscall.Signal, error) {
	var reset []syscall.Signal
	for sig := syscall.Signal(1); sig <= 64; sig++ {
		if sig == unix.SIGKILL || sig == unix.SIGSTOP {
			continue
		}
		var old KernelSigaction
		if err := RtSigaction(sig, nil, &old); err != nil {
			continue // numbers the kernel refuses (none on x86_64)
		}
		if old.Handler != SIG_IGN {
			continue
		}
		act := KernelSigaction{Handler: SIG_DFL, Flags: old.Flags, Restorer: old.Restorer, Mask: old.Mask}
		if err := RtSigaction(sig, &act, nil); err != nil {
			return reset, err
		}
		reset = append(reset, sig)
	}
	return reset, nil
}
