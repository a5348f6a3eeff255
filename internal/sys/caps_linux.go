package sys

import (
	"unsafe"

	"golang.org/x/sys/unix"
	"kernel.org/pub/linux/libs/security/libcap/psx"
)

// Securebits, matching Linux include/uapi/linux/securebits.h.
const (
	SECBIT_NOROOT                      = 1 << 0
	SECBIT_NOROOT_LOCKED               = 1 << 1
	SECBIT_NO_SETUID_FIXUP             = 1 << 2
	SECBIT_NO_SETUID_FIXUP_LOCKED      = 1 << 3
	SECBIT_KEEP_CAPS                   = 1 << 4
	SECBIT_KEEP_CAPS_LOCKED            = 1 << 5
	SECBIT_NO_CAP_AMBIENT_RAISE        = 1 << 6
	SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED = 1 << 7
)

// CapSets holds the three per-thread capability sets of capget(2)/capset(2) as 64-bit
// masks (bit n is capability n).
type CapSets struct {
	Effective, Permitted, Inheritable uint64
}

// Capget returns the calling thread's capability sets (capget(2), version 3).
// The result describes only the thread the goroutine runs on; callers that need a
// stable answer lock the OS thread or rely on all threads being equal.
func Capget() (CapSets, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return CapSets{}, err
	}
	return CapSets{
		Effective:   uint64(data[0].Effective) | uint64(data[1].Effective)<<32,
		Permitted:   uint64(data[0].Permitted) | uint64(data[1].Permitted)<<32,
		Inheritable: uint64(data[0].Inheritable) | uint64(data[1].Inheritable)<<32,
	}, nil
}

// CapsetAllThreads sets the capability sets of every thread of the process
// (capset(2), version 3, run on each thread through psx).
func CapsetAllThreads(c CapSets) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{
		{Effective: uint32(c.Effective), Permitted: uint32(c.Permitted), Inheritable: uint32(c.Inheritable)},
		{Effective: uint32(c.Effective >> 32), Permitted: uint32(c.Permitted >> 32), Inheritable: uint32(c.Inheritable >> 32)},
	}
	_, _, errno := psx.Syscall3(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// prctlAll runs prctl(2) on every thread.
func prctlAll(option, arg2, arg3 uintptr) (uintptr, error) {
	r, _, errno := psx.Syscall6(unix.SYS_PRCTL, option, arg2, arg3, 0, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return r, nil
}

// prctl runs prctl(2) on the calling thread.
func prctl(option, arg2, arg3 uintptr) (uintptr, error) {
	r, _, errno := unix.Syscall6(unix.SYS_PRCTL, option, arg2, arg3, 0, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return r, nil
}

// CapBsetRead reports whether capability c is in the calling thread's bounding set
// (PR_CAPBSET_READ). EINVAL means the kernel does not know c.
func CapBsetRead(c uintptr) (bool, error) {
	r, err := prctl(unix.PR_CAPBSET_READ, c, 0)
	return r == 1, err
}

// CapBsetDropAllThreads removes capability c from every thread's bounding set
// (PR_CAPBSET_DROP; needs CAP_SETPCAP).
func CapBsetDropAllThreads(c uintptr) error {
	_, err := prctlAll(unix.PR_CAPBSET_DROP, c, 0)
	return err
}

// AmbientClearAllThreads empties every thread's ambient set
// (PR_CAP_AMBIENT_CLEAR_ALL).
func AmbientClearAllThreads() error {
	_, err := prctlAll(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0)
	return err
}

// AmbientRaiseAllThreads adds capability c to every thread's ambient set
// (PR_CAP_AMBIENT_RAISE; c must be permitted and inheritable).
func AmbientRaiseAllThreads(c uintptr) error {
	_, err := prctlAll(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, c)
	return err
}

// GetSecurebits returns the calling thread's securebits (PR_GET_SECUREBITS).
func GetSecurebits() (uint32, error) {
	r, err := prctl(unix.PR_GET_SECUREBITS, 0, 0)
	return uint32(r), err
}

// SetSecurebitsAllThreads sets every thread's securebits (PR_SET_SECUREBITS; needs
// CAP_SETPCAP).
func SetSecurebitsAllThreads(bits uint32) error {
	_, err := prctlAll(unix.PR_SET_SECUREBITS, uintptr(bits), 0)
	return err
}

// SetNoNewPrivsAllThreads sets no_new_privs on every thread (PR_SET_NO_NEW_PRIVS).
func SetNoNewPrivsAllThreads() error {
	_, err := prctlAll(unix.PR_SET_NO_NEW_PRIVS, 1, 0)
	return err
}

// NoNewPrivs reports the calling thread's no_new_privs bit (PR_GET_NO_NEW_PRIVS).
func NoNewPrivs() (bool, error) {
	r, err := prctl(unix.PR_GET_NO_NEW_PRIVS, 0, 0)
	return r == 1, err
}

// SetgroupsAllThreads sets the supplementary groups of every thread (setgroups(2),
// raw: the kernel call is per-thread).
func SetgroupsAllThreads(gids []uint32) error {
	var p uintptr
	if len(gids) > 0 {
		p = uintptr(unsafe.Pointer(&gids[0]))
	}
	_, _, errno := psx.Syscall3(unix.SYS_SETGROUPS, uintptr(len(gids)), p, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// SetresgidAllThreads sets real, effective and saved gid of every thread
// (setresgid(2)).
func SetresgidAllThreads(gid uint32) error {
	_, _, errno := psx.Syscall3(unix.SYS_SETRESGID, uintptr(gid), uintptr(gid), uintptr(gid))
	if errno != 0 {
		return errno
	}
	return nil
}

// SetresuidAllThreads sets real, effective and saved uid of every thread
// (setresuid(2)).
func SetresuidAllThreads(uid uint32) error {
	_, _, errno := psx.Syscall3(unix.SYS_SETRESUID, uintptr(uid), uintptr(uid), uintptr(uid))
	if errno != 0 {
		return errno
	}
	return nil
}
