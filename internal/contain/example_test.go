package contain_test

import (
	"fmt"
	"log"
	"os"

	"github.com/agentexec/agentexec/internal/contain"
)

// The order a spawner applies the layers in, first thing after it starts. (Not run
// by `go test`: it cannot be undone.)
func Example() {
	if err := contain.DropCapabilities(contain.CapsSpec{}); err != nil {
		log.Fatal(err)
	}
	if err := contain.SetNoNewPrivs(); err != nil {
		log.Fatal(err)
	}
	f, err := contain.BuildSeccomp(contain.SeccompSpec{
		Network:     contain.NetTCP,
		SpawnerPID:  os.Getpid(),
		ProtectPIDs: []int{os.Getppid()}, // the agent
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := f.Install(); err != nil {
		log.Fatal(err)
	}
	// Landlock (all threads), PR_SET_DUMPABLE 0, then launches.
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
