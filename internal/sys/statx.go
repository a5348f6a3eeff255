package sys

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// StatxZ is statx(2) on a NUL-terminated path held in a byte slice, so that a caller
// that stats the same path on every launch does not allocate (unix.Statx converts its
// string argument on each call). path must end with a NUL byte; otherwise EINVAL.
func StatxZ(dirfd int, path []byte, flags, mask int, st *unix.Statx_t) error {
	if len(path) == 0 || path[len(path)-1] != 0 {
		return unix.EINVAL
	}
	_, _, errno := unix.Syscall6(unix.SYS_STATX, uintptr(dirfd), uintptr(unsafe.Pointer(&path[0])),
		uintptr(flags), uintptr(mask), uintptr(unsafe.Pointer(st)), 0)
	if errno != 0 {
		return errno
	}
	return nil
}
