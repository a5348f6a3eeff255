package contain

import (
	"fmt"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec/internal/osthread"
)

// NetNSAvailable reports whether this process may give a spawner an empty network
// namespace (`network: isolated`), and if not, why. The probe unshares
// CLONE_NEWNET on a throwaway OS thread that exits afterwards (a locked goroutine
// that returns takes its thread with it), so the calling process is left as it
// was. Creating a network namespace needs CAP_SYS_ADMIN (root, in practice); the
// spawner then gets one by being started with SysProcAttr.Cloneflags |=
// CLONE_NEWNET, and every tool it launches inherits that namespace at no
// per-launch cost. The namespace holds only a loopback device that is down: no
// route anywhere, not even to 127.0.0.1 of the host.
// The probe runs once per process (it is asked per profile and by check).
func NetNSAvailable() (bool, string) { return netNSProbe() }

var netNSProbe = sync.OnceValues(func() (bool, string) {
	err := osthread.Throwaway(func() error { return unix.Unshare(unix.CLONE_NEWNET) })
	if err != nil {
		return false, fmt.Sprintf("unshare(CLONE_NEWNET): %v (needs CAP_SYS_ADMIN: run as root)", err)
	}
	return true, "unshare(CLONE_NEWNET) works"
})
