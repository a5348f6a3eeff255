package sandbox

import (
	"fmt"

	"golang.org/x/sys/unix"
	"kernel.org/pub/linux/libs/security/libcap/psx"
)

// Containment is what a spawner applies to itself besides Landlock, decided by the
// main process from the profile and sent in hello.
type Containment struct {
	// NoNewPrivs is always set: it is required for Landlock and seccomp.
	NoNewPrivs bool `json:"no_new_privs"`
}

// apply runs in the spawner, before Landlock. It returns the layers now in force.
func (c *Containment) apply() ([]string, error) {
	var layers []string
	// no_new_privs is per thread: set it on every thread of the spawner.
	if _, _, errno := psx.Syscall6(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0, 0); errno != 0 {
		return nil, fmt.Errorf("prctl(PR_SET_NO_NEW_PRIVS) on all threads: %w", errno)
	}
	layers = append(layers, "no-new-privs")
	return layers, nil
}
