package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/internal/ci"
)

func cmdCI(args []string) int {
	fs := flag.NewFlagSet("ci", flag.ContinueOnError)
	jobs := fs.Int("jobs", runtime.NumCPU(), "run up to `N` independent steps at once")
	keepGoing := fs.Bool("keep-going", false, "after a failure, keep running every step that does not depend on it (default: fail fast)")
	artifacts := fs.String("artifacts", "agentexec-artifacts", "write each step's output to `DIR`/<job>/<step>.stdout|.stderr")
	junit := fs.String("junit", "", "write a JUnit XML report to `FILE`")
	report := fs.String("report", "", "write a JSON report to `FILE` (schema: docs/ci-report.schema.json)")
	workspace := fs.String("workspace", "", "workspace `DIR` (default: the job file's workspace:, or its directory)")
	progress := fs.String("progress", "auto", "progress display: auto (live on a terminal unless CI=true), tty or plain")
	natsURL := fs.String("nats", "", "submit the job to a NATS worker pool at `URLS` instead of running it here (docs/fleet.md)")
	pool := fs.String("pool", defaultPool, "worker pool `NAME` (with --nats)")
	service := fs.String("service", defaultService, "service `NAME` (with --nats)")
	kernelDenials := fs.Bool("kernel-denials", false, "report what the kernel refused each step (Landlock, seccomp), as the policy's kernel_denials: on (docs/denials.md)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: agentexec ci [flags] JOB.yaml [flags]   (docs/ci.md)")
		fs.PrintDefaults()
	}
	jobFiles, err := parseInterleaved(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return ci.ExitUsage
	}
	if len(jobFiles) != 1 {
		if len(jobFiles) == 0 {
			fmt.Fprintln(os.Stderr, "agentexec ci: missing JOB.yaml")
		} else {
			fmt.Fprintf(os.Stderr, "agentexec ci: one job file, got %d: %q\n", len(jobFiles), jobFiles)
		}
		fs.Usage()
		return ci.ExitUsage
	}
	if *jobs < 1 {
		fmt.Fprintf(os.Stderr, "agentexec ci: --jobs %d: must be at least 1\n", *jobs)
		return ci.ExitUsage
	}
	cfg := ci.Config{
		JobFile: jobFiles[0], Load: ci.LoadOptions{Workspace: *workspace},
		Jobs: *jobs, KeepGoing: *keepGoing, Artifacts: *artifacts, JUnit: *junit, Report: *report,
		Stdout: os.Stdout, Stderr: os.Stderr,
	}
	tty := false
	if ws, err := unix.IoctlGetWinsize(int(os.Stdout.Fd()), unix.TIOCGWINSZ); err == nil {
		tty = true
		cfg.Width = int(ws.Col)
	}
	switch *progress {
	case "auto":
		if tty && os.Getenv("CI") != "true" && os.Getenv("TERM") != "dumb" {
			cfg.Progress = ci.ProgressTTY
		}
	case "tty":
		cfg.Progress = ci.ProgressTTY
	case "plain":
	default:
		fmt.Fprintf(os.Stderr, "agentexec ci: --progress %q: want auto, tty or plain\n", *progress)
		return ci.ExitUsage
	}
	cfg.Color = os.Getenv("NO_COLOR") == ""
	if *kernelDenials {
		cfg.RuntimeOptions = append(cfg.RuntimeOptions, agentexec.WithKernelDenials())
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *natsURL != "" {
		return submitCI(ctx, *natsURL, ciSubmission{service: *service, pool: *pool, jobFile: jobFiles[0],
			workspace: *workspace, artifacts: *artifacts, jobs: *jobs, keepGoing: *keepGoing,
			report: *report, junit: *junit})
	}
	return ci.Run(ctx, cfg)
}

// parseInterleaved parses flags before and after the positional arguments
// (`agentexec ci job.yaml --junit out.xml`) and returns the positional ones. After
// "--" everything is positional.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		before := args
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		// The flag package consumed a "--" if the argument before rest is one.
		if n := len(before) - len(rest); n > 0 && before[n-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}
