package oneshot

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/agentexec/agentexec/internal/cgroup"
	"github.com/agentexec/agentexec/internal/spawner"
	"github.com/agentexec/agentexec/internal/sys"
	"github.com/agentexec/agentexec/policy"
)

// ErrFallback is matched by every error of Prepare that means "this request needs
// the Runtime path": something the policy asks for that the fast path does not do
// (the error says what), or a refusal whose exact wording the Runtime path owns.
var ErrFallback = errors.New("one-shot fast path not applicable")

// fallback is an ErrFallback with the reason.
type fallback struct{ why string }

func (f *fallback) Error() string        { return "one-shot: " + f.why }
func (f *fallback) Is(target error) bool { return target == ErrFallback }

func fallbackf(format string, args ...any) error {
	return &fallback{why: fmt.Sprintf(format, args...)}
}

// Hooks are the root package's decisions the fast path must make exactly as a
// Runtime does (agentexec.OneShot*); the caller passes them in.
type Hooks struct {
	// ToolIdentity takes the tool identity of a root runtime's profile without
	// user: (ok false: the tools keep the caller's identity).
	ToolIdentity func(prof *policy.Profile) (uid, gid uint32, release func(), ok bool, err error)
	// UsesTmpDir reports whether the profile uses the private ${TMPDIR}.
	UsesTmpDir func(p *policy.Policy, prof *policy.Profile) bool
	// UnixSocketGap is the unix-socket gap of uid-0 tools ("" when none).
	UnixSocketGap func(prof *policy.Profile, abi int) string
}

// Request is one launch of `agentexec run`.
type Request struct {
	Policy *policy.Policy
	Tool   string
	Args   []string
	// Dir is the working directory ("": the workspace).
	Dir string
	// Timeout lowers the tool's wall-clock limit (0: the tool's own).
	Timeout time.Duration
	// Stdin, Stdout and Stderr are the supervisor's; nil means os.Stdin, os.Stdout,
	// os.Stderr. A terminal, and stdout/stderr when the tool has an output cap, is
	// passed through a pipe as the Runtime path does (a tool never sees the
	// caller's terminal, and the cap holds); anything else is inherited.
	Stdin, Stdout, Stderr *os.File
	// Grace is how long a SIGTERM'd tool gets before its cgroup is killed (0: 1s,
	// as a Runtime's default).
	Grace time.Duration
	// WithoutCgroups runs the tool without a cgroup of its own even where one could
	// be made, as agentexec.WithoutCgroups (best effort: the limits are listed as
	// unenforced; the tree is found through the supervisor as a subreaper).
	WithoutCgroups bool
	Hooks          Hooks
}

// Launch is a request the fast path can run, with what it decided.
type Launch struct {
	req     Request
	abi     int
	tool    *policy.Tool
	prof    *policy.Profile
	adm     *policy.Admission
	plan    *spawner.LandlockPlan
	cg      *cgroup.Info // nil: no cgroup (tree.go)
	timeout time.Duration
}

// Prepare decides whether the fast path can run req with every protection the
// Runtime path would give it, for the tool's own profile only (nothing of the other
// profiles is looked at, probed or prepared). An error matching ErrFallback names
// what the fast path leaves to the Runtime path; Prepare changes nothing on the host.
func Prepare(req Request) (*Launch, error) {
	if req.Policy == nil {
		return nil, errors.New("oneshot: no policy")
	}
	if req.Hooks.ToolIdentity == nil || req.Hooks.UsesTmpDir == nil || req.Hooks.UnixSocketGap == nil {
		return nil, errors.New("oneshot: Request.Hooks incomplete")
	}
	if !sys.ForkExecSupported {
		return nil, fallbackf("this architecture has no vfork launch path")
	}
	abi, err := spawner.LandlockABI()
	if err != nil || abi < policy.LandlockABIScope {
		// Without signal scoping the tool could signal the supervisor's threads; a
		// spawner protects its launcher threads by id instead.
		return nil, fallbackf("Landlock ABI %d (the fast path needs signal scoping, ABI %d)", abi, policy.LandlockABIScope)
	}
	l := &Launch{req: req, abi: abi}
	if err := l.admit(req.Policy); err != nil {
		return nil, err
	}
	if err := l.checkProfile(); err != nil {
		return nil, err
	}
	return l, nil
}

// admit asks the policy p (req.Policy, or its copy with the private ${TMPDIR})
// for the launch and fits the profile's Landlock rules to the kernel.
func (l *Launch) admit(p *policy.Policy) error {
	req := l.req
	a, refused := p.Admit(policy.LaunchRequest{Tool: req.Tool, Args: req.Args, Dir: req.Dir})
	if refused != nil {
		return fallbackf("refused (the Runtime path words it): %v", refused)
	}
	t := a.Tool
	if t.Path == "" {
		return fallbackf("%s: executable not resolved (the Runtime path words it)", t.Name)
	}
	l.adm, l.tool, l.prof, l.timeout = a, t, t.Profile, t.Timeout
	if req.Timeout > 0 && (l.timeout == 0 || req.Timeout < l.timeout) {
		l.timeout = req.Timeout
	}
	plan, err := spawner.PlanLandlock(l.prof, l.abi)
	if err != nil {
		return fallbackf("%v (the Runtime path words it)", err)
	}
	if !plan.Enabled || len(plan.Unenforced) > 0 || len(plan.Degraded) > 0 {
		return fallbackf("profile %s: Landlock gaps on this host", l.prof.Name)
	}
	l.plan = plan
	return nil
}

// checkProfile lists what of the profile the fast path does not do itself.
func (l *Launch) checkProfile() error {
	p, prof, t := l.req.Policy, l.prof, l.tool
	switch {
	case t.Egress != nil || prof.Network.Egress:
		return fallbackf("profile %s: egress proxy (network.allow/ssh)", prof.Name)
	case p.KernelDenials != "" && p.KernelDenials != policy.KernelDenialsOff:
		return fallbackf("kernel_denials: %s", p.KernelDenials)
	case prof.Network.Isolated != "":
		return fallbackf("profile %s: network isolated", prof.Name)
	case prof.User != nil && !prof.User.Own && os.Geteuid() != 0:
		return fallbackf("profile %s: user: %d needs root", prof.Name, prof.User.UID)
	}
	if gap := l.req.Hooks.UnixSocketGap(prof, l.abi); gap != "" {
		return fallbackf("profile %s: %s", prof.Name, gap)
	}
	return l.checkCgroup()
}

// checkCgroup decides where the tool's tree lives: a cgroup of its own, when this
// process may create one with cgroup.kill (the tree is killed through it); else,
// under cgroup: best_effort, no cgroup at all, as a Runtime without cgroups (the
// profile's limits are listed as unenforced and the supervisor finds the tree as a
// child subreaper, tree.go). Which limits a cgroup enforces is known once its
// parent exists (session.cgroup).
func (l *Launch) checkCgroup() error {
	info, err := cgroup.Discover()
	usable, why := err == nil && info.CanCreate && info.HasKill, ""
	switch {
	case l.req.WithoutCgroups:
		usable, why = false, "WithoutCgroups"
	case err != nil:
		why = err.Error()
	case !info.CanCreate:
		why = fmt.Sprintf("cannot create under %s: %s", info.Dir, info.Reason)
	case !info.HasKill:
		// A Runtime kills such groups by freezing them; the fast path leaves them
		// to it.
		return fallbackf("cgroup: no cgroup.kill")
	}
	if usable {
		l.cg = info
		return nil
	}
	if l.prof.Enforcement.Cgroup == policy.Require {
		return fallbackf("cgroup: require: %s", why)
	}
	if _, err := os.Stat(childrenPath()); err != nil {
		return fallbackf("no cgroup (%s) and no children list to find the tool's tree: %v", why, err)
	}
	return nil
}
