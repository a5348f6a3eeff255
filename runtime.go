package agentexec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentexec/agentexec/internal/cgroup"
	"github.com/agentexec/agentexec/internal/contain"
	"github.com/agentexec/agentexec/internal/spawner"
	"github.com/agentexec/agentexec/internal/templates"
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
}

// initialPoolGroups is how many cgroups a profile's pool creates at start (at most
// the profile's concurrency); the pool grows on demand up to four per launch slot.
const initialPoolGroups = 4

// maxGroupsPerSlot bounds a pool: groups per launch the profile lets be in flight
// (groups still being emptied or replaced count too).
const maxGroupsPerSlot = 4

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

	mu     sync.Mutex
	closed bool
	live   map[*Process]struct{}
	wg     sync.WaitGroup

	stats struct {
		launches, failures, hits, created, recreated, denied atomic.Uint64
		inflight                                             atomic.Int64
	}
}

type profileRT struct {
	p *policy.Profile
	// kernel marks the tools whose spawner made a kernel template.
	kernel  map[string]bool
	spawner *spawner.Spawner
	pool    *cgroup.Pool
	// pools holds the pools of requests with lower limits (Request.Limits).
	poolsMu    sync.Mutex
	pools      map[policy.Limits]*cgroup.Pool
	sem        chan struct{}
	unenforced []string
	layers     []string
	// sentinels are paths in protected repository metadata that must not come into
	// existence (protect.go); each launch's end removes any that did.
	sentinels []string
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
	useKernel, err := templates.UseKernel(string(p.KernelTemplates), host.KernelTemplates)
	if err != nil {
		return nil, fmt.Errorf("agentexec: %w", err)
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

func cgLimits(l policy.Limits) cgroup.Limits { return cgroup.Limits(l) }

func (rt *Runtime) startProfile(prof *policy.Profile) (*profileRT, error) {
	slots := max(prof.Concurrency, 1)
	prt := &profileRT{p: prof, sem: make(chan struct{}, slots)}
	plan, err := spawner.PlanLandlock(prof, rt.host.LandlockABI)
	if err != nil {
		return nil, err
	}
	prt.unenforced = append(prt.unenforced, plan.Unenforced...)
	for _, u := range plan.Unenforced {
		rt.opts.logger.Warn("not enforced on this host", "profile", prof.Name, "rule", u)
	}
	lim := cgLimits(prof.Limits)
	switch {
	case rt.cg != nil:
		if un := rt.cg.Unenforced(lim); len(un) > 0 {
			if prof.Enforcement.Cgroup == policy.Require {
				return nil, fmt.Errorf("profile %s: cgroup: require: %w", prof.Name, rt.cg.Require(lim))
			}
			for _, u := range un {
				prt.unenforced = append(prt.unenforced, "cgroup: "+u)
				rt.opts.logger.Warn("limit not enforced on this host", "profile", prof.Name, "limit", u)
			}
		}
		pool, err := rt.cg.NewPool(prof.Name, lim, min(initialPoolGroups, slots), slots*maxGroupsPerSlot)
		if err != nil {
			return nil, fmt.Errorf("profile %s: cgroup pool: %w", prof.Name, err)
		}
		prt.pool = pool
		prt.pools = map[policy.Limits]*cgroup.Pool{prof.Limits: pool}
		prt.layers = append(prt.layers, "cgroup")
	default:
		for _, c := range lim.Controllers() {
			prt.unenforced = append(prt.unenforced, "cgroup: "+c)
		}
	}
	var tools []spawner.ToolSpec
	for _, name := range prof.Tools {
		t, _ := rt.pol.Tool(name)
		if t == nil || t.Path == "" {
			continue
		}
		tools = append(tools, spawner.ToolSpec{Name: t.Name, Path: t.Path, Hot: t.Hot,
			Lookup: rt.opts.noTemplates, Exec: t.Exec, SearchPath: rt.pol.Path})
	}
	netns := false
	if prof.Network.Isolated != "" {
		if ok, why := contain.NetNSAvailable(); ok {
			netns = true
			prt.layers = append(prt.layers, "netns")
		} else if prof.Network.Isolated == policy.Require {
			return nil, fmt.Errorf("profile %s: network isolated: require: %s: %w", prof.Name, why, ErrNotSupported)
		} else {
			prt.unenforced = append(prt.unenforced, "netns: "+why)
		}
	}
	containment := spawner.ContainmentFor(prof)
	if gap := unixSocketGap(prof, rt.host.LandlockABI); gap != "" {
		if prof.Enforcement.Landlock == policy.Require {
			return nil, fmt.Errorf("profile %s: landlock: require: %s: %w", prof.Name, gap, ErrNotSupported)
		}
		prt.unenforced = append(prt.unenforced, gap)
		rt.opts.logger.Warn("not enforced on this host", "profile", prof.Name, "rule", gap)
	}
	kernelTemplates := rt.kernelTemplatesSetting()
	var view *spawner.ToolView
	if needsToolIdentity(prof) && !rt.opts.noLaunchIsolation {
		containment.ToolCred = rt.toolID.cred()
		view = spawner.PlanToolView(prof.FS.Read, prof.FS.Write, prof.FS.Exec, rt.toolID.uid, rt.toolID.gid)
		// A kernel template's child keeps the credentials of the thread that made
		// the template, and the RFC's spawn has no action to change them: with a
		// tool identity, this profile launches through the userspace path.
		if kernelTemplates == string(policy.KernelTemplatesRequire) {
			return nil, fmt.Errorf("profile %s: kernel_templates: require: tools run as uid %d (the runtime is root and the profile sets no user:) and spawn_template cannot switch a child's identity; set user: root for this profile or kernel_templates: auto: %w",
				prof.Name, rt.toolID.uid, ErrNotSupported)
		}
		kernelTemplates = string(policy.KernelTemplatesOff)
	}
	launchers := launcherThreads(prof.Concurrency, runtime.NumCPU())
	if rt.opts.noLaunchIsolation {
		launchers = 1
	}
	sp, err := spawner.StartSpawner(spawner.SpawnerConfig{
		Binary:          rt.opts.binary,
		Profile:         prof.Name,
		Tools:           tools,
		Landlock:        plan,
		Containment:     containment,
		NetNS:           netns,
		View:            view,
		Mounts:          rt.protection(prt),
		KernelTemplates: kernelTemplates,
		KTCreate:        rt.host.KernelTemplates.Numbers.Create,
		KTSpawn:         rt.host.KernelTemplates.Numbers.Spawn,
		Launchers:       launchers,
		NoLaunchLayer:   rt.opts.noLaunchIsolation,
		Stderr:          rt.opts.spawnerErr,
	})
	if err != nil {
		return nil, err
	}
	prt.spawner = sp
	r := sp.Ready()
	prt.layers = append(prt.layers, r.Layers...)
	for _, d := range r.Degraded {
		// Less than the policy grants, never more: reported like a limit the host
		// cannot enforce, so that a tool's EACCES there has an explanation.
		prt.unenforced = append(prt.unenforced, d)
		rt.opts.logger.Warn("not as the policy asks on this host", "profile", prof.Name, "what", d)
	}
	prt.kernel = map[string]bool{}
	for _, ts := range r.Templates {
		if ts.Backend == templates.BackendKernel {
			prt.kernel[ts.Name] = true
		}
	}
	sort.Strings(prt.layers)
	for _, s := range r.Skipped {
		rt.opts.logger.Warn("policy path absent on this host; no rule added", "profile", prof.Name, "path", s)
	}
	return prt, nil
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
		go p.Wait()
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
	if rt.tmpDir != "" {
		errs = append(errs, removeTmpDir(rt.tmpDir))
	}
	// Only now, with every tool dead, may another runtime take the tool identity.
	rt.toolID.release()
	return errors.Join(errs...)
}

// Stats are counters over the runtime's life.
type Stats struct {
	Launches, Failures, Denied           uint64
	InFlight                             int64
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
	}
	return s
}

// check applies the policy to a request and returns the tool, its profile, the
// working directory and the environment, or a DeniedError.
func (rt *Runtime) check(req *Request) (*policy.Tool, *profileRT, string, []string, error) {
	t, ok := rt.pol.Tool(req.Tool)
	if !ok {
		return nil, nil, "", nil, &DeniedError{Rule: "tools", Op: "launch", Object: fmt.Sprintf("%q", req.Tool), Reason: "no such tool in the policy"}
	}
	if d := t.Args.Check(req.Args); d != nil {
		obj := fmt.Sprintf("%q", strings.Join(d.Args, " "))
		reason := "no allow pattern matches"
		if d.Index >= 0 {
			reason = fmt.Sprintf("matches %q at argument %d", d.Pattern, d.Index+1)
		}
		return nil, nil, "", nil, &DeniedError{Rule: d.Rule, Op: "argv", Object: obj, Reason: reason}
	}
	prt := rt.profiles[t.Profile]
	dir := req.Dir
	if dir == "" {
		dir = rt.pol.Workspace
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(rt.pol.Workspace, dir)
	}
	dir = filepath.Clean(dir)
	if !insideAny(dir, t.Profile.FS.Read, t.Profile.FS.Write, t.Profile.FS.Exec) {
		return nil, nil, "", nil, &DeniedError{Rule: "tools." + t.Name + ".filesystem", Op: "dir", Object: dir, Reason: "outside every read, write and exec root"}
	}
	if req.StdinFile != "" && !filepath.IsAbs(req.StdinFile) {
		req.StdinFile = filepath.Join(dir, req.StdinFile)
	}
	env := make([]string, 0, len(req.Env)+len(t.Env.Set))
	keys := make([]string, 0, len(req.Env))
	for k := range req.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !t.Env.Allowed(k) {
			return nil, nil, "", nil, &DeniedError{Rule: "tools." + t.Name + ".env.allow", Op: "env", Object: k, Reason: "variable not on the allow-list"}
		}
		if slices.ContainsFunc(t.Env.Set, func(v policy.EnvVar) bool { return v.Name == k }) {
			continue // fixed values win
		}
		env = append(env, k+"="+req.Env[k])
	}
	for _, v := range t.Env.Set {
		env = append(env, v.Name+"="+v.Value)
	}
	// The policy allows the request; the host may still lack the tool.
	if t.Path == "" {
		reason := "executable not found on this host"
		if t.ResolveError != nil {
			reason = t.ResolveError.Error()
		}
		return nil, nil, "", nil, &LaunchError{Tool: t.Name, Op: "resolve", Err: errors.New(reason)}
	}
	return t, prt, dir, env, nil
}

func insideAny(p string, lists ...[]string) bool {
	for _, l := range lists {
		if slices.ContainsFunc(l, func(root string) bool { return policy.Beneath(p, root) }) {
			return true
		}
	}
	return false
}

// maxRequestPools bounds the distinct Request.Limits pools of a profile.
const maxRequestPools = 16

// poolFor returns the pool for a launch's limits: the profile's, or one with the
// request's lower limits (created on first use), and what the launch will list as
// unenforced: the profile's gaps plus any limit the request asks for that this host
// cannot enforce. It returns a *DeniedError when the request asks for more than the
// profile allows, and an error wrapping ErrNotSupported when the profile says
// `cgroup: require` and the host cannot enforce a limit the request asks for.
func (rt *Runtime) poolFor(t *policy.Tool, prt *profileRT, req *policy.Limits) (*cgroup.Pool, []string, error) {
	if req == nil {
		return prt.pool, prt.unenforced, nil
	}
	lim, err := requestLimits(t, prt, req)
	if err != nil {
		return nil, nil, err
	}
	unenforced, err := rt.requestUnenforced(t, prt, req)
	if err != nil || prt.pool == nil {
		return prt.pool, unenforced, err
	}
	pool, err := rt.requestPool(t, prt, lim)
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

// requestLimits merges the request's limits into the profile's; a request may only
// lower them (*DeniedError otherwise).
func requestLimits(t *policy.Tool, prt *profileRT, req *policy.Limits) (policy.Limits, error) {
	lim := prt.p.Limits
	for _, l := range []struct {
		name           string
		asked, allowed float64
		set            func()
	}{
		{"memory", float64(req.Memory), float64(lim.Memory), func() { lim.Memory = req.Memory }},
		{"pids", float64(req.Pids), float64(lim.Pids), func() { lim.Pids = req.Pids }},
		{"cpu", req.CPU, lim.CPU, func() { lim.CPU = req.CPU }},
	} {
		if l.asked <= 0 {
			continue
		}
		if l.allowed > 0 && l.asked > l.allowed {
			return lim, &DeniedError{Rule: "tools." + t.Name + ".limits." + l.name, Op: "limits", Object: fmt.Sprintf("%s %g", l.name, l.asked),
				Reason: fmt.Sprintf("above the policy's %g", l.allowed)}
		}
		l.set()
	}
	return lim, nil
}

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
	p, err := rt.cg.NewPool(fmt.Sprintf("%s-l%d", prt.p.Name, len(prt.pools)), cgLimits(lim), 1, cap(prt.sem)*maxGroupsPerSlot)
	if err != nil {
		return nil, &LaunchError{Tool: t.Name, Op: "cgroup", Err: err}
	}
	prt.pools[lim] = p
	return p, nil
}

// kernelTemplatesSetting is what spawners are told: "off" when New decided against
// kernel templates (the host probe found no spawn_template syscalls, or the policy
// says off), so that no spawner repeats the /proc/kallsyms scan; else the policy's
// setting.
func (rt *Runtime) kernelTemplatesSetting() string {
	if !rt.kernelTemplates {
		return string(policy.KernelTemplatesOff)
	}
	return string(rt.pol.KernelTemplates)
}

// launcherThreads is how many threads a profile's spawner forks from: one per CPU
// (at least two, at most eight), never more than the launches the profile lets be in
// flight. A fork blocks its thread until the child has exec'd (CLONE_VFORK), so with
// one thread the launches of a profile could not overlap their clone and execve.
func launcherThreads(concurrency, cpus int) int {
	return min(max(concurrency, 1), min(max(cpus, 2), 8))
}
