package agentexec

import "time"

// Wait waits for the child to exit and for its output to be drained, cleans up what
// it left (the rest of its process tree is killed), and returns the Result. It may be
// called more than once.
func (p *Process) Wait() (Result, error) {
	p.waitOnce.Do(p.finish)
	return p.result, p.waitErr
}

// finish is the last stop of a launch: the exit, then the end of everything the
// tool left (its tree, its output, swept sentinels), the cgroup's usage, and the
// Result; the launch's slot and cgroup go back to its profile.
func (p *Process) finish() {
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
	empty := p.killTreeLocked(false)
	p.mu.Unlock()
	if empty && p.audit != nil {
		// The whole tree has exited and every record of it is queued: the denials'
		// sync marker is logged now to come back while the rest runs (collectDenials
		// logs it otherwise).
		p.audit.Ended()
	}
	p.stdout.Wait()
	p.stderr.Wait()
	p.child.Release()
	p.rt.sweepSentinels(p.prt)

	r := Result{Tool: p.tool, Pid: p.child.Pid, Wall: wall, Queued: p.queued, Backend: Backend(p.child.Backend), PlacementDelay: p.child.PlacementDelay,
		Template: TemplateState(p.child.Template), Unenforced: p.unenforced, Containment: p.prt.layers}
	r.Stdout, r.StdoutDropped = p.stdout.Result()
	r.Stderr, r.StderrDropped = p.stderr.Result()
	r.StdoutTruncated, r.StderrTruncated = r.StdoutDropped > 0, r.StderrDropped > 0
	p.mu.Lock()
	r.TimedOut, r.Canceled = p.timedOut, p.canceled
	p.mu.Unlock()
	p.releaseGroup(&r)
	p.collectDenials(&r)
	if err != nil {
		p.waitErr = &LaunchError{Tool: p.tool, Op: "wait", Err: err}
		r.ExitCode = -1
		p.rt.stats.failures.Add(1)
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
	p.prt.lanes.release(p.tool)
	p.rt.leave(p)
}

// releaseGroup puts the cgroup's usage into r and gives the group back to its pool.
func (p *Process) releaseGroup(r *Result) {
	if p.group == nil {
		return
	}
	r.Cgroup = p.group.Path()
	// A Group is not safe for concurrent use: its reads share p.mu with the exit
	// watcher's, and after released nobody else touches it.
	p.mu.Lock()
	if u, err := p.group.Usage(); err == nil {
		r.CgroupCPU, r.PeakMemory, r.OOMKilled, r.PidsPeak = u.CPU, u.PeakMemory, u.OOMKills > 0, u.PidsPeak
	}
	p.released = true
	p.mu.Unlock()
	p.group.Release()
}

// leave counts a finished launch out of the runtime.
func (rt *Runtime) leave(p *Process) {
	rt.stats.inflight.Add(-1)
	rt.mu.Lock()
	delete(rt.live, p)
	rt.mu.Unlock()
	rt.wg.Done()
}
