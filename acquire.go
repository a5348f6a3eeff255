package agentexec

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec/internal/audit"
	"github.com/agentexec/agentexec/internal/cgroup"
	"github.com/agentexec/agentexec/internal/egress"
	"github.com/agentexec/agentexec/internal/spawner"
	"github.com/agentexec/agentexec/policy"
)

// grant is what a launch holds between admission and the spawner: a slot of its
// profile, a cgroup, and the pipes. The spec carries the child's ends; ours go to
// the Process once the spawner has the child's.
type grant struct {
	prt  *profileRT
	tool string
	slot bool
	// queued is how long the launch waited for its slot; deadline is when its
	// wall-clock limit ends (zero: none), counted from when it arrived.
	queued     time.Duration
	deadline   time.Time
	group      *cgroup.Group
	unenforced []string
	spec       *spawner.LaunchSpec
	// Our ends: the output pipes' read ends, stdin's write end (nil: no stdin pipe).
	outR, errR, stdinW *os.File
	childEnds          []int
	// audit and egress are the launch's denial collection and proxy session (nil:
	// none).
	audit  *audit.Launch
	egress *egress.Session
	// launchGroup is group once the launch has it, for the egress session's
	// ssh-agent, which asks from its own goroutines (egress_ssh.go, sshPeer).
	launchGroup atomic.Pointer[cgroup.Group]
}

// acquire is the second stop of a launch: a slot in the profile (lanes.go:
// waiting while the profile's concurrency is used up, until ctx ends or the
// request's deadline passes — a deadline is a deadline, queue included), the
// cgroup for the launch's limits, and its pipes. On error nothing is left held;
// a deadline passed in the queue is an earlyResult (status timeout, no launch).
func (rt *Runtime) acquire(ctx context.Context, a *admission, req *Request, arrived time.Time) (g *grant, err error) {
	t := a.Tool
	g = &grant{prt: a.prt, tool: t.Name}
	defer func() {
		if err != nil {
			g.closeChildEnds()
			g.release()
			g = nil
		}
	}()
	if timeout := lowerLimit(t.Timeout, req.Timeout); timeout > 0 {
		g.deadline = arrived.Add(timeout)
	}
	g.queued, err = a.prt.lanes.acquire(ctx, t.Name, g.deadline)
	if errors.Is(err, errQueueDeadline) {
		return g, &earlyResult{result: Result{Tool: t.Name, ExitCode: -1, TimedOut: true, Queued: g.queued,
			Backend: BackendNone, Template: TemplateNone, Unenforced: a.prt.unenforced, Containment: a.prt.layers,
			DenialsStatus: DenialsStatus{State: "unavailable", Reason: "not launched: the deadline passed in the queue"}}}
	}
	if err != nil {
		return g, err
	}
	g.slot = true
	g.spec = &spawner.LaunchSpec{
		Tool: t.Name, Argv: append([]string{filepath.Base(t.Exec)}, req.Args...), Env: a.Env, Dir: a.Dir,
		Stdin: -1, CgroupFD: -1, StdinPath: req.StdinFile,
	}
	var proxyEnv []string
	if g.egress, proxyEnv, err = rt.egressSession(t, g); err != nil {
		return g, err
	}
	if len(proxyEnv) > 0 {
		// After the policy's values: the proxy's win.
		g.spec.Env = append(slices.Clone(a.Env), proxyEnv...)
	}
	if rt.audit != nil {
		g.audit = rt.audit.Begin() // before the request reaches the spawner
	}
	if g.outR, g.spec.Stdout, err = g.pipe(t.Name, true); err != nil {
		return g, err
	}
	if g.errR, g.spec.Stderr, err = g.pipe(t.Name, true); err != nil {
		return g, err
	}
	if req.Stdin != nil && req.StdinFile == "" {
		if g.stdinW, g.spec.Stdin, err = g.pipe(t.Name, false); err != nil {
			return g, err
		}
	}
	for _, f := range req.ExtraFiles {
		g.spec.Extra = append(g.spec.Extra, int(f.Fd()))
	}
	pool, unenforced, err := rt.poolFor(a)
	if err != nil {
		return g, err
	}
	g.unenforced = unenforced
	if pool != nil {
		if g.group, err = pool.Get(); err != nil {
			return g, &LaunchError{Tool: t.Name, Op: "cgroup", Err: err}
		}
		g.spec.CgroupFD = g.group.FD()
		g.launchGroup.Store(g.group)
	}
	if a.prt.kernel[t.Name] {
		g.spec.Kernel = true
		if g.group != nil {
			// The kernel backend cannot place the child at clone: the spawner writes
			// its pid into cgroup.procs right after the spawn, through the group's
			// kept cgroup.procs fd (its own Landlock domain has no access to the
			// cgroup tree).
			g.spec.CgroupFD = g.group.ProcsFD()
		}
	}
	return g, nil
}

// pipe makes a pipe and returns our end as a non-blocking *os.File (read through
// the runtime's poller) and the child's end as a plain blocking fd: only our end is
// ever registered with epoll, and the child gets the blocking end it expects.
func (g *grant) pipe(tool string, oursReads bool) (*os.File, int, error) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		return nil, -1, &LaunchError{Tool: tool, Op: "pipe", Err: err}
	}
	our, child := fds[0], fds[1]
	if !oursReads {
		our, child = child, our
	}
	if err := unix.SetNonblock(our, true); err != nil {
		unix.Close(our)
		unix.Close(child)
		return nil, -1, &LaunchError{Tool: tool, Op: "pipe", Err: err}
	}
	g.childEnds = append(g.childEnds, child)
	return os.NewFile(uintptr(our), "|agentexec"), child, nil
}

// closeChildEnds closes the child's pipe ends: once the spawner has been sent the
// request it holds its own copies, and on failure nobody needs them.
func (g *grant) closeChildEnds() {
	for _, fd := range g.childEnds {
		unix.Close(fd)
	}
	g.childEnds = nil
}

// release gives back what a launch that did not start holds: our pipe ends, the
// cgroup and the slot.
func (g *grant) release() {
	for _, f := range []*os.File{g.outR, g.errR, g.stdinW} {
		if f != nil {
			f.Close()
		}
	}
	if g.group != nil {
		g.group.Release()
	}
	if g.slot {
		g.prt.lanes.release(g.tool)
	}
	if g.audit != nil {
		g.audit.Finish(context.Background()) // never started: returns at once
	}
	if g.egress != nil {
		g.egress.Close()
	}
}

// poolFor returns the pool for a launch's limits: the profile's, or one with the
// request's lower limits (created on first use), and what the launch will list as
// unenforced: the profile's gaps plus any limit the request asks for that this host
// cannot enforce (an error wrapping ErrNotSupported when the profile says
// `cgroup: require`).
func (rt *Runtime) poolFor(a *admission) (*cgroup.Pool, []string, error) {
	prt := a.prt
	if !a.LimitsAsked {
		return prt.pool, prt.unenforced, nil
	}
	unenforced, err := rt.requestUnenforced(a.Tool, prt, a.asked)
	if err != nil || prt.pool == nil {
		return prt.pool, unenforced, err
	}
	pool, err := rt.requestPool(a.Tool, prt, a.Limits)
	return pool, unenforced, err
}

// requestUnenforced adds to the profile's unenforced list the limits a request asks
// for that this host cannot enforce (no cgroups, or no controller for them).
func (rt *Runtime) requestUnenforced(t *policy.Tool, prt *profileRT, req *policy.Limits) ([]string, error) {
	gaps := cgLimits(*req).Controllers() // without cgroups, nothing is enforced
	if prt.pool != nil {
		gaps = rt.cg.Unenforced(cgLimits(*req))
	}
	var added []string
	for _, g := range gaps {
		if !slices.Contains(prt.unenforced, "cgroup: "+g) {
			added = append(added, "cgroup: "+g)
		}
	}
	if len(added) == 0 {
		return prt.unenforced, nil
	}
	// (WithoutCgroups is the embedder's explicit opt-out: best effort, as for the
	// profile's own limits.)
	if prt.p.Enforcement.Cgroup == policy.Require && !rt.opts.noCgroups {
		return nil, &LaunchError{Tool: t.Name, Op: "limits", Err: fmt.Errorf(
			"profile %s: cgroup: require: the request's limits cannot be enforced on this host: %s: %w",
			prt.p.Name, strings.Join(added, ", "), ErrNotSupported)}
	}
	return append(slices.Clone(prt.unenforced), added...), nil // never into the profile's slice
}

// maxRequestPools bounds the distinct Request.Limits pools of a profile.
const maxRequestPools = 16

// requestPool returns the pool of cgroups with the given limits.
func (rt *Runtime) requestPool(t *policy.Tool, prt *profileRT, lim policy.Limits) (*cgroup.Pool, error) {
	prt.poolsMu.Lock()
	defer prt.poolsMu.Unlock()
	if p, ok := prt.pools[lim]; ok {
		return p, nil
	}
	if len(prt.pools) >= maxRequestPools {
		return nil, &LaunchError{Tool: t.Name, Op: "cgroup", Err: fmt.Errorf("more than %d distinct per-request limit sets in profile %s", maxRequestPools, prt.p.Name)}
	}
	p, err := rt.cg.NewPool(fmt.Sprintf("%s-l%d", prt.p.Name, len(prt.pools)), cgLimits(lim), 1, prt.lanes.cap*maxGroupsPerSlot)
	if err != nil {
		return nil, &LaunchError{Tool: t.Name, Op: "cgroup", Err: err}
	}
	prt.pools[lim] = p
	return p, nil
}

// errQueueDeadline is a request whose deadline passed while it waited for a slot.
var errQueueDeadline = errors.New("deadline passed while queued")
