package agentexec

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec/internal/cgroup"
	"github.com/agentexec/agentexec/internal/spawner"
	"github.com/agentexec/agentexec/internal/templates"
)

// Process is a running launch started by Start.
type Process struct {
	rt     *Runtime
	prt    *profileRT
	tool   string
	child  *spawner.Child
	group  *cgroup.Group
	start  time.Time
	stdout spawner.Sink
	stderr spawner.Sink

	outR, errR *io.PipeReader

	released  bool // the cgroup went back to the pool
	timedOut  bool
	canceled  bool
	mu        sync.Mutex
	waitOnce  sync.Once
	result    Result
	waitErr   error
	stopTimer func() bool
	ctxStop   func() bool
	// unenforced is what the Result lists as not enforced for this launch.
	unenforced []string
}

// Run launches a tool, waits for it and returns its Result with the output collected.
// A policy refusal is a *DeniedError; an exec failure is a Result with exit code 127
// (not found) or 126 (not executable) and ExecError set; other errors are launch or
// host failures.
func (rt *Runtime) Run(ctx context.Context, req Request) (Result, error) {
	p, err := rt.start(ctx, req, false)
	if err != nil {
		var ee *execFailure
		if errors.As(err, &ee) {
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
		var ee *execFailure
		if errors.As(err, &ee) {
			// As for Run, an exec failure is the tool's: a Process that has already
			// ended with exit status 127 or 126 and no output.
			done := &Process{rt: rt, tool: req.Tool, result: ee.result}
			done.waitOnce.Do(func() {})
			var w *io.PipeWriter
			done.outR, w = io.Pipe()
			w.Close()
			done.errR, w = io.Pipe()
			w.Close()
			return done, nil
		}
		return nil, err
	}
	return p, nil
}

// execFailure carries the Result of a launch whose exec failed.
type execFailure struct{ result Result }

func (e *execFailure) Error() string { return e.result.ExecError }

// Stdout returns the stream of the child's standard output (Start only).
func (p *Process) Stdout() io.Reader { return p.outR }

// Stderr returns the stream of the child's standard error (Start only).
func (p *Process) Stderr() io.Reader { return p.errR }

// Pid returns the child's pid (0 when its exec failed).
func (p *Process) Pid() int {
	if p.child == nil {
		return 0
	}
	return p.child.Pid
}

// Signal sends a signal to the child (not its descendants).
func (p *Process) Signal(sig syscall.Signal) error {
	if p.child == nil {
		return nil
	}
	return p.child.Signal(sig)
}

// Kill kills the child's whole tree at once.
func (p *Process) Kill() {
	if p.child != nil {
		p.killTree()
	}
}

func (rt *Runtime) start(ctx context.Context, req Request, stream bool) (*Process, error) {
	rt.mu.Lock()
	if rt.closed {
		rt.mu.Unlock()
		return nil, ErrClosed
	}
	rt.wg.Add(1)
	rt.mu.Unlock()
	ok := false
	defer func() {
		if !ok {
			rt.wg.Done()
		}
	}()
	t, prt, dir, env, err := rt.check(&req)
	if err != nil {
		if errors.Is(err, ErrDenied) {
			rt.stats.denied.Add(1)
		}
		return nil, err
	}
	select {
	case prt.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	release := func() { <-prt.sem }
	defer func() {
		if !ok {
			release()
		}
	}()

	p := &Process{rt: rt, prt: prt, tool: t.Name}
	timeout := lowerLimit(t.Timeout, req.Timeout)
	limit := lowerLimit(t.OutputBytes, req.MaxOutputBytes)
	p.stdout.Limit, p.stderr.Limit = limit, limit

	// Until the child runs, every resource taken here is undone on return: the
	// child's pipe ends always (the spawner holds its own copies once the request is
	// sent), our ends and the cgroup only on failure.
	var childEnds []int
	var ours []*os.File
	defer func() {
		for _, fd := range childEnds {
			unix.Close(fd)
		}
		if !ok {
			for _, f := range ours {
				f.Close()
			}
			if p.group != nil {
				p.group.Release()
			}
		}
	}()
	// pipe returns our end as a non-blocking *os.File (read through the runtime's
	// poller) and the child's end as a plain blocking fd: only our end is ever
	// registered with epoll, and the child gets the blocking end it expects.
	pipe := func(oursReads bool) (*os.File, int, error) {
		var fds [2]int
		if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
			return nil, -1, &LaunchError{Tool: t.Name, Op: "pipe", Err: err}
		}
		our, child := fds[0], fds[1]
		if !oursReads {
			our, child = child, our
		}
		if err := unix.SetNonblock(our, true); err != nil {
			unix.Close(our)
			unix.Close(child)
			return nil, -1, &LaunchError{Tool: t.Name, Op: "pipe", Err: err}
		}
		f := os.NewFile(uintptr(our), "|agentexec")
		ours, childEnds = append(ours, f), append(childEnds, child)
		return f, child, nil
	}
	outR, outW, err := pipe(true)
	if err != nil {
		return nil, err
	}
	errR, errW, err := pipe(true)
	if err != nil {
		return nil, err
	}
	spec := &spawner.LaunchSpec{
		Tool: t.Name, Argv: append([]string{filepath.Base(t.Exec)}, req.Args...), Env: env, Dir: dir,
		Stdin: -1, Stdout: outW, Stderr: errW, CgroupFD: -1, StdinPath: req.StdinFile,
	}
	var stdinW *os.File
	if req.Stdin != nil && req.StdinFile == "" {
		inW, inR, err := pipe(false)
		if err != nil {
			return nil, err
		}
		spec.Stdin = inR
		stdinW = inW
	}
	for _, f := range req.ExtraFiles {
		spec.Extra = append(spec.Extra, int(f.Fd()))
	}
	pool, unenforced, err := rt.poolFor(t, prt, req.Limits)
	if err != nil {
		return nil, err
	}
	p.unenforced = unenforced
	if pool != nil {
		g, err := pool.Get()
		if err != nil {
			return nil, &LaunchError{Tool: t.Name, Op: "cgroup", Err: err}
		}
		p.group = g
		spec.CgroupFD = g.FD()
	}
	if prt.kernel[t.Name] {
		spec.Kernel = true
		if p.group != nil {
			// The kernel backend cannot place the child at clone: the spawner writes
			// its pid into cgroup.procs right after the spawn, through the group's
			// kept cgroup.procs fd (its own Landlock domain has no access to the
			// cgroup tree).
			spec.CgroupFD = p.group.ProcsFD()
		}
	}
	p.start = time.Now()
	child, err := prt.spawner.Launch(spec)
	if err != nil {
		rt.stats.failures.Add(1)
		var le *spawner.LaunchError
		if errors.As(err, &le) && le.Exec {
			// The shell's statuses, as the kernel backend reports them.
			code, msg := templates.ExitStatusForExecError(le.Errno)
			return nil, &execFailure{result: Result{
				Tool: t.Name, ExitCode: code, ExecError: msg + ": " + le.Msg,
				Backend: BackendUserspace, Template: TemplateNone,
				Unenforced: unenforced, Containment: prt.layers,
			}}
		}
		return nil, &LaunchError{Tool: t.Name, Op: "spawn", Err: err}
	}
	rt.stats.launches.Add(1)
	rt.stats.inflight.Add(1)
	switch TemplateState(child.Template) {
	case TemplateHit:
		rt.stats.hits.Add(1)
	case TemplateCreated:
		rt.stats.created.Add(1)
	case TemplateRecreated:
		rt.stats.recreated.Add(1)
	}
	p.child = child
	if stdinW != nil {
		go func() {
			_, _ = io.Copy(stdinW, req.Stdin)
			stdinW.Close()
		}()
	}
	if stream {
		var ow, ew *io.PipeWriter
		p.outR, ow = io.Pipe()
		p.errR, ew = io.Pipe()
		p.stdout.Stream, p.stderr.Stream = ow, ew
	}
	p.stdout.Drain(outR)
	p.stderr.Drain(errR)
	// When the tool exits, what it left running (daemonized grandchildren holding
	// our pipes) goes with it at once, so that a streaming reader sees EOF without
	// having to call Wait first. (Run calls Wait at once, which does the same.)
	if stream {
		go func() {
			<-child.Done()
			p.mu.Lock()
			defer p.mu.Unlock()
			if !p.released {
				p.killTreeLocked(false)
			}
		}()
	}

	if timeout > 0 {
		timer := time.AfterFunc(timeout, func() {
			p.mu.Lock()
			p.timedOut = true
			p.mu.Unlock()
			p.terminate()
		})
		p.stopTimer = timer.Stop
	}
	if ctx.Done() != nil {
		p.ctxStop = context.AfterFunc(ctx, func() {
			p.mu.Lock()
			p.canceled = true
			p.mu.Unlock()
			p.terminate()
		})
	}
	rt.mu.Lock()
	rt.live[p] = struct{}{}
	rt.mu.Unlock()
	ok = true
	return p, nil
}

// lowerLimit is the stricter of the tool's limit and the request's (0: none).
func lowerLimit[T time.Duration | int64](tool, req T) T {
	if req > 0 && (tool == 0 || req < tool) {
		return req
	}
	return tool
}

// terminate asks the child to stop (SIGTERM), then kills the tree after the grace.
func (p *Process) terminate() {
	_ = p.child.Signal(syscall.SIGTERM)
	if p.group == nil {
		_ = unix.Kill(-p.child.Pid, syscall.SIGTERM)
	}
	go func() {
		select {
		case <-p.child.Done():
			// Wait cleans up what the child left.
		case <-time.After(p.rt.opts.grace):
			p.killTree()
		}
	}()
}

// killTree kills the child and everything it started: its cgroup when it has one,
// else its process group (the child is a session leader). It does nothing once Wait
// has released the launch's cgroup (which may then belong to another launch).
func (p *Process) killTree() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.released {
		return
	}
	p.killTreeLocked(true)
}

// killTreeLocked kills the tree; with always false, a cgroup is killed only when it
// still holds processes (a killed cgroup is replaced, not reused).
func (p *Process) killTreeLocked(always bool) {
	if p.group != nil {
		if !always {
			if populated, err := p.group.Populated(); err == nil && !populated {
				return
			}
		}
		_ = p.group.Kill()
	} else {
		_ = unix.Kill(-p.child.Pid, syscall.SIGKILL)
	}
	_ = p.child.Signal(syscall.SIGKILL)
}

// Wait waits for the child to exit and for its output to be drained, cleans up what
// it left (the rest of its process tree is killed), and returns the Result. It may be
// called more than once.
func (p *Process) Wait() (Result, error) {
	p.waitOnce.Do(p.wait)
	return p.result, p.waitErr
}

func (p *Process) wait() {
	rt := p.rt
	exit, err := p.child.Wait()
	wall := time.Since(p.start)
	if p.stopTimer != nil {
		p.stopTimer()
	}
	if p.ctxStop != nil {
		p.ctxStop()
	}
	// The tool is done; anything it left running (daemonized grandchildren holding
	// our pipes) goes with it.
	p.mu.Lock()
	p.killTreeLocked(false)
	p.mu.Unlock()
	p.stdout.Wait()
	p.stderr.Wait()
	p.child.Release()
	rt.sweepSentinels(p.prt)

	r := Result{Tool: p.tool, Pid: p.child.Pid, Wall: wall, Backend: Backend(p.child.Backend), PlacementDelay: p.child.PlacementDelay,
		Template: TemplateState(p.child.Template), Unenforced: p.unenforced, Containment: p.prt.layers}
	r.Stdout, r.StdoutDropped = p.stdout.Result()
	r.Stderr, r.StderrDropped = p.stderr.Result()
	r.StdoutTruncated, r.StderrTruncated = r.StdoutDropped > 0, r.StderrDropped > 0
	p.mu.Lock()
	r.TimedOut, r.Canceled = p.timedOut, p.canceled
	p.mu.Unlock()
	if p.group != nil {
		r.Cgroup = p.group.Path()
		// A Group is not safe for concurrent use: its reads share p.mu with the
		// exit watcher's, and after released nobody else touches it.
		p.mu.Lock()
		if u, uerr := p.group.Usage(); uerr == nil {
			r.CgroupCPU, r.PeakMemory, r.OOMKilled, r.PidsPeak = u.CPU, u.PeakMemory, u.OOMKills > 0, u.PidsPeak
		}
		p.released = true
		p.mu.Unlock()
		p.group.Release()
	}
	if err != nil {
		p.waitErr = &LaunchError{Tool: p.tool, Op: "wait", Err: err}
		r.ExitCode = -1
		rt.stats.failures.Add(1)
	} else {
		r.UserCPU, r.SystemCPU = exit.UserCPU, exit.SystemCPU
		r.ExecError = exit.ExecError
		switch {
		case exit.Status.Exited():
			r.ExitCode = exit.Status.ExitStatus()
		case exit.Status.Signaled():
			r.ExitCode = -1
			r.Signal = exit.Status.Signal()
		}
	}
	p.result = r
	<-p.prt.sem
	rt.stats.inflight.Add(-1)
	rt.mu.Lock()
	delete(rt.live, p)
	rt.mu.Unlock()
	rt.wg.Done()
}
