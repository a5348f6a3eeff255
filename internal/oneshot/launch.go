package oneshot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec/internal/cgroup"
	"github.com/agentexec/agentexec/internal/spawner"
	"github.com/agentexec/agentexec/internal/sys"
	"github.com/agentexec/agentexec/internal/templates"
	"github.com/agentexec/agentexec/internal/tmpdir"
	"github.com/agentexec/agentexec/policy"
)

// Result is how a one-shot launch ended (the fields of agentexec.Result that
// `agentexec run` reports).
type Result struct {
	Tool string
	// ExitCode is the tool's exit status, -1 when a signal killed it.
	ExitCode int
	Signal   syscall.Signal
	TimedOut bool
	// Canceled: the supervisor was asked to stop (SIGINT, SIGTERM) and ended the tool.
	Canceled bool
	// ExecError says why the exec failed (ExitCode 126 or 127 then), as a Runtime
	// words it.
	ExecError string
	Wall      time.Duration
	// StdoutDropped and StderrDropped count output beyond the tool's cap.
	StdoutDropped, StderrDropped int64
	// Layers are the containment layers in force for the tool.
	Layers []string
	// Pid is the tool's process id.
	Pid int
	// Unenforced lists what the policy asks for and this host does not enforce
	// (only limits of a cgroup: best_effort profile reach the fast path), worded
	// and ordered as a Runtime's Result.Unenforced.
	Unenforced []string
}

// LaunchError is a launch that failed in the supervisor, worded as the root
// package's LaunchError ("launch TOOL: OP: cause").
type LaunchError struct {
	Tool, Op string
	Err      error
}

func (e *LaunchError) Error() string { return fmt.Sprintf("launch %s: %s: %v", e.Tool, e.Op, e.Err) }
func (e *LaunchError) Unwrap() error { return e.Err }

// Run launches the tool and waits for it and everything it started. Until the
// fork, Run may still return an error matching ErrFallback (the host turned out to
// need the Runtime path): only the forking thread was changed then, and it has
// ended, so the caller may start a Runtime. After the fork it never falls back.
// Run is meant to be called once per process: it sets the process non-dumpable
// and handles SIGINT and SIGTERM (ending the tool) while the tool runs.
func (l *Launch) Run(ctx context.Context) (Result, error) {
	res := Result{Tool: l.tool.Name, ExitCode: -1}
	// Nothing the caller of `agentexec run` left open without O_CLOEXEC may reach
	// the tool (a spawner does the same at its start): the tool gets fds 0, 1, 2.
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return res, fallbackf("close_range(CLOSE_RANGE_CLOEXEC): %v", err)
	}
	s := &session{l: l, tr: newTracer()}
	defer s.close()
	if err := s.prepare(); err != nil {
		return res, err
	}
	return s.run(ctx, res)
}

// session is what one launch holds: the tool identity, the cgroup, the stdio
// pipes and the tool's Landlock layer.
type session struct {
	l         *Launch
	cred      *sys.Cred
	releaseID func()
	cgm       *cgroup.Manager
	pool      *cgroup.Pool
	group     *cgroup.Group
	ruleset   int
	files     [3]int // the child's fds 0, 1, 2
	childEnds []int  // pipe ends of the child, closed once it has them
	copies    sync.WaitGroup
	// exited is closed when the tool has exited (or never started): the output
	// copiers stop pausing between reads (capped.run).
	exited      chan struct{}
	exitedOnce  sync.Once
	outs        [2]*capped // stdout and stderr copiers (nil: inherited)
	stdinFeeder *os.File
	unenforced  []string
	tr          *tracer
	toolID      bool        // cred is the tool identity (not a profile's user:)
	tmpDir      string      // the private ${TMPDIR} ("": none)
	prot        *protection // the protected repository metadata
	orph        *orphans    // without a cgroup: the supervisor's orphans (tree.go)
}

// prepare does everything before the fork, all of which may still fall back: the
// tool's identity and whether it needs a tool view, the private ${TMPDIR}, the
// protected repository metadata, the cgroup and the limits it enforces, the stdio,
// the tool's Landlock layer.
func (s *session) prepare() error {
	l := s.l
	s.ruleset = -1
	if err := s.identity(); err != nil {
		return err
	}
	s.tr.step("tool identity")
	uid, gid := uint32(os.Geteuid()), uint32(os.Getegid())
	if s.cred != nil {
		uid, gid = s.cred.UID, s.cred.GID
	}
	if err := s.setupTmpDir(uid, gid, s.cred != nil); err != nil {
		return &LaunchError{Tool: l.tool.Name, Op: "tmpdir", Err: err}
	}
	if s.toolID {
		if v := spawner.PlanToolView(l.prof.FS.Read, l.prof.FS.Write, l.prof.FS.Exec, uid, gid); !v.Empty() {
			return fallbackf("profile %s: tool uid %d needs a tool view", l.prof.Name, uid)
		}
	}
	prot, err := l.planProtection()
	if err != nil {
		return err
	}
	s.prot = prot
	if s.toolID {
		if err := prot.addAccounts(uid, gid); err != nil {
			return &LaunchError{Tool: l.tool.Name, Op: "tool identity account", Err: err}
		}
	}
	s.tr.step("tmpdir, view, protection")
	if err := s.cgroup(); err != nil {
		return err
	}
	// Listed in the order a Runtime lists a profile's gaps: the cgroup's, then the
	// protection's (what its scan could not cover).
	s.unenforced = append(s.unenforced, prot.plan.Unenforced(true, "")...)
	if err := s.stdio(); err != nil {
		return &LaunchError{Tool: l.tool.Name, Op: "pipe", Err: err}
	}
	// With account copies to bind, the rules are made on the forking thread after
	// the binds (forkTool), through the same paths.
	if len(prot.accounts) == 0 {
		if s.ruleset, err = toolRuleset(l.plan); err != nil {
			return &LaunchError{Tool: l.tool.Name, Op: "landlock", Err: err}
		}
	}
	s.tr.step("stdio, tool ruleset")
	return nil
}

// identity decides who the tool runs as: a profile's user: (root only, checked by
// Prepare), the tool identity of a root supervisor, or the caller's own.
func (s *session) identity() error {
	l := s.l
	if u := l.prof.User; u != nil && !u.Own {
		groups := u.Groups
		if groups == nil {
			groups = []uint32{}
		}
		s.cred = &sys.Cred{UID: u.UID, GID: u.GID, Groups: groups}
		return nil
	}
	uid, gid, release, ok, err := l.req.Hooks.ToolIdentity(l.prof)
	if err != nil {
		return &LaunchError{Tool: l.tool.Name, Op: "tool identity", Err: err}
	}
	s.releaseID = release
	if ok {
		s.cred, s.toolID = &sys.Cred{UID: uid, GID: gid, Groups: []uint32{}}, true
	}
	return nil
}

// cgroup makes the tool's cgroup (a pool of one below a base of its own, beside the
// supervisor's cgroup, never above it) and lists the limits it cannot enforce.
func (s *session) cgroup() error {
	l := s.l
	var err error
	lim := cgroup.Limits(l.adm.Limits)
	if l.cg == nil {
		for _, c := range lim.Controllers() {
			s.unenforced = append(s.unenforced, "cgroup: "+c)
		}
		if s.orph, err = newOrphans(); err != nil {
			return fallbackf("no cgroup, and %v", err)
		}
		return nil
	}
	if s.cgm, err = cgroup.NewManager(l.cg, cgroup.Options{}); err != nil {
		return fallbackf("cgroup: %v", err)
	}
	s.tr.step("cgroup manager")
	if un := s.cgm.Unenforced(lim); len(un) > 0 {
		// cgroup: require makes it the Runtime's error; best_effort lists the
		// gaps in the Result, as a Runtime's profile does (profilePool).
		if l.prof.Enforcement.Cgroup == policy.Require {
			return fallbackf("cgroup: require: %v not enforced here", un)
		}
		for _, u := range un {
			s.unenforced = append(s.unenforced, "cgroup: "+u)
		}
	}
	if s.pool, err = s.cgm.NewPool(l.prof.Name, lim, 1, 1); err != nil {
		return fallbackf("cgroup pool: %v", err)
	}
	if s.group, err = s.pool.Get(); err != nil {
		return fallbackf("cgroup: %v", err)
	}
	s.tr.step("cgroup group")
	return nil
}

// forked is what the forking thread reports. An error matching ErrFallback came
// before the fork: only the forking thread, which has ended, was changed.
type forked struct {
	pid, pidfd int
	layers     []string
	err        error
}

// forkTool runs on a goroutine of its own, locked to its thread for good: it gives
// the thread the tool's mount namespace (protect.go) and containment (contain.go),
// forks the tool from it and then keeps the thread alive until release is closed
// (the kernel sends the tool Pdeathsig when the thread that forked it exits). It
// never unlocks: Go ends the restricted thread with the goroutine instead of
// handing it to other goroutines, so that nothing else ever runs on it.
func (s *session) forkTool(out chan<- forked, release <-chan struct{}) {
	runtime.LockOSThread()
	l := s.l
	if err := s.prot.applyOnThread(); err != nil {
		out <- forked{err: fallbackf("protect: %v", err)}
		return
	}
	if len(s.prot.accounts) > 0 {
		// The account copies are other inodes than the host's /etc/passwd and
		// /etc/group: the tool's rules are made through this thread's mounts, as a
		// spawner makes them after its own.
		rs, err := toolRuleset(l.plan)
		if err != nil {
			out <- forked{err: &LaunchError{Tool: l.tool.Name, Op: "landlock", Err: err}}
			return
		}
		s.ruleset = rs
	}
	layers, err := containThread(l.plan, spawner.ContainmentFor(l.prof), s.cred != nil)
	if err != nil {
		out <- forked{err: fallbackf("contain the forking thread: %v", err)}
		return
	}
	if !s.prot.plan.Empty() {
		layers = append(layers, "protect")
	}
	s.tr.step("contain forking thread")
	argv := append([]string{filepath.Base(l.tool.Exec)}, l.req.Args...)
	cgroupFD := -1
	if s.group != nil {
		cgroupFD = s.group.FD()
	}
	pid, pidfd, err := sys.ForkExec(l.tool.Path, argv, &sys.SpawnAttr{
		Dir: l.adm.Dir, Env: l.adm.Env, Files: s.files[:],
		Setsid:          true,
		Pdeathsig:       syscall.SIGKILL,
		CgroupFD:        cgroupFD,
		LandlockRuleset: s.ruleset,
		Cred:            s.cred,
	})
	out <- forked{pid: pid, pidfd: pidfd, layers: layers, err: err}
	if err == nil {
		<-release
	}
}

// run forks the tool (forkTool) and waits for it, its timeout, and what it left.
func (s *session) run(ctx context.Context, res Result) (Result, error) {
	l := s.l
	reset, _ := sys.ResetIgnoredSignals() // the tool starts with default dispositions, as a spawner's do
	start := time.Now()
	ch, release := make(chan forked, 1), make(chan struct{})
	defer close(release)
	go s.forkTool(ch, release)
	f := <-ch
	restoreIgnored(reset)
	s.tr.step("fork+exec")
	s.closeChildEnds()
	if errors.Is(f.err, ErrFallback) {
		return res, f.err
	}
	if f.err != nil {
		return s.forkFailed(res, f.err)
	}
	res.Layers = f.layers
	if s.group != nil {
		res.Layers = append(res.Layers, "cgroup")
	}
	if s.cred != nil {
		res.Layers = append(res.Layers, fmt.Sprintf("tool-uid-%d", s.cred.UID))
	}
	res.Unenforced = s.unenforced
	res.Pid = f.pid
	w := &waiter{pid: f.pid, pidfd: f.pidfd, done: make(chan struct{}), onExit: s.toolExited}
	go w.wait()
	stop := s.arm(ctx, w, l.timeout, &res)
	<-w.done
	s.toolExited()
	res.Wall = time.Since(start)
	s.tr.step("tool ran")
	stop()
	// What the tool left running goes with it.
	s.killLeftovers(w)
	s.prot.sweep()
	s.copies.Wait()
	s.tr.step("leftovers, output")
	if s.outs[0] != nil {
		res.StdoutDropped = s.outs[0].dropped
	}
	if s.outs[1] != nil {
		res.StderrDropped = s.outs[1].dropped
	}
	if w.err != nil {
		return res, &LaunchError{Tool: l.tool.Name, Op: "wait", Err: w.err}
	}
	switch {
	case w.status.Exited():
		res.ExitCode = w.status.ExitStatus()
	case w.status.Signaled():
		res.Signal = w.status.Signal()
	}
	return res, nil
}

// forkFailed words a failed fork as a Runtime does: an exec failure is the tool's
// (exit 126/127, ExecError), anything else a launch error.
func (s *session) forkFailed(res Result, err error) (Result, error) {
	l := s.l
	fe, ok := errors.AsType[*sys.ForkError](err)
	if !ok {
		return res, &LaunchError{Tool: l.tool.Name, Op: "spawn", Err: err}
	}
	switch fe.Step {
	case sys.StepExec:
		code, msg := templates.ExitStatusForExecError(fe.Errno)
		res.ExitCode, res.ExecError = code, fmt.Sprintf("%s: %s: %v", msg, l.tool.Path, fe.Errno)
		return res, nil
	case sys.StepChdir:
		return res, &LaunchError{Tool: l.tool.Name, Op: "spawn", Err: fmt.Errorf("working directory %s: %w", l.adm.Dir, fe.Errno)}
	default:
		return res, &LaunchError{Tool: l.tool.Name, Op: "spawn", Err: fmt.Errorf("launch %s: %w", l.tool.Path, fe)}
	}
}

// arm sets the timeout and the supervisor's own SIGINT/SIGTERM (and ctx): each
// ends the tool as a Runtime does, SIGTERM, the grace, then the whole cgroup.
func (s *session) arm(ctx context.Context, w *waiter, timeout time.Duration, res *Result) (stop func()) {
	var mu sync.Mutex
	grace := s.l.req.Grace
	if grace <= 0 {
		grace = time.Second
	}
	terminate := func(timedOut bool) {
		mu.Lock()
		if timedOut {
			res.TimedOut = true
		} else {
			res.Canceled = true
		}
		mu.Unlock()
		w.signal(syscall.SIGTERM, s.group == nil)
		select {
		case <-w.done:
		case <-time.After(grace):
			if s.group != nil {
				_ = s.group.Kill()
			} else {
				w.signal(syscall.SIGKILL, true) // the rest: killLeftovers
			}
		}
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	quit := make(chan struct{})
	var timer <-chan time.Time
	var t *time.Timer
	if timeout > 0 {
		t = time.NewTimer(timeout)
		timer = t.C
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-timer:
			terminate(true)
		case <-sigs:
			terminate(false)
		case <-ctx.Done():
			terminate(false)
		case <-w.done:
		case <-quit:
		}
	}()
	return func() {
		close(quit)
		wg.Wait()
		signal.Stop(sigs)
		if t != nil {
			t.Stop()
		}
	}
}

// waiter waits for the tool without reaping it first (waitid WNOWAIT on its
// pidfd), so that a signal sent before the reap can never reach a recycled pid.
type waiter struct {
	pid, pidfd int
	mu         sync.Mutex
	reaped     bool
	status     unix.WaitStatus
	err        error
	done       chan struct{}
	onExit     func() // called as soon as the tool has exited, before it is reaped
}

func (w *waiter) wait() {
	defer close(w.done)
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PIDFD, w.pidfd, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EINTR) {
			w.err = fmt.Errorf("waitid: %w", err)
			break
		}
	}
	if w.onExit != nil {
		w.onExit()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		_, err := unix.Wait4(w.pid, &w.status, 0, nil)
		if err == nil || !errors.Is(err, unix.EINTR) {
			if err != nil && w.err == nil {
				w.err = fmt.Errorf("wait4: %w", err)
			}
			break
		}
	}
	w.reaped = true
	unix.Close(w.pidfd)
}

// signal sends sig to the tool while it has not been reaped (kill(2) of an
// unreaped child's pid cannot reach another process), and with group to its
// process group too (without a cgroup, as a Runtime does).
func (w *waiter) signal(sig syscall.Signal, group bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.reaped {
		_ = unix.Kill(w.pid, sig)
		if group {
			_ = unix.Kill(-w.pid, sig)
		}
	}
}

// reapedYet reports whether the waiter has reaped the tool.
func (w *waiter) reapedYet() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.reaped
}

// killLeftovers kills what the tool left running once it has exited: through its
// cgroup (only when still populated: the kill costs), or without one, its process
// group and every orphan of the supervisor until none is left.
func (s *session) killLeftovers(w *waiter) {
	deadline := time.Now().Add(10 * time.Second)
	if s.group != nil {
		if populated, err := s.group.Populated(); err != nil || populated {
			_ = s.group.Kill()
			_ = s.group.WaitEmpty(time.Until(deadline))
		}
		return
	}
	_ = unix.Kill(-w.pid, syscall.SIGKILL)
	_ = s.orph.killAll(w.pid, w.reapedYet, deadline)
}

// restoreIgnored sets the signals ResetIgnoredSignals reset back to SIG_IGN.
func restoreIgnored(sigs []syscall.Signal) {
	for _, sig := range sigs {
		var old sys.KernelSigaction
		if sys.RtSigaction(sig, nil, &old) != nil {
			continue
		}
		old.Handler = sys.SIG_IGN
		_ = sys.RtSigaction(sig, &old, nil)
	}
}

// close gives back what the session holds: the cgroup (the manager kills and
// removes everything below its base, which the supervisor is not in), the tool
// identity, the pipes.
func (s *session) close() {
	s.toolExited()
	s.closeChildEnds()
	if s.ruleset >= 0 {
		unix.Close(s.ruleset)
	}
	if s.stdinFeeder != nil {
		s.stdinFeeder.Close()
	}
	s.orph.close()
	if s.cgm != nil {
		if err := s.cgm.Close(); err != nil && s.tr.on {
			fmt.Fprintf(&s.tr.buf, "oneshot: cgroup close: %v\n", err)
		}
		s.tr.step("cgroup close")
	}
	if s.prot != nil && s.prot.accountsDir != "" {
		_ = os.RemoveAll(s.prot.accountsDir)
	}
	if s.tmpDir != "" {
		_ = tmpdir.Remove(s.tmpDir)
	}
	if s.releaseID != nil {
		s.releaseID()
	}
}

// toolExited tells the output copiers that no more output is coming but what the
// pipes hold (and what leftovers write before they are killed).
func (s *session) toolExited() {
	s.exitedOnce.Do(func() {
		if s.exited != nil {
			close(s.exited)
		}
	})
}

func (s *session) closeChildEnds() {
	for _, fd := range s.childEnds {
		unix.Close(fd)
	}
	s.childEnds = nil
}

// traceEnv, set to 1, prints the time each step of a one-shot launch took to
// stderr (the timeline docs/performance.md shows).
const traceEnv = "AGENTEXEC_ONESHOT_TRACE"

type tracer struct {
	on   bool
	last time.Time
	buf  strings.Builder
}

// processTracer times the steps of this process's one-shot launch from the end of
// package initialisation on (Trace, the session's steps).
var processTracer = &tracer{on: os.Getenv(traceEnv) == "1", last: time.Now()}

func newTracer() *tracer { return processTracer }

// Trace records, with AGENTEXEC_ONESHOT_TRACE=1, the time since the previous step
// (the first: since this package was initialised) under name.
func Trace(name string) { processTracer.step(name) }

// TraceFlush writes the recorded steps to stderr, after the tool's output (so
// that they never interleave with it), and forgets them.
func TraceFlush() {
	t := processTracer
	if !t.on || t.buf.Len() == 0 {
		return
	}
	fmt.Fprint(os.Stderr, t.buf.String())
	t.buf.Reset()
}

func (t *tracer) step(name string) {
	if !t.on {
		return
	}
	now := time.Now()
	fmt.Fprintf(&t.buf, "oneshot: %-24s %8.3f ms\n", name, float64(now.Sub(t.last).Microseconds())/1000)
	t.last = now
}
