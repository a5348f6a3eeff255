package agentexec

import (
	"context"
	"io"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec/internal/audit"
	"github.com/agentexec/agentexec/internal/cgroup"
	"github.com/agentexec/agentexec/internal/egress"
	"github.com/agentexec/agentexec/internal/spawner"
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
	// audit collects the launch's kernel denials, egress is its proxy session
	// (nil: none).
	audit  *audit.Launch
	egress *egress.Session
	// queued is how long the launch waited for its slot.
	queued time.Duration
}

// endedProcess is a Process that has already ended with result and no output (a
// launch whose exec failed, as Start reports it).
func endedProcess(rt *Runtime, tool string, result Result) *Process {
	p := &Process{rt: rt, tool: tool, result: result}
	p.waitOnce.Do(func() {})
	var w *io.PipeWriter
	p.outR, w = io.Pipe()
	w.Close()
	p.errR, w = io.Pipe()
	w.Close()
	return p
}

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

// arm sets the launch's deadline (zero: none; the wall-clock limit counted from
// the request's arrival, so time in the queue counts) and ties the launch to ctx:
// either ends it with SIGTERM, then the kill of its tree after the runtime's grace.
func (p *Process) arm(ctx context.Context, deadline time.Time) {
	if !deadline.IsZero() {
		timer := time.AfterFunc(time.Until(deadline), func() {
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
}

// killLeftoversAtExit kills what the tool left running as soon as it exits.
func (p *Process) killLeftoversAtExit() {
	<-p.child.Done()
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.released {
		p.killTreeLocked(false)
	}
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
// still holds processes (a killed cgroup is replaced, not reused), and empty
// reports that it held none: the launch's whole tree had exited.
func (p *Process) killTreeLocked(always bool) (empty bool) {
	if p.group != nil {
		if !always {
			if populated, err := p.group.Populated(); err == nil && !populated {
				return true
			}
		}
		_ = p.group.Kill()
	} else {
		_ = unix.Kill(-p.child.Pid, syscall.SIGKILL)
	}
	_ = p.child.Signal(syscall.SIGKILL)
	return false
}
