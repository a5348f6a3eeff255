package agentexec

import (
	"fmt"
	"os"

	"github.com/agentexec/agentexec/internal/egress"
	"github.com/agentexec/agentexec/internal/spawner"
)

// ServeSpawner turns the process into an agentexec spawner when it was started as
// one by a Runtime, and never returns in that case; otherwise it returns at once.
// A program that embeds agentexec and lets New use its own executable for spawners
// (the default) calls it first thing in main:
//
//	func main() {
//		agentexec.ServeSpawner()
//		// … the program …
//	}
//
// Alternatively, pass WithSpawnerBinary with the path of an installed agentexec.
//
// A program that forgets it fails fast rather than re-executing itself: its copy
// started as a spawner runs main, and when that calls New, New prints why to
// stderr and exits with status 2 before it starts anything (a spawner's main must
// not run at all); the New that started it fails within five seconds with an error
// matching ErrSpawnerNotServed. At most one extra process ever runs.
func ServeSpawner() {
	if len(os.Args) == 4 && os.Args[1] == egressConnectCommand {
		// ssh's ProxyCommand for network.ssh hosts (egress.go), run by a tool.
		if err := egress.ConnectHelper(os.Getenv("HTTPS_PROXY"), os.Args[2], os.Args[3], os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "agentexec:", err)
			os.Exit(255)
		}
		os.Exit(0)
	}
	if spawner.IsSpawnerInvocation(os.Args) {
		spawner.SpawnerMain(os.Args)
	}
}

// unservedSpawnerExitCode is the status a process started as a spawner exits with
// when its main calls New instead of ServeSpawner.
const unservedSpawnerExitCode = 2

// exitIfUnservedSpawner ends the process when it was started as a spawner (by a
// Runtime of its parent) but its main runs instead and has reached New: ServeSpawner
// was not called first thing in main. Going on would start a spawner of its own,
// which would do the same, and so on.
func exitIfUnservedSpawner() {
	if !spawner.IsSpawnerInvocation(os.Args) {
		return
	}
	fmt.Fprintf(os.Stderr, "agentexec: this process was started as an agentexec spawner (%s %s), but its main function runs and called agentexec.New: "+
		"call agentexec.ServeSpawner() first thing in main, or give the runtime an installed agentexec binary (agentexec.WithSpawnerBinary)\n",
		os.Args[0], spawner.SpawnerCommand)
	os.Exit(unservedSpawnerExitCode)
}
