package agentexec

import (
	"fmt"
	"runtime"
	"sort"
	"sync"

	"github.com/agentexec/agentexec/internal/cgroup"
	"github.com/agentexec/agentexec/internal/contain"
	"github.com/agentexec/agentexec/internal/spawner"
	"github.com/agentexec/agentexec/internal/templates"
	"github.com/agentexec/agentexec/policy"
)

// profileRT is a profile's state in a runtime: its spawner process, its pools of
// cgroups, the semaphore of its concurrency, and what it reports in every Result.
type profileRT struct {
	p *policy.Profile
	// kernel marks the tools whose spawner made a kernel template.
	kernel  map[string]bool
	spawner *spawner.Spawner
	pool    *cgroup.Pool
	// pools holds the pools of requests with lower limits (Request.Limits).
	poolsMu sync.Mutex
	pools   map[policy.Limits]*cgroup.Pool
	// lanes are the profile's launch slots (its concurrency; lanes.go).
	lanes *lanes
	// unenforced lists what this host does not enforce of the profile (Result.Unenforced).
	unenforced []string
	// layers lists the containment layers in force (Result.Containment).
	layers []string
	// sentinels are paths in protected repository metadata that must not come into
	// existence (protect.go); each launch's end removes any that did.
	sentinels []string
}

// initialPoolGroups is how many cgroups a profile's pool creates at start (at most
// the profile's concurrency); the pool grows on demand up to four per launch slot.
const initialPoolGroups = 4

// maxGroupsPerSlot bounds a pool: groups per launch the profile lets be in flight
// (groups still being emptied or replaced count too).
const maxGroupsPerSlot = 4

func cgLimits(l policy.Limits) cgroup.Limits { return cgroup.Limits(l) }

// startProfile fits the profile to this host (Landlock plan, cgroup pool, network
// namespace, the unix-socket gap, the tool identity and its view) and starts its
// spawner. A `require` the host cannot meet is an error; best-effort gaps are
// logged and listed in unenforced.
func (rt *Runtime) startProfile(prof *policy.Profile) (*profileRT, error) {
	prt := &profileRT{p: prof, lanes: newLanes(prof.Concurrency)}
	plan, err := spawner.PlanLandlock(prof, rt.host.LandlockABI)
	if err != nil {
		return nil, err
	}
	for _, u := range plan.Unenforced {
		prt.gap(rt, "not enforced on this host", "rule", u)
	}
	if err := rt.egressPlan(prof, &plan.ConnectTCP); err != nil {
		return nil, err
	}
	if err := rt.profilePool(prt); err != nil {
		return nil, err
	}
	cfg := spawner.SpawnerConfig{
		Binary: rt.opts.binary, Profile: prof.Name, Tools: rt.toolSpecs(prof), Landlock: plan,
		Containment: spawner.ContainmentFor(prof), Mounts: rt.protection(prt),
		KernelTemplates: rt.kernelTemplatesSetting(),
		KTCreate:        rt.host.KernelTemplates.Numbers.Create, KTSpawn: rt.host.KernelTemplates.Numbers.Spawn,
		Launchers:     launcherThreads(prof.Concurrency, runtime.NumCPU()),
		NoLaunchLayer: rt.opts.noLaunchIsolation, Stderr: rt.opts.spawnerErr,
		KernelDenials: rt.audit != nil,
		Logger:        rt.opts.logger,
	}
	cfg.Containment.LogDenials = rt.audit != nil
	if rt.opts.noLaunchIsolation {
		cfg.Launchers = 1
	}
	if err := rt.profileNetwork(prt, &cfg); err != nil {
		return nil, err
	}
	if err := rt.profileIdentity(prt, &cfg); err != nil {
		return nil, err
	}
	if err := rt.toolAccounts(prt, &cfg); err != nil {
		return nil, err
	}
	sp, err := spawner.StartSpawner(cfg)
	if err != nil {
		return nil, err
	}
	prt.spawner = sp
	prt.readSpawnerReport(rt, sp.Ready())
	return prt, nil
}

// gap records something the host does not enforce of the profile, and logs it.
func (prt *profileRT) gap(rt *Runtime, msg, key, what string) {
	prt.unenforced = append(prt.unenforced, what)
	rt.opts.logger.Warn(msg, "profile", prt.p.Name, key, what)
}

// profilePool makes the profile's pool of cgroups, or lists its limits as
// unenforced when the runtime has no cgroups (cgroup: require was checked by New).
func (rt *Runtime) profilePool(prt *profileRT) error {
	prof := prt.p
	lim := cgLimits(prof.Limits)
	if rt.cg == nil {
		for _, c := range lim.Controllers() {
			prt.unenforced = append(prt.unenforced, "cgroup: "+c)
		}
		return nil
	}
	if un := rt.cg.Unenforced(lim); len(un) > 0 {
		if prof.Enforcement.Cgroup == policy.Require {
			return fmt.Errorf("profile %s: cgroup: require: %w", prof.Name, rt.cg.Require(lim))
		}
		for _, u := range un {
			prt.gap(rt, "limit not enforced on this host", "limit", "cgroup: "+u)
		}
	}
	slots := prt.lanes.cap
	pool, err := rt.cg.NewPool(prof.Name, lim, min(initialPoolGroups, slots), slots*maxGroupsPerSlot)
	if err != nil {
		return fmt.Errorf("profile %s: cgroup pool: %w", prof.Name, err)
	}
	prt.pool = pool
	prt.pools = map[policy.Limits]*cgroup.Pool{prof.Limits: pool}
	prt.layers = append(prt.layers, "cgroup")
	return nil
}

// toolSpecs lists the profile's tools that resolved on this host, for its spawner.
func (rt *Runtime) toolSpecs(prof *policy.Profile) []spawner.ToolSpec {
	var tools []spawner.ToolSpec
	for _, name := range prof.Tools {
		t, _ := rt.pol.Tool(name)
		if t == nil || t.Path == "" {
			continue
		}
		tools = append(tools, spawner.ToolSpec{Name: t.Name, Path: t.Path, Hot: t.Hot,
			Lookup: rt.opts.noTemplates, Exec: t.Exec, SearchPath: rt.pol.Path})
	}
	return tools
}

// profileNetwork decides the profile's empty network namespace (for a profile with
// egress, one with the proxy's listener inside: egress_netns.go) and checks that
// the host can refuse root-owned unix sockets where the policy asks (tooluser.go).
func (rt *Runtime) profileNetwork(prt *profileRT, cfg *spawner.SpawnerConfig) error {
	prof := prt.p
	// The egress namespace, when the profile gets it, is its empty namespace.
	if !rt.egressNetNS(prt, cfg) && prof.Network.Isolated != "" {
		if ok, why := contain.NetNSAvailable(); ok {
			cfg.NetNS = true
			prt.layers = append(prt.layers, "netns")
		} else if prof.Network.Isolated == policy.Require {
			return fmt.Errorf("profile %s: network isolated: require: %s: %w", prof.Name, why, ErrNotSupported)
		} else {
			prt.unenforced = append(prt.unenforced, "netns: "+why)
		}
	}
	if gap := unixSocketGap(prof, rt.host.LandlockABI); gap != "" {
		if prof.Enforcement.Landlock == policy.Require {
			return fmt.Errorf("profile %s: landlock: require: %s: %w", prof.Name, gap, ErrNotSupported)
		}
		prt.gap(rt, "not enforced on this host", "rule", gap)
	}
	return nil
}

// profileIdentity gives a root runtime's profile without `user:` the tool identity
// and its view of the filesystem (tooluser.go); such a profile launches through
// the userspace path.
func (rt *Runtime) profileIdentity(prt *profileRT, cfg *spawner.SpawnerConfig) error {
	prof := prt.p
	if !needsToolIdentity(prof) || rt.opts.noLaunchIsolation {
		return nil
	}
	cfg.Containment.ToolCred = rt.toolID.cred()
	cfg.View = spawner.PlanToolView(prof.FS.Read, prof.FS.Write, prof.FS.Exec, rt.toolID.uid, rt.toolID.gid)
	// A kernel template's child keeps the credentials of the thread that made the
	// template, and the RFC's spawn has no action to change them.
	if cfg.KernelTemplates == string(policy.KernelTemplatesRequire) {
		return fmt.Errorf("profile %s: kernel_templates: require: tools run as uid %d (the runtime is root and the profile sets no user:) and spawn_template cannot switch a child's identity; set user: root for this profile or kernel_templates: auto: %w",
			prof.Name, rt.toolID.uid, ErrNotSupported)
	}
	cfg.KernelTemplates = string(policy.KernelTemplatesOff)
	return nil
}

// readSpawnerReport takes in what the spawner reported after restricting itself:
// its layers, what it set up with less access than planned, its kernel templates,
// and the policy paths absent on this host.
func (prt *profileRT) readSpawnerReport(rt *Runtime, r spawner.Ready) {
	prt.layers = append(prt.layers, r.Layers...)
	for _, d := range r.Degraded {
		// Less than the policy grants, never more: reported like a limit the host
		// cannot enforce, so that a tool's EACCES there has an explanation.
		prt.gap(rt, "not as the policy asks on this host", "what", d)
	}
	prt.kernel = map[string]bool{}
	for _, ts := range r.Templates {
		if ts.Backend == templates.BackendKernel {
			prt.kernel[ts.Name] = true
		}
	}
	sort.Strings(prt.layers)
	for _, s := range r.Skipped {
		rt.opts.logger.Warn("policy path absent on this host; no rule added", "profile", prt.p.Name, "path", s)
	}
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
