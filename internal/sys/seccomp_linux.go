package sys

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// SeccompFilterFlagTSync is SECCOMP_FILTER_FLAG_TSYNC (include/uapi/linux/seccomp.h):
// install the filter on every thread of the process at once.
const SeccompFilterFlagTSync = unix.SECCOMP_FILTER_FLAG_TSYNC

// SeccompFilterFlagSpecAllow is SECCOMP_FILTER_FLAG_SPEC_ALLOW (Linux 4.17): do not
// force the speculative-store-bypass (and, on some kernels, STIBP/IBPB) mitigations
// on the filtered threads.
const SeccompFilterFlagSpecAllow = unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW

// TSyncError reports that seccomp(SECCOMP_FILTER_FLAG_TSYNC) could not synchronise
// a thread: the kernel returns that thread's id instead of an errno.
type TSyncError struct{ TID int }

func (e *TSyncError) Error() string {
	return fmt.Sprintf("seccomp tsync: thread %d cannot be synchronised (it has a diverging filter or no_new_privs state)", e.TID)
}

// SeccompSetModeFilter installs a classic-BPF seccomp filter
// (seccomp(SECCOMP_SET_MODE_FILTER, flags, &sock_fprog)). The caller needs
// no_new_privs or CAP_SYS_ADMIN. With SeccompFilterFlagTSync a positive return is a
// thread id that could not be synchronised and is reported as *TSyncError.
func SeccompSetModeFilter(flags uintptr, prog []unix.SockFilter) error {
	if len(prog) == 0 || len(prog) > 4096 {
		return fmt.Errorf("seccomp filter of %d instructions: %w", len(prog), unix.EINVAL)
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	r, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, flags, uintptr(unsafe.Pointer(&fprog)))
	if errno != 0 {
		return errno
	}
	if r != 0 {
		return &TSyncError{TID: int(r)}
	}
	return nil
}
