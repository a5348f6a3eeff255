package ci

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/agentexec/agentexec"
)

// Exit statuses of Run.
const (
	ExitOK     = 0 // every required step passed
	ExitFailed = 1 // a required step failed, timed out, was denied or could not run
	ExitUsage  = 2 // bad usage, job file or policy
)

// Progress selects how progress is shown.
type Progress int

const (
	// ProgressPlain prints timestamped lines prefixed by the step name.
	ProgressPlain Progress = iota
	// ProgressTTY redraws live progress with ANSI escapes.
	ProgressTTY
)

// Config is one run of a job file.
type Config struct {
	// JobFile is the job file's path.
	JobFile string
	// Load carries the workspace override and host facts for the policy.
	Load LoadOptions
	// Jobs bounds the steps running at once (0: 1).
	Jobs int
	// KeepGoing runs every step that does not depend on a failure, instead of
	// skipping all steps not yet started after the first required failure.
	KeepGoing bool
	// Artifacts is the directory under which <job>/<step>.stdout|.stderr are written
	// ("" means agentexec-artifacts).
	Artifacts string
	// JUnit and Report are output files ("" for none).
	JUnit, Report string
	// Progress and Width (terminal columns, for ProgressTTY) and Color select the display.
	Progress Progress
	Width    int
	Color    bool
	// Stdout receives progress and the summary, Stderr errors and warnings.
	Stdout, Stderr io.Writer
	// RuntimeOptions are passed to agentexec.New.
	RuntimeOptions []agentexec.Option
}

// Run loads the job file, starts a runtime for its policy, runs the steps, writes
// the artifacts, the summary and the requested reports, and returns the exit status
// (ExitOK, ExitFailed or ExitUsage).
func Run(ctx context.Context, cfg Config) int {
	if cfg.Stdout == nil {
		cfg.Stdout = os.Stdout
	}
	if cfg.Stderr == nil {
		cfg.Stderr = os.Stderr
	}
	if cfg.Artifacts == "" {
		cfg.Artifacts = "agentexec-artifacts"
	}
	if cfg.Jobs < 1 {
		cfg.Jobs = 1
	}
	job, pol, err := Load(cfg.JobFile, cfg.Load)
	if err != nil {
		fmt.Fprintf(cfg.Stderr, "agentexec ci: %s\n", indentErrors(err))
		return ExitUsage
	}
	artDir, err := filepath.Abs(filepath.Join(cfg.Artifacts, job.Name))
	if err != nil {
		fmt.Fprintf(cfg.Stderr, "agentexec ci: artifacts: %v\n", err)
		return ExitUsage
	}
	start := time.Now()
	var results []*StepResult
	logger := slog.New(slog.NewTextHandler(cfg.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	opts := append([]agentexec.Option{agentexec.WithLogger(logger)}, cfg.RuntimeOptions...)
	rt, rtErr := agentexec.New(ctx, pol, opts...)
	if rtErr != nil {
		fmt.Fprintf(cfg.Stderr, "agentexec ci: start the runtime for policy %s: %v\n", pol.Source, rtErr)
		for _, s := range job.Steps {
			results = append(results, &StepResult{Step: s, Status: StatusError, Message: "runtime: " + rtErr.Error()})
		}
	} else {
		var ev events
		if cfg.Progress == ProgressTTY {
			ev = newTTYDisplay(cfg.Stdout, cfg.Width, len(job.Steps), cfg.Color)
		} else {
			ev = &plainDisplay{w: cfg.Stdout}
		}
		sr := &stepRunner{rt: rt, job: job, artifact: artDir, ev: ev}
		results = schedule(ctx, job.Steps, cfg.Jobs, cfg.KeepGoing, sr.run, ev)
		ev.close()
		if err := rt.Close(); err != nil {
			fmt.Fprintf(cfg.Stderr, "agentexec ci: close the runtime: %v\n", err)
		}
	}
	end := time.Now()
	// Artifacts of steps that did not run this time would be stale: remove them.
	for _, r := range results {
		if r.StdoutFile == "" {
			for _, ext := range []string{".stdout", ".stderr"} {
				if err := os.Remove(filepath.Join(artDir, r.Step.Name+ext)); err != nil && !errors.Is(err, os.ErrNotExist) {
					fmt.Fprintf(cfg.Stderr, "agentexec ci: remove stale artifact: %v\n", err)
				}
			}
		}
	}
	exit := ExitOK
	for _, r := range results {
		if r.blocking() {
			exit = ExitFailed
		}
	}
	if rtErr != nil {
		exit = ExitFailed
	}
	rep := buildReport(job, pol.Source, pol.Workspace, ReportOptions{Jobs: cfg.Jobs, KeepGoing: cfg.KeepGoing, Artifacts: artDir}, start, end, results, exit)
	fmt.Fprintln(cfg.Stdout)
	writeSummary(cfg.Stdout, rep, results)
	if cfg.Report != "" {
		if err := writeJSONReport(cfg.Report, rep); err != nil {
			fmt.Fprintf(cfg.Stderr, "agentexec ci: %v\n", err)
			exit = ExitFailed
		}
	}
	if cfg.JUnit != "" {
		if err := writeJUnit(cfg.JUnit, rep); err != nil {
			fmt.Fprintf(cfg.Stderr, "agentexec ci: %v\n", err)
			exit = ExitFailed
		}
	}
	return exit
}

// indentErrors puts each joined error on its own line.
func indentErrors(err error) string {
	errs := flatten(err)
	if len(errs) == 1 {
		return errs[0].Error()
	}
	s := fmt.Sprintf("%d problems:", len(errs))
	for _, e := range errs {
		s += "\n  " + e.Error()
	}
	return s
}
