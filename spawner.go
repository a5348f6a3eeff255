package agentexec

import (
	"os"

	"github.com/agentexec/agentexec/internal/sandbox"
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
func ServeSpawner() {
	if sandbox.IsSpawnerInvocation(os.Args) {
		sandbox.SpawnerMain(os.Args)
	}
}
