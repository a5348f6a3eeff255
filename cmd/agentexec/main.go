// Command agentexec launches a policy's tools fast and inside a sandbox.
//
//	agentexec check [--policy FILE] [--json]           what this host enforces of a policy
//	agentexec run   [--policy FILE] [--json] -- TOOL ARGS…   one sandboxed launch
//	agentexec serve [--policy FILE]                    JSON-lines executor on stdin/stdout
//	agentexec mcp   [--policy FILE] [--listen ADDR]    Model Context Protocol server (stdio or HTTP)
//	agentexec ci    JOB.yaml                           run a CI job's steps under a policy
//	agentexec bench                                    the agent tool-mix benchmark
//
// Without --policy, the embedded default policy (configs/default.yaml) is used: common
// read-only tools inside the current directory.
package main

import (
	"fmt"
	"io"
	"log"
	"os"

	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec"
)

func main() {
	// The runtime re-executes this binary as its spawner processes.
	agentexec.ServeSpawner()
	// The standard logger's only writer in this program is x/crypto's ssh-agent
	// server, which logs every request the filtering agent refuses ("agent 13: …")
	// on stderr, where `run` shows the tool's output; the refusal is a denial in
	// the result already (docs/network.md, "SSH").
	log.SetOutput(io.Discard)
	os.Exit(realMain(os.Args[1:]))
}

const usage = `usage: agentexec COMMAND [flags]

commands:
  check   validate a policy and report what this host enforces
  run     launch one tool under the policy: agentexec run [flags] -- TOOL ARGS...
  serve   JSON-lines executor on stdin/stdout (docs/protocol.md)
  worker  serve the same protocol on a NATS cluster's pool (docs/fleet.md)
  mcp     Model Context Protocol server on stdio or HTTP (docs/mcp.md)
  ci      run a CI job file under a policy (docs/ci.md)
  bench   benchmark the agent tool mix against baselines (docs/performance.md)
  explain print the denials of results and what would allow each: agentexec explain RESULT.json (docs/denials.md)
  version print the version

Run 'agentexec COMMAND -h' for a command's flags.
`

func realMain(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	if leanBuild && needsFull(cmd, rest) {
		return execFull(cmd, rest)
	}
	switch cmd {
	case "check":
		return cmdCheck(rest)
	case "run":
		return cmdRun(rest)
	case "serve":
		return cmdServe(rest)
	case "worker":
		return cmdWorker(rest)
	case "mcp":
		return cmdMCP(rest)
	case "ci":
		return cmdCI(rest)
	case "explain":
		return cmdExplain(rest)
	case "bench":
		return cmdBench(rest)
	case "version", "--version":
		fmt.Println("agentexec", version)
		return 0
	case "help", "-h", "--help":
		fmt.Print(usage)
		return 0
	default:
		fmt.Fprintf(os.Stderr, "agentexec: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
}

var version = "0.1.0-dev"

// isTerminal reports whether f is a terminal (TCGETS succeeds: /dev/null and other
// character devices are not terminals).
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
