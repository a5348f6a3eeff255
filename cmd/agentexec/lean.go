//go:build agentexec_lean

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
)

// The lean build (make build's bin/agentexec) leaves out the MCP SDK and the NATS
// client, whose package initialisation every process of the binary would otherwise
// pay at start (docs/performance.md, "Start-up of the binary"): `mcp`, `worker` and
// the --nats modes of `ci` and `check` run in the full binary beside it, which
// realMain executes in place of this process (execFull).

const leanBuild = true

// natsReport stands for check --nats's report, which this build never makes.
type natsReport = *struct{}

var errFullOnly = errors.New("the NATS client is in agentexec-full, not in this build")

func probeNATS(string, string) (natsReport, error) { return nil, errFullOnly }

func natsLine(natsReport) string { return "" }

func submitCI(context.Context, string, ciSubmission) int {
	fmt.Fprintf(os.Stderr, "agentexec ci: --nats: %v\n", errFullOnly)
	return 2
}

func cmdMCP(args []string) int    { return execFull("mcp", args) }
func cmdWorker(args []string) int { return execFull("worker", args) }
