package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/agentexec/agentexec"
)

func cmdRun(args []string) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var pf policyFlags
	pf.register(fs)
	asJSON := fs.Bool("json", false, "collect the output and print the result object (as serve does) instead of streaming")
	timeout := fs.Duration("timeout", 0, "wall-clock limit (shorter than the policy's wins)")
	dir := fs.String("C", "", "working `DIR` (default: the workspace)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: agentexec run [flags] -- TOOL ARGS...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fs.Usage()
		return 2
	}
	p, err := pf.load()
	if err != nil {
		fmt.Fprintf(os.Stderr, "agentexec run: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rt, err := agentexec.New(ctx, p)
	if err != nil {
		fmt.Fprintf(os.Stderr, "agentexec run: %v\n", err)
		return 1
	}
	defer rt.Close()
	req := agentexec.Request{Tool: rest[0], Args: rest[1:], Dir: *dir, Timeout: *timeout}
	req.Stdin = os.Stdin
	if *asJSON {
		res, err := rt.Run(ctx, req)
		out := agentexec.NewResultJSON("run", res, err)
		enc := json.NewEncoder(os.Stdout)
		if err := enc.Encode(out); err != nil {
			fmt.Fprintf(os.Stderr, "agentexec run: %v\n", err)
			return 1
		}
		return exitStatus(res, err)
	}
	proc, err := rt.Start(ctx, req)
	if err != nil {
		fmt.Fprintf(os.Stderr, "agentexec run: %v\n", err)
		return 1
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _, _ = io.Copy(os.Stdout, proc.Stdout()) }()
	go func() { defer wg.Done(); _, _ = io.Copy(os.Stderr, proc.Stderr()) }()
	wg.Wait()
	res, err := proc.Wait()
	if err != nil {
		fmt.Fprintf(os.Stderr, "agentexec run: %v\n", err)
		return 1
	}
	if res.ExecError != "" {
		fmt.Fprintf(os.Stderr, "agentexec run: %s: %s\n", res.Tool, res.ExecError)
	}
	if res.TimedOut {
		fmt.Fprintf(os.Stderr, "agentexec run: %s timed out after %v\n", res.Tool, res.Wall.Round(time.Millisecond))
	}
	if res.StdoutTruncated || res.StderrTruncated {
		fmt.Fprintf(os.Stderr, "agentexec run: output truncated at the policy's cap (%d stdout, %d stderr bytes dropped)\n", res.StdoutDropped, res.StderrDropped)
	}
	return exitStatus(res, nil)
}

// exitStatus passes the child's status through: its exit code, or 128+signal.
func exitStatus(r agentexec.Result, err error) int {
	if err != nil {
		return 1
	}
	if r.Signal != 0 {
		return 128 + int(r.Signal)
	}
	if r.TimedOut && r.ExitCode == 0 {
		return 124
	}
	return r.ExitCode
}
