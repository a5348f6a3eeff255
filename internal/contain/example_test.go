package contain_test

import (
	"fmt"
	"log"
	"os"

	"github.com/agentexec/agentexec/internal/contain"
	"github.com/agentexec/agentexec/internal/osthread"
)

// The order a spawner applies the layers in, first thing after it starts:
// capabilities, no_new_privs, Landlock, the launcher threads (each with a signal
// scope of its own), then the seccomp filter protecting every launcher thread. (Not
// run by `go test`: it cannot be undone.)
func Example() {
	if err := contain.DropCapabilities(contain.CapsSpec{}); err != nil {
		log.Fatal(err)
	}
	if err := contain.SetNoNewPrivs(); err != nil {
		log.Fatal(err)
	}
	// Landlock (all threads) here, before the launcher threads and the filter.
	var tids []int
	for range 2 {
		l, err := osthread.Start(contain.ScopeSignalsThisThread) // Landlock ABI 6
		if err != nil {
			log.Fatal(err)
		}
		// Keep l: every launch is forked on a launcher thread, with l.Do.
		tids = append(tids, l.TID())
	}
	f, err := contain.BuildSeccomp(contain.SeccompSpec{
		Network:     contain.NetTCP,
		SpawnerPID:  os.Getpid(),
		ProtectTIDs: tids,                // every launcher thread
		ProtectPIDs: []int{os.Getppid()}, // the agent
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := f.Install(); err != nil {
		log.Fatal(err)
	}
	// PR_SET_DUMPABLE 0, then launches, each on a launcher thread:
	// l.Do(func() { pid, err = syscall.ForkExec(path, argv, attr) }).
}

func ExampleFilter_Rules() {
	f, err := contain.BuildSeccomp(contain.SeccompSpec{Network: contain.NetNone, SpawnerPID: 4242})
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range f.Rules() {
		if len(r) > 6 && r[:7] == "socket:" {
			fmt.Println(r)
		}
	}
	// Output:
	// socket: EPERM (no socket family allowed)
}
