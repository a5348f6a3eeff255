package main

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// The binary comes in two builds of this one package (docs/cli.md, "Two binaries"):
// the full one (go build ./cmd/agentexec, go install; make build's
// bin/agentexec-full) runs every command itself; the lean one (-tags
// agentexec_lean; make build's bin/agentexec) leaves out the MCP SDK and the NATS
// client and hands the commands that need them to the full binary beside it. The
// two behave the same for every command and flag.

// defaultService and defaultPool are fleet.DefaultService and fleet.DefaultPool,
// which the lean build cannot import (TestLeanDefaultsMatchFleet keeps them equal).
const (
	defaultService = "agentexec"
	defaultPool    = "default"
)

// ciSubmission is what ci --nats submits (submitCI).
type ciSubmission struct {
	service, pool, jobFile, workspace, artifacts, report, junit string
	jobs                                                        int
	keepGoing                                                   bool
}

// fullName is the full build's file name, beside the lean binary.
const fullName = "agentexec-full"

// fullEnv names a full binary to use instead of the one beside this binary.
const fullEnv = "AGENTEXEC_FULL"

// needsFull reports whether a command line needs the full build: mcp and worker,
// and ci or check with --nats (in any of the flag package's spellings, before a
// "--"). A value that merely looks like --nats hands the command over too, which
// is harmless: the full build runs every command the same way.
func needsFull(cmd string, args []string) bool {
	switch cmd {
	case "mcp", "worker":
		return true
	case "ci", "check":
		for _, a := range args {
			if a == "--" {
				return false
			}
			name, _, _ := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-"), "=")
			if strings.HasPrefix(a, "-") && name == "nats" {
				return true
			}
		}
	}
	return false
}

// fullPath is the full binary this one hands commands to: $AGENTEXEC_FULL, or
// agentexec-full in this executable's directory.
func fullPath() (string, error) {
	if p := os.Getenv(fullEnv); p != "" {
		return p, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find this executable: %w", err)
	}
	return filepath.Join(filepath.Dir(exe), fullName), nil
}

// execFull replaces this process with the full binary running the same command
// line: same pid, stdio, environment and signals, so callers (an MCP client, a
// supervisor) cannot tell. It returns only when that fails, with exit status 2.
func execFull(cmd string, args []string) int {
	path, err := fullPath()
	if err == nil {
		err = unix.Exec(path, append([]string{path, cmd}, args...), os.Environ())
		err = &os.PathError{Op: "exec", Path: path, Err: err}
	}
	fmt.Fprintf(os.Stderr, "agentexec %s: this is the lean build, which runs %s in %s beside it: %v\n"+
		"(make build installs both; or set %s to a full agentexec binary; docs/cli.md, \"Two binaries\")\n",
		cmd, describeFull(cmd), fullName, err, fullEnv)
	return 2
}

func describeFull(cmd string) string {
	if cmd == "ci" || cmd == "check" {
		return cmd + " --nats"
	}
	return cmd
}

// redactURLs is a --nats value fit for a message: each URL without its password.
func redactURLs(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil {
			parts[i] = u.Redacted()
		} else {
			parts[i] = "(unparsable URL)"
		}
	}
	return strings.Join(parts, ",")
}
