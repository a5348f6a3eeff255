package contain

import (
	"fmt"

	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"
)

// ScopeSignalsThisThread adds a Landlock domain that handles nothing but
// LANDLOCK_SCOPE_SIGNAL to the calling thread only (Landlock ABI 6). Processes
// forked from the thread afterwards cannot signal any process, or any thread of
// this process, outside that new domain; they still reach this thread itself. Use
// it as a launcher thread's setup (osthread.Start), after the spawner's all-thread restriction. It
// needs no_new_privs (or CAP_SYS_ADMIN).
func ScopeSignalsThisThread() error {
	fd, err := ll.LandlockCreateRuleset(&ll.RulesetAttr{Scoped: ll.ScopeSignal}, 0)
	if err != nil {
		return fmt.Errorf("landlock_create_ruleset(scoped=signal): %w", err)
	}
	defer unix.Close(fd)
	if err := ll.LandlockRestrictSelf(fd, 0); err != nil {
		return fmt.Errorf("landlock_restrict_self (this thread): %w", err)
	}
	return nil
}
