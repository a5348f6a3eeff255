package agentexec

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/agentexec/agentexec/internal/spawner"
	"github.com/agentexec/agentexec/internal/templates"
)

// A launch, top to bottom (docs/design.md, "A launch"): Run or Start → start:
// admit (admit.go: the policy's decision and the host's executable) → acquire
// (acquire.go: a slot, a cgroup, pipes) → spawn (below: the spawner forks and
// execs, then output drains and the timers are set) → Process.Wait (finish.go:
// exit, output, usage, the Result).

// Run launches a tool, waits for it and returns its Result with the output collected.
// A policy refusal is a *DeniedError; an exec failure is a Result with exit code 127
// (not found) or 126 (not executable) and ExecError set; other errors are launch or
// host failures.
func (rt *Runtime) Run(ctx context.Context, req Request) (Result, error) {
	p, err := rt.start(ctx, req, false)
	if err != nil {
		if ee, ok := errors.AsType[*earlyResult](err); ok {
			return ee.result, nil
		}
		return Result{Tool: req.Tool}, err
	}
	return p.Wait()
}

// Start launches a tool and returns at once. The caller must read both Stdout and
// Stderr until EOF, which comes when the tool has exited (anything it left running is
// killed then), and call Wait; output beyond the cap is dropped.
func (rt *Runtime) Start(ctx context.Context, req Request) (*Process, error) {
	p, err := rt.start(ctx, req, true)
	if err != nil {
		if ee, ok := errors.AsType[*earlyResult](err); ok {
			// As for Run, an exec failure is the tool's: a Process that has already
			// ended with exit status 127 or 126 and no output.
			return endedProcess(rt, req.Tool, ee.result), nil
		}
		return nil, err
	}
	return p, nil
}

// earlyResult carries the Result of a launch that ended before it ran: its exec
// failed, or its deadline passed while it was queued.
type earlyResult struct{ result Result }

func (e *earlyResult) Error() string { return e.result.ExecError }

// start walks a request through admission, acquisition and the spawner. The
// runtime's wait group counts it from here until its Process is waited for (or
// until it fails here), so that Close waits for it.
func (rt *Runtime) start(ctx context.Context, req Request, stream bool) (*Process, error) {
	if err := rt.enter(); err != nil {
		return nil, err
	}
	arrived := time.Now()
	a, err := rt.admit(&req)
	if err != nil {
		rt.wg.Done()
		return nil, err
	}
	g, err := rt.acquire(ctx, a, &req, arrived)
	if err != nil {
		rt.wg.Done()
		return nil, err
	}
	p, err := rt.spawn(ctx, a, g, &req, stream)
	g.closeChildEnds() // the spawner holds its own copies once the request is sent
	if err != nil {
		g.release()
		rt.wg.Done()
		return nil, err
	}
	return p, nil
}

// enter counts a launch in, unless the runtime is closed.
func (rt *Runtime) enter() error {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.closed {
		return ErrClosed
	}
	rt.wg.Add(1)
	return nil
}

// spawn is the third stop: the spawner forks and execs the tool; then its output
// drains, its stdin is fed, and the timeout and the context's cancellation are
// armed. The Process then owns what the grant held.
func (rt *Runtime) spawn(ctx context.Context, a *admission, g *grant, req *Request, stream bool) (*Process, error) {
	t, prt := a.Tool, a.prt
	start := time.Now()
	child, err := prt.spawner.Launch(g.spec)
	if err != nil {
		rt.stats.failures.Add(1)
		if le, ok := errors.AsType[*spawner.LaunchError](err); ok && le.Exec {
			// The shell's statuses, as the kernel backend reports them.
			code, msg := templates.ExitStatusForExecError(le.Errno)
			return nil, &earlyResult{result: Result{
				Tool: t.Name, ExitCode: code, ExecError: msg + ": " + le.Msg,
				Backend: BackendUserspace, Template: TemplateNone,
				Unenforced: g.unenforced, Containment: prt.layers,
			}}
		}
		return nil, &LaunchError{Tool: t.Name, Op: "spawn", Err: err}
	}
	rt.countLaunch(child)
	p := &Process{rt: rt, prt: prt, tool: t.Name, child: child, group: g.group, start: start, unenforced: g.unenforced,
		audit: g.audit, egress: g.egress, queued: g.queued}
	if p.audit != nil {
		p.audit.Attach(child.Pid)
	}
	limit := lowerLimit(t.OutputBytes, req.MaxOutputBytes)
	p.stdout.Limit, p.stderr.Limit = limit, limit
	if g.stdinW != nil {
		go func(w io.WriteCloser) {
			_, _ = io.Copy(w, req.Stdin)
			w.Close()
		}(g.stdinW)
	}
	if stream {
		var ow, ew *io.PipeWriter
		p.outR, ow = io.Pipe()
		p.errR, ew = io.Pipe()
		p.stdout.Stream, p.stderr.Stream = ow, ew
		// When the tool exits, what it left running (daemonized grandchildren
		// holding our pipes) goes with it at once, so that a streaming reader sees
		// EOF without having to call Wait first. (Run calls Wait at once, which does
		// the same.)
		go p.killLeftoversAtExit()
	}
	p.stdout.Drain(g.outR)
	p.stderr.Drain(g.errR)
	p.arm(ctx, g.deadline)
	rt.mu.Lock()
	rt.live[p] = struct{}{}
	rt.mu.Unlock()
	return p, nil
}

// countLaunch counts a started launch and its template state.
func (rt *Runtime) countLaunch(child *spawner.Child) {
	rt.stats.launches.Add(1)
	rt.stats.inflight.Add(1)
	switch child.Template {
	case templates.StateHit:
		rt.stats.hits.Add(1)
	case templates.StateCreated:
		rt.stats.created.Add(1)
	case templates.StateRecreated:
		rt.stats.recreated.Add(1)
	}
}

// lowerLimit is the stricter of the tool's limit and the request's (0: none).
func lowerLimit[T time.Duration | int64](tool, req T) T {
	if req > 0 && (tool == 0 || req < tool) {
		return req
	}
	return tool
}
