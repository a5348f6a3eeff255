package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/internal/ci"
	"github.com/agentexec/agentexec/policy"
)

// Exit statuses of `agentexec run`, after env(1), timeout(1) and chroot(1)
// (docs/cli.md): the tool's own status is passed through, and these say what
// happened instead.
const (
	exitTimeout    = 124 // the timeout fired
	exitRunFailed  = 125 // agentexec refused or failed: policy denial, bad usage, runtime error
	exitCannotExec = 126 // the tool was found but could not be executed
	exitNotFound   = 127 // the tool's executable was not found
)

func cmdRun(args []string) int {
	if code, handled := runOneShot(args); handled { // runfast.go: the one-shot path
		return code
	}
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var pf policyFlags
	pf.register(fs)
	asJSON := fs.Bool("json", false, "collect the output and print the result object (as serve does) instead of streaming")
	timeout := fs.Duration("timeout", 0, "wall-clock limit (shorter than the policy's wins)")
	dir := fs.String("C", "", "working `DIR` (default: the workspace)")
	quiet := fs.Bool("q", false, "quiet: no notes on stderr (limits this host does not enforce, denials, egress)")
	kernelDenials := fs.Bool("kernel-denials", false, "report what the kernel refused the tool (Landlock, seccomp), as the policy's kernel_denials: on (docs/denials.md)")
	fs.Bool("no-fast", false, "always start a full runtime (spawner, pools), never the one-shot path (also "+noFastEnv+"=1)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: agentexec run [flags] -- TOOL ARGS...

Exit status: the tool's own; 124 the timeout fired; 125 agentexec refused or failed
(policy denial, bad usage, runtime error); 126 the tool could not be executed; 127 it
was not found; 128+N it was killed by signal N.

flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return exitRunFailed
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fmt.Fprintln(os.Stderr, "agentexec run: missing TOOL (agentexec run [flags] -- TOOL ARGS...; -h for help)")
		return exitRunFailed
	}
	p, err := pf.load()
	if err != nil {
		fmt.Fprintf(os.Stderr, "agentexec run: %v\n", err)
		return exitRunFailed
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var opts []agentexec.Option
	if *kernelDenials {
		opts = append(opts, agentexec.WithKernelDenials())
	}
	rt, err := agentexec.New(ctx, p, opts...)
	if err != nil {
		fmt.Fprintf(os.Stderr, "agentexec run: %v\n", err)
		return exitRunFailed
	}
	defer rt.Close()
	req := agentexec.Request{Tool: rest[0], Args: rest[1:], Dir: *dir, Timeout: *timeout}
	req.Stdin = os.Stdin
	unenforced := func(res agentexec.Result) {
		if len(res.Unenforced) > 0 && !*quiet {
			fmt.Fprintf(os.Stderr, "agentexec run: not enforced on this host: %s (agentexec check says why; -q: quiet)\n", strings.Join(res.Unenforced, ", "))
		}
	}
	if *asJSON {
		res, err := rt.Run(ctx, req)
		unenforced(res)
		out := agentexec.NewResultJSON("run", res, err)
		enc := json.NewEncoder(os.Stdout)
		if err := enc.Encode(out); err != nil {
			fmt.Fprintf(os.Stderr, "agentexec run: %v\n", err)
			return exitRunFailed
		}
		return exitStatus(res, err)
	}
	proc, err := rt.Start(ctx, req)
	if err != nil {
		fmt.Fprintf(os.Stderr, "agentexec run: %v\n", err)
		var de *agentexec.DeniedError
		if errors.As(err, &de) {
			if h := ci.HintText(de.Hint); h != "" {
				fmt.Fprintf(os.Stderr, "agentexec run: %s\n", h)
			}
		}
		return exitRunFailed
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _, _ = io.Copy(os.Stdout, proc.Stdout()) }()
	go func() { defer wg.Done(); _, _ = io.Copy(os.Stderr, proc.Stderr()) }()
	wg.Wait()
	res, err := proc.Wait()
	unenforced(res)
	if err != nil {
		fmt.Fprintf(os.Stderr, "agentexec run: %v\n", err)
		return exitRunFailed
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
	if !*quiet {
		writeDenials(os.Stderr, res, *kernelDenials || p.KernelDenials != policy.KernelDenialsOff && p.KernelDenials != "")
	}
	return exitStatus(res, nil)
}

// writeDenials prints, after the tool's own output, one line per denial the
// launch met (layer, access, object, count, hint), a note when the list may be
// incomplete (or kernel denials were asked for and are unavailable), and the
// egress summary when the tool used the proxy (docs/cli.md).
func writeDenials(w io.Writer, res agentexec.Result, asked bool) {
	for _, d := range res.Denials {
		fmt.Fprintf(w, "agentexec run: denied: %s\n", ci.DenialLine(d))
	}
	if note := ci.StatusNote(res.DenialsStatus, asked); note != "" {
		fmt.Fprintf(w, "agentexec run: %s\n", note)
	}
	if e := ci.EgressLine(res.Egress, res.Denials); e != "" {
		fmt.Fprintf(w, "agentexec run: %s\n", e)
	}
}

// exitStatus maps a launch's outcome to run's exit status (the constants above).
func exitStatus(r agentexec.Result, err error) int {
	switch {
	case err != nil:
		return exitRunFailed
	case r.TimedOut:
		return exitTimeout
	case r.Signal != 0:
		return 128 + int(r.Signal)
	case r.ExecError != "" && r.ExitCode != exitCannotExec && r.ExitCode != exitNotFound:
		return exitCannotExec // an exec failure the runtime gave another code
	}
	return r.ExitCode
}
