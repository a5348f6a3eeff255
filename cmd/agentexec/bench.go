package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/agentexec/agentexec/internal/bench"
)

func cmdBench(args []string) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	var cfg bench.Config
	fs.StringVar(&cfg.PolicyFile, "policy", "", "bench this policy `FILE` (default: a generated policy with 20 hot tools); mix calls it lacks are skipped")
	fs.IntVar(&cfg.Calls, "calls", bench.DefaultCalls, "calls per mix entry per backend")
	fs.IntVar(&cfg.Inflight, "inflight", bench.DefaultInflight, "calls in flight in the throughput phase")
	fs.StringVar(&cfg.Workspace, "workspace", "", "generate the workspace in `DIR` and keep it (default: a temporary directory, removed)")
	only := fs.String("only", "", "comma-separated mix call `NAMES` to run (default: all), e.g. \"true,rg\"")
	fs.BoolVar(&cfg.Breakdown, "breakdown", false, "add diagnostic backends: agentexec without per-launch cgroups, and forkexec in cgo builds")
	quick := fs.Bool("skip-extras", false, "skip the serve, start-up and memory measurements")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: agentexec bench [flags]   (docs/performance.md)")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "agentexec bench: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if *only != "" {
		cfg.Only = strings.Split(*only, ",")
	}
	cfg.SkipExtras = *quick
	cfg.Command = strings.Join(append([]string{"agentexec", "bench"}, args...), " ")
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "agentexec bench: %v\n", err)
		return 1
	}
	cfg.Binary = exe
	if isTerminal(os.Stderr) {
		cfg.Progress = os.Stderr
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := bench.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "agentexec bench: %v\n", err)
		return 1
	}
	if *asJSON {
		err = rep.WriteJSON(os.Stdout)
	} else {
		err = rep.WriteText(os.Stdout)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "agentexec bench: %v\n", err)
		return 1
	}
	return 0
}
