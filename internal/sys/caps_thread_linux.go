package sys

import "golang.org/x/sys/unix"

// CapsetThread sets the capability sets of the calling thread only (capset(2),
// version 3). Callers lock the OS thread first; every other thread keeps its sets.
func CapsetThread(c CapSets) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{
		{Effective: uint32(c.Effective), Permitted: uint32(c.Permitted), Inheritable: uint32(c.Inheritable)},
		{Effective: uint32(c.Effective >> 32), Permitted: uint32(c.Permitted >> 32), Inheritable: uint32(c.Inheritable >> 32)},
	}
	return unix.Capset(&hdr, &data[0])
}

// CapBsetDropThread removes capability c from the calling thread's bounding set
// only (PR_CAPBSET_DROP; needs CAP_SETPCAP).
func CapBsetDropThread(c uintptr) error {
	_, err := prctl(unix.PR_CAPBSET_DROP, c, 0)
	return err
}
