package ci

import (
	"context"
	"fmt"
	"time"

	"github.com/agentexec/agentexec"
)

// Status is the outcome of a step.
type Status string

// Step statuses.
const (
	StatusPassed   Status = "passed"    // exited 0
	StatusFailed   Status = "failed"    // exited non-zero or was killed by a signal
	StatusTimedOut Status = "timed_out" // the step's wall-clock limit killed its tree
	StatusDenied   Status = "denied"    // the policy refused the launch
	StatusSkipped  Status = "skipped"   // not run: fail-fast, a failed need, or canceled
	StatusError    Status = "error"     // the runner could not launch or finish it
)

// StepResult is what became of one step.
type StepResult struct {
	Step   *Step
	Status Status
	// Message says why in a few words: "exit status 2", "needs build, which failed".
	Message string
	// Start and End are zero for steps that never started.
	Start, End time.Time
	// Result is the runtime's result (zero for steps that did not launch).
	Result agentexec.Result
	// Launched is set when the step's process started.
	Launched bool
	// Denied is the policy's refusal (status denied).
	Denied *agentexec.DeniedError
	// StdoutBytes and StderrBytes count what the step wrote (up to the output cap);
	// StdoutFile and StderrFile are the artifact paths ("" when not written).
	StdoutBytes, StderrBytes int64
	StdoutFile, StderrFile   string
	// Tail holds the last lines of the step's output (both streams); the terminal
	// display shows them under a failed step.
	Tail []string
	// Unenforced lists the limits the host or runtime did not enforce for this step.
	Unenforced []string
}

// blocking reports whether the result stops dependents and fails the job.
func (r *StepResult) blocking() bool {
	return r.Status != StatusPassed && r.Step.Required()
}

// ok reports whether dependents of this step may run.
func (r *StepResult) ok() bool {
	return r.Status == StatusPassed || (r.Step.ContinueOnError && r.Status != StatusSkipped)
}

// executor runs one step; it is the runtime in production and a fake in unit tests.
type executor func(ctx context.Context, s *Step) *StepResult

// schedule runs the steps of a job in dependency order, up to jobs at a time, and
// returns their results in file order. With keepGoing false (fail fast), a required
// step's failure skips every step not yet started; running steps finish. With
// keepGoing, only steps that depend on a failure (directly or not) are skipped. A
// canceled ctx skips the steps not yet started.
func schedule(ctx context.Context, steps []*Step, jobs int, keepGoing bool, exec executor, ev events) []*StepResult {
	if jobs < 1 {
		jobs = 1
	}
	results := make([]*StepResult, len(steps))
	byName := make(map[string]int, len(steps))
	for i, s := range steps {
		byName[s.Name] = i
	}
	type done struct {
		i int
		r *StepResult
	}
	finished := make(chan done)
	running := 0
	var stopReason string
	started := make([]bool, len(steps))
	skip := func(i int, why string) {
		r := &StepResult{Step: steps[i], Status: StatusSkipped, Message: why}
		results[i] = r
		started[i] = true
		ev.finished(r)
	}
	for {
		if stopReason == "" && ctx.Err() != nil {
			stopReason = "canceled"
		}
		if stopReason == "" {
			for i, s := range steps {
				if started[i] || running >= jobs {
					continue
				}
				why := failedNeed(s, results, byName)
				ready := true
				for _, n := range s.Needs {
					if results[byName[n]] == nil {
						ready = false
					}
				}
				switch {
				case why != "":
					skip(i, why)
				case ready:
					started[i] = true
					running++
					go func(i int) { finished <- done{i, exec(ctx, steps[i])} }(i)
				}
			}
		}
		if running == 0 {
			break
		}
		d := <-finished
		running--
		results[d.i] = d.r
		ev.finished(d.r)
		if d.r.blocking() && !keepGoing && stopReason == "" {
			stopReason = fmt.Sprintf("fail-fast: %s %s", d.r.Step.Name, pastTense(d.r.Status))
		}
	}
	for i, s := range steps {
		if started[i] {
			continue
		}
		why := failedNeed(s, results, byName)
		if why == "" {
			why = stopReason
		}
		skip(i, why)
	}
	return results
}

// failedNeed says why s cannot run because of a finished need that does not let
// dependents run ("needs build, which failed"): the first such need in s.Needs,
// "" when there is none.
func failedNeed(s *Step, results []*StepResult, byName map[string]int) string {
	for _, n := range s.Needs {
		if nr := results[byName[n]]; nr != nil && !nr.ok() {
			return fmt.Sprintf("needs %s, which %s", n, pastTense(nr.Status))
		}
	}
	return ""
}

func pastTense(s Status) string {
	switch s {
	case StatusFailed:
		return "failed"
	case StatusTimedOut:
		return "timed out"
	case StatusDenied:
		return "was denied"
	case StatusSkipped:
		return "was skipped"
	case StatusError:
		return "could not run"
	}
	return string(s)
}
