package agentexec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentexec/agentexec/internal/audit"
	"github.com/agentexec/agentexec/internal/cgroup"
	"github.com/agentexec/agentexec/internal/egress"
	"github.com/agentexec/agentexec/internal/spawner"
	"github.com/agentexec/agentexec/internal/tmpdir"
	"github.com/agentexec/agentexec/policy"
)

// Option configures a Runtime.
type Option func(*options)

type options struct {
	binary    string
	logger    *slog.Logger
	grace     time.Duration
	noCgroups bool
	// noLaunchIsolation turns off the per-launch Landlock layer and the tool
	// identity, with one launcher thread: only the isolation tests' controls use it
	// (export_test.go), to show the attacks they refuse succeed without them.
	noLaunchIsolation bool
	// noProtect turns off the read-only repository metadata and protect: paths, and
	// noMountNS (a reason) makes the runtime act as if it could not have a private
	// mount namespace: the protection tests' controls (export_test.go).
	noProtect   bool
	noMountNS   string
	noTemplates bool
	spawnerErr  io.Writer
	// kernelDenials: WithKernelDenials (denials.go).
	kernelDenials bool
	// egressTest replaces parts of the egress proxy's configuration (its resolver,
	// the roots it verifies intercepted servers with): tests only (export_test.go),
	// so that names like registry.test reach servers on this machine's loopback.
	egressTest func(*egress.Config)
	// noToolAccounts leaves the tool identity without an account name in its
	// tools' view: the control of the accounts test (export_test.go).
	noToolAccounts bool
	// noAgentPeerCheck serves a launch's ssh-agent socket to any process that
	// reaches it: the control of the agent peer test (export_test.go).
	noAgentPeerCheck bool
}

// WithSpawnerBinary runs spawners from an installed agentexec binary instead of the
// current executable (which must then call ServeSpawner first thing in main).
func WithSpawnerBinary(path string) Option { return func(o *options) { o.binary = path } }

// WithLogger receives start-up warnings (unenforced limits, skipped paths).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithKillGrace sets how long a timed-out or canceled launch gets between SIGTERM
// and the kill of its whole tree (default 1s).
func WithKillGrace(d time.Duration) Option { return func(o *options) { o.grace = d } }

// WithoutCgroups launches without per-launch cgroups (limits then unenforced; for
// benchmarks and hosts where the policy allows it).
func WithoutCgroups() Option { return func(o *options) { o.noCgroups = true } }

// WithoutTemplates launches without templates: each launch looks the tool's
// executable up through the policy's path, as a shell would (a benchmark baseline).
func WithoutTemplates() Option { return func(o *options) { o.noTemplates = true } }

// WithSpawnerStderr sends the spawners' own diagnostics to w (default: os.Stderr).
func WithSpawnerStderr(w io.Writer) Option { return func(o *options) { o.spawnerErr = w } }

// Runtime launches a policy's tools. It is safe for concurrent use.
type Runtime struct {
	pol      *policy.Policy
	opts     options
	host     *Host
	cg       *cgroup.Manager
	profiles map[*policy.Profile]*profileRT
	order    []*profileRT
	// kernelTemplates: New decided to use spawn_template templates (templates.UseKernel).
	kernelTemplates bool
	// toolID is the unprivileged identity tools run as when the runtime is root and
	// their profile names no user (tooluser.go); nil otherwise.
	toolID *toolIdentity
	// tmpDir is the runtime's private ${TMPDIR} (tmpdir.go), removed at Close; ""
	// when the policy has none or does not use it.
	tmpDir string
	// accounts are the copies of /etc/passwd and /etc/group that name the tool
	// identity in its tools' view (toolaccounts.go), in accountsDir, removed at Close.
	accountsOnce sync.Once
	accounts     []spawner.MountOp
	accountsErr  error
	accountsDir  string
	// egressDir holds the egress proxy's CA bundle when the policy has secrets
	// (egress_secrets.go), removed at Close.
	egressDir string
	// audit collects the kernel's denials (denials.go); nil when off or
	// unavailable, and denialsOff then says why.
	audit      *audit.Collector
	denialsOff string
	// egress is the egress proxy (egress.go), nil when no tool has network.allow.
	egress    *egress.Proxy
	launchSeq atomic.Uint64

	mu     sync.Mutex
	closed bool
	live   map[*Process]struct{}
	wg     sync.WaitGroup

	stats struct {
		launches, failures, hits, created, recreated, denied atomic.Uint64
		inflight                                             atomic.Int64
	}
}

// New validates the host against the policy, starts one spawner process per profile
// (each restricts itself before it launches anything) and prepares templates for hot
// tools. A feature the policy requires and the host lacks is an error; with
// best_effort it is logged and reported in every Result's Unenforced.
//
// When the policy's ${TMPDIR} is private (policy.Options.TmpDir was empty) and used,
// New makes the runtime's own temporary directory, mode 0700 and owned by the
// identity the tools run as, and enforces the policy with it in place of
// policy.TmpDirPlaceholder (Policy returns that copy; p is not changed). Close
// removes it.
//
// Called in a process that was started as a spawner but did not call ServeSpawner,
// New prints why and exits with status 2 (see ServeSpawner).
func New(ctx context.Context, p *policy.Policy, opts ...Option) (*Runtime, error) {
	exitIfUnservedSpawner() // first: a spawner's main must not go on (spawner.go)
	o := options{grace: time.Second, spawnerErr: os.Stderr}
	for _, f := range opts {
		f(&o)
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	if o.binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("agentexec: find own executable for spawners: %w", err)
		}
		o.binary = exe
	}
	host := ProbeHost(p)
	rt := &Runtime{pol: p, opts: o, host: host, profiles: map[*policy.Profile]*profileRT{}, live: map[*Process]struct{}{}}
	ok := false
	defer func() {
		if !ok {
			rt.Close()
		}
	}()
	// auto: not where placing each child in its cgroup is slow (kernelplace.go).
	useKernel, note, err := kernelBackend(p.KernelTemplates, host.KernelTemplates)
	if err != nil {
		return nil, fmt.Errorf("agentexec: %w", err)
	}
	if note != "" && !useKernel {
		o.logger.Info(note)
	}
	rt.kernelTemplates = useKernel
	for _, prof := range p.Profiles {
		if needsToolIdentity(prof) && !o.noLaunchIsolation {
			if rt.toolID, err = acquireToolIdentity(); err != nil {
				return nil, fmt.Errorf("agentexec: %w", err)
			}
			break
		}
	}
	// After the tool identity, which the directory is given to. From here on rt.pol
	// is the policy with the runtime's own ${TMPDIR} (a copy; p is not changed).
	if err := rt.setupTmpDir(); err != nil {
		return nil, err
	}
	if err := rt.setupCgroups(); err != nil {
		return nil, err
	}
	if err := rt.setupDenials(); err != nil {
		return nil, err
	}
	if err := rt.setupEgress(); err != nil {
		return nil, err
	}
	for _, prof := range rt.pol.Profiles {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		prt, err := rt.startProfile(prof)
		if err != nil {
			return nil, err
		}
		rt.profiles[prof] = prt
		rt.order = append(rt.order, prt)
	}
	ok = true
	return rt, nil
}

func (rt *Runtime) setupCgroups() error {
	if rt.opts.noCgroups {
		return nil
	}
	// The first profile that says `cgroup: require`, if any: it makes missing cgroups
	// an error.
	var strict *policy.Profile
	needCgroup := false
	for _, prof := range rt.pol.Profiles {
		if strict == nil && prof.Enforcement.Cgroup == policy.Require {
			strict = prof
		}
		needCgroup = needCgroup || prof.Limits != (policy.Limits{})
	}
	info := rt.host.Cgroup
	if info == nil || !info.CanCreate {
		reason := "no cgroup v2 hierarchy"
		if info != nil {
			reason = info.Reason
		}
		if strict != nil {
			if info != nil && info.Mode != cgroup.ModeNone {
				// The hierarchy is there; this process may not create in it.
				return fmt.Errorf("profile %s: cgroup: require: %w creating cgroups under %s: %s (run as root, or in a delegated subtree: systemd-run --user --scope -p Delegate=yes)",
					strict.Name, fs.ErrPermission, info.Dir, reason)
			}
			return fmt.Errorf("profile %s: cgroup: require: cannot create cgroups: %s: %w", strict.Name, reason, ErrNotSupported)
		}
		if needCgroup {
			rt.opts.logger.Warn("cgroups unavailable; limits are not enforced", "reason", reason)
		}
		return nil
	}
	m, err := cgroup.NewManager(info, cgroup.Options{})
	if err != nil {
		if strict != nil {
			return fmt.Errorf("profile %s: cgroup: %w", strict.Name, err)
		}
		rt.opts.logger.Warn("cgroups unavailable; limits are not enforced", "err", err)
		return nil
	}
	rt.cg = m
	return nil
}

// Policy returns the policy the runtime enforces: the one given to New, or its copy
// with the runtime's private ${TMPDIR} (Policy.TmpDir).
func (rt *Runtime) Policy() *policy.Policy { return rt.pol }

// Host returns what the runtime found on this host at start.
func (rt *Runtime) Host() *Host { return rt.host }

// Close kills every launch still running, ends the spawners and removes the
// runtime's cgroups and its private ${TMPDIR}.
func (rt *Runtime) Close() error {
	rt.mu.Lock()
	if rt.closed {
		rt.mu.Unlock()
		return nil
	}
	rt.closed = true
	live := make([]*Process, 0, len(rt.live))
	for p := range rt.live {
		live = append(live, p)
	}
	rt.mu.Unlock()
	for _, p := range live {
		p.Kill()
		// A streaming caller may never read or Wait: stop feeding its readers and
		// collect the launch here, so that Close cannot hang on it.
		if p.outR != nil {
			p.outR.Close()
			p.errR.Close()
		}
		go func() { _, _ = p.Wait() }()
	}
	rt.wg.Wait()
	var errs []error
	for _, prt := range rt.order {
		if prt.spawner != nil {
			errs = append(errs, prt.spawner.Close())
		}
	}
	if rt.cg != nil {
		errs = append(errs, rt.cg.Close())
	}
	if rt.egress != nil {
		errs = append(errs, rt.egress.Close())
	}
	if rt.egressDir != "" {
		errs = append(errs, os.RemoveAll(rt.egressDir))
	}
	errs = append(errs, rt.closeDenials())
	if rt.tmpDir != "" {
		errs = append(errs, tmpdir.Remove(rt.tmpDir))
	}
	if rt.accountsDir != "" {
		errs = append(errs, os.RemoveAll(rt.accountsDir))
	}
	// Only now, with every tool dead, may another runtime take the tool identity.
	rt.toolID.release()
	return errors.Join(errs...)
}

// Stats are counters over the runtime's life.
type Stats struct {
	Launches, Failures, Denied uint64
	InFlight                   int64
	// Queued counts requests waiting for a slot of their profile (its
	// concurrency); they are not in InFlight.
	Queued int64
	// EgressAllowed and EgressDenied count the egress proxy's connections.
	EgressAllowed, EgressDenied          uint64
	TemplateHits, TemplatesCreated       uint64
	TemplateRecreations, SpawnerRestarts uint64
}

// Stats returns the runtime's counters.
func (rt *Runtime) Stats() Stats {
	s := Stats{
		Launches: rt.stats.launches.Load(), Failures: rt.stats.failures.Load(), Denied: rt.stats.denied.Load(),
		InFlight:     rt.stats.inflight.Load(),
		TemplateHits: rt.stats.hits.Load(), TemplatesCreated: rt.stats.created.Load(), TemplateRecreations: rt.stats.recreated.Load(),
	}
	for _, prt := range rt.order {
		s.SpawnerRestarts += uint64(prt.spawner.Restarts())
		_, q := prt.lanes.counts()
		s.Queued += int64(q)
	}
	if rt.egress != nil {
		es := rt.egress.Stats()
		s.EgressAllowed, s.EgressDenied = uint64(es.Allowed), uint64(es.Denied)
	}
	return s
}
