package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/internal/oneshot"
)

// noFastEnv, set to 1, makes `agentexec run` take the Runtime path even where the
// one-shot path applies (as --no-fast does), for comparisons.
const noFastEnv = "AGENTEXEC_RUN_NO_FAST"

// runOneShot is `agentexec run`'s fast path (internal/oneshot, docs/cli.md): a
// process that launches one tool contains itself and forks the tool directly, with
// no spawner. handled is false when the request is for the Runtime path: --json,
// --no-fast or AGENTEXEC_RUN_NO_FAST=1, a flag it does not know, bad usage, a
// refusal (the Runtime path words all of those), or anything the policy asks for
// that the fast path does not do itself (oneshot.ErrFallback). Once it has handled
// the request the process is contained and code is run's exit status.
func runOneShot(args []string) (code int, handled bool) {
	defer oneshot.TraceFlush() // AGENTEXEC_ONESHOT_TRACE=1: the steps, after the tool's output
	if os.Getenv(noFastEnv) == "1" {
		return 0, false
	}
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var pf policyFlags
	pf.register(fs)
	asJSON := fs.Bool("json", false, "")
	timeout := fs.Duration("timeout", 0, "")
	dir := fs.String("C", "", "")
	quiet := fs.Bool("q", false, "")
	noFast := fs.Bool("no-fast", false, "")
	if err := fs.Parse(args); err != nil || *asJSON || *noFast || len(fs.Args()) == 0 {
		return 0, false
	}
	rest := fs.Args()
	oneshot.Trace("init to flags")
	p, err := pf.loadFor(rest[0])
	if err != nil {
		return 0, false
	}
	oneshot.Trace("policy load")
	l, err := oneshot.Prepare(oneshot.Request{Policy: p, Tool: rest[0], Args: rest[1:], Dir: *dir, Timeout: *timeout,
		Hooks: oneshot.Hooks{ToolIdentity: agentexec.OneShotToolIdentity, UsesTmpDir: agentexec.OneShotUsesTmpDir,
			UnixSocketGap: agentexec.OneShotUnixSocketGap}})
	if err != nil {
		debugFallback(err)
		return 0, false
	}
	oneshot.Trace("prepare")
	res, err := l.Run(context.Background())
	if errors.Is(err, oneshot.ErrFallback) {
		debugFallback(err)
		return 0, false // nothing changed yet
	}
	if len(res.Unenforced) > 0 && !*quiet {
		fmt.Fprintf(os.Stderr, "agentexec run: not enforced on this host: %s (agentexec check says why; -q: quiet)\n", strings.Join(res.Unenforced, ", "))
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "agentexec run: %v\n", err)
		return exitRunFailed, true
	}
	if res.ExecError != "" {
		fmt.Fprintf(os.Stderr, "agentexec run: %s: %s\n", res.Tool, res.ExecError)
	}
	if res.TimedOut {
		fmt.Fprintf(os.Stderr, "agentexec run: %s timed out after %v\n", res.Tool, res.Wall.Round(time.Millisecond))
	}
	if res.StdoutDropped > 0 || res.StderrDropped > 0 {
		fmt.Fprintf(os.Stderr, "agentexec run: output truncated at the policy's cap (%d stdout, %d stderr bytes dropped)\n", res.StdoutDropped, res.StderrDropped)
	}
	return exitStatus(agentexec.Result{Tool: res.Tool, ExitCode: res.ExitCode, Signal: res.Signal, TimedOut: res.TimedOut,
		ExecError: res.ExecError}, nil), true
}

// debugFallback says why the fast path was not taken when AGENTEXEC_RUN_DEBUG=1.
func debugFallback(err error) {
	if os.Getenv("AGENTEXEC_RUN_DEBUG") == "1" {
		fmt.Fprintf(os.Stderr, "agentexec run: Runtime path: %s\n", strings.TrimPrefix(err.Error(), "one-shot: "))
	}
}
