package agentexec

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/landlock-lsm/go-landlock/landlock"

	"github.com/agentexec/agentexec/internal/cgroup"
	"github.com/agentexec/agentexec/internal/contain"
	"github.com/agentexec/agentexec/internal/spawner"
	"github.com/agentexec/agentexec/internal/sys"
	"github.com/agentexec/agentexec/internal/templates"
	"github.com/agentexec/agentexec/policy"
)

// Report is what `agentexec check` prints: the policy, and what this host will
// enforce of it. docs/check.md documents the JSON form.
type Report struct {
	Policy string `json:"policy"`
	// OK is true when everything the policy requires is available.
	OK bool `json:"ok"`
	// Problems are requirements the host cannot meet (each makes New fail).
	Problems []string `json:"problems"`
	// Warnings are best-effort rules this host does not enforce, and missing tools.
	Warnings        []string              `json:"warnings"`
	Landlock        LandlockReport        `json:"landlock"`
	Cgroup          CgroupReport          `json:"cgroup"`
	KernelTemplates KernelTemplatesReport `json:"kernel_templates"`
	TmpDir          TmpDirReport          `json:"tmpdir"`
	KernelDenials   KernelDenialsReport   `json:"kernel_denials"`
	Egress          EgressCheckReport     `json:"egress"`
	Profiles        []ProfileReport       `json:"profiles"`
	Tools           []ToolReport          `json:"tools"`
}

// KernelDenialsReport says whether results will carry the kernel's denials
// (docs/denials.md): the policy's setting, and whether this host can log them.
type KernelDenialsReport struct {
	Setting   string `json:"setting"`
	Available bool   `json:"available"`
	// Reason says why not, or what a runtime will do (turn the host's audit on
	// and restore it at Close).
	Reason string `json:"reason,omitempty"`
}

// EgressCheckReport lists the tools that reach the network through the egress
// proxy (network.allow or network.ssh; docs/network.md).
type EgressCheckReport struct {
	Tools []string `json:"tools"`
	// Secrets are the policy's secrets: where each value comes from (never the
	// value), where it may go, which tools get it (egress_secrets.go).
	Secrets []SecretCheck `json:"secrets,omitempty"`
}

// TmpDirReport is what the policy's ${TMPDIR} stands for.
type TmpDirReport struct {
	// Private: each runtime makes a directory of its own under Base (mode 0700,
	// owned by the tools' identity) and removes it at Close; Path is then
	// policy.TmpDirPlaceholder, which stands for it in the roots and environment
	// values below, or, in a running runtime's report, its directory.
	Private bool   `json:"private"`
	Path    string `json:"path"`
	Base    string `json:"base,omitempty"`
	// Used says whether the policy refers to ${TMPDIR} at all (a private directory
	// is made only then).
	Used bool `json:"used"`
}

// LandlockReport is the kernel's Landlock support.
type LandlockReport struct {
	ABI   int    `json:"abi"`
	Error string `json:"error,omitempty"`
}

// CgroupReport is the cgroup v2 discovery.
type CgroupReport struct {
	Mode        string   `json:"mode"`
	Mount       string   `json:"mount,omitempty"`
	Self        string   `json:"self,omitempty"`
	CanCreate   bool     `json:"can_create"`
	Reason      string   `json:"reason,omitempty"`
	Controllers []string `json:"controllers"`
	Kill        bool     `json:"cgroup_kill"`
	Error       string   `json:"error,omitempty"`
}

// KernelTemplatesReport is the spawn_template probe.
type KernelTemplatesReport struct {
	Setting   string `json:"setting"`
	Available bool   `json:"available"`
	Reason    string `json:"reason"`
	Create    int    `json:"create_syscall"`
	Spawn     int    `json:"spawn_syscall"`
	// Auto, when set, says why `kernel_templates: auto` takes the userspace
	// backend although the syscalls are available (kernelplace.go); with
	// `require` it says what the kernel backend costs on this host.
	Auto string `json:"auto,omitempty"`
}

// ProfileReport is one profile as this host will enforce it.
type ProfileReport struct {
	Name  string   `json:"name"`
	Tools []string `json:"tools"`
	// Landlock rights handled after any best-effort downgrade.
	LandlockFS     string   `json:"landlock_fs"`
	LandlockNet    string   `json:"landlock_net"`
	LandlockScoped string   `json:"landlock_scoped"`
	Read           []string `json:"read"`
	Write          []string `json:"write"`
	Exec           []string `json:"exec"`
	ConnectTCP     []uint16 `json:"connect_tcp"`
	BindTCP        []uint16 `json:"bind_tcp"`
	// Limits requested, and those the host cannot enforce.
	Memory      int64    `json:"memory_bytes,omitempty"`
	Pids        int64    `json:"pids,omitempty"`
	CPU         float64  `json:"cpu_cores,omitempty"`
	Unenforced  []string `json:"unenforced"`
	Degraded    []string `json:"degraded,omitempty"`
	Concurrency int      `json:"concurrency"`
	Landlock    string   `json:"landlock_enforcement"`
	CgroupMode  string   `json:"cgroup_enforcement"`
	// Seccomp lists the profile's filter rules; NetNS says whether `network:
	// isolated` can be had here ("" when the policy does not ask for it).
	Seccomp []string `json:"seccomp"`
	NetNS   string   `json:"netns,omitempty"`
	// Egress says how the tools of a profile with network.allow or network.ssh
	// are kept to the egress proxy here and what else they reach (absent for
	// other profiles; egress_netns.go, docs/network.md "The network namespace").
	Egress *ProfileEgressReport `json:"egress,omitempty"`
	// Protect is what the profile's tools cannot write beneath their write roots:
	// the git metadata of the repositories found there and the protect: paths
	// (docs/security.md, "Repository metadata"). Absent when the profile has neither
	// write roots nor protect: paths.
	Protect *ProtectReport `json:"protect,omitempty"`
	// Isolation is who the tools run as and how launches in flight are kept apart
	// (docs/security.md, "Launches in flight" and "Tool identity").
	Isolation IsolationReport `json:"isolation"`
}

// IsolationReport is a profile's per-launch isolation and tool identity.
type IsolationReport struct {
	// User says whom the tools run as: "tool identity" (a root runtime's own
	// unprivileged uid, taken at start from ToolIDBase…+ToolIDCount), "runtime"
	// (the runtime's own uid; with `user: root` under a root runtime that is uid 0)
	// or "uid N" (user: {uid: N, …}).
	User string `json:"user"`
	// PerLaunch: every launch is in a Landlock domain of its own ("enforced"),
	// only for ptrace and /proc ("partial", before ABI 6: signals between launches
	// stay possible) or not at all ("none"); PerLaunchReason says why not.
	PerLaunch       string `json:"per_launch"`
	PerLaunchReason string `json:"per_launch_reason,omitempty"`
	// View lists what spawners mount so that the tool identity can use roots it
	// does not own or cannot reach (shims over unsearchable directories, idmapped
	// roots), as planned now.
	View []string `json:"view,omitempty"`
	// KernelTemplates says how kernel-template launches are kept apart, when the
	// host has spawn_template.
	KernelTemplates string `json:"kernel_templates,omitempty"`
}

// ProtectReport is a profile's protection of repository metadata and protect: paths.
type ProtectReport struct {
	// Enforced: spawners get a private mount namespace here (Reason: the probe's
	// answer, or why not). When false, every path below stays writable.
	Enforced bool   `json:"enforced"`
	Reason   string `json:"reason"`
	// Repositories are the .git paths found in the write roots.
	Repositories []string `json:"repositories"`
	// ReadOnly are kept read-only; Pinned directories cannot be renamed or removed.
	ReadOnly []string `json:"read_only"`
	Pinned   []string `json:"pinned"`
	// Missing are paths that would be protected but are absent or symbolic links.
	Missing []string `json:"missing"`
	// Incomplete says what the scan of the write roots left out.
	Incomplete []string `json:"incomplete"`
}

// ToolReport is one tool's executable on this host.
type ToolReport struct {
	Name     string `json:"name"`
	Exec     string `json:"exec"`
	Path     string `json:"path,omitempty"`
	Profile  string `json:"profile"`
	Hot      bool   `json:"hot"`
	Required bool   `json:"required"`
	Found    bool   `json:"found"`
	Error    string `json:"error,omitempty"`
	// Kind is "elf" or "script".
	Kind string `json:"kind,omitempty"`
	// Backend is the template backend this tool will use: "kernel" or "userspace".
	Backend  string        `json:"backend,omitempty"`
	Identity *IdentityJSON `json:"identity,omitempty"`
}

// IdentityJSON is a binary's identity key.
type IdentityJSON struct {
	Dev   uint64 `json:"dev"`
	Ino   uint64 `json:"ino"`
	Size  int64  `json:"size"`
	Mode  string `json:"mode"`
	UID   uint32 `json:"uid"`
	GID   uint32 `json:"gid"`
	Mtime string `json:"mtime"`
	Ctime string `json:"ctime"`
}

// Check validates a resolved policy against this host without starting anything.
func Check(p *policy.Policy) *Report {
	return CheckHost(p, ProbeHost(p))
}

// CheckHost is Check with the host already probed.
func CheckHost(p *policy.Policy, h *Host) *Report {
	r := &Report{Policy: p.Source, Problems: []string{}, Warnings: []string{}}
	r.Landlock = LandlockReport{ABI: h.LandlockABI, Error: h.LandlockErr}
	r.Cgroup = CgroupReport{Mode: string(cgroup.ModeNone), Error: h.CgroupErr, Controllers: []string{}}
	if c := h.Cgroup; c != nil {
		r.Cgroup = CgroupReport{Mode: string(c.Mode), Mount: c.Mount, Self: c.Self, CanCreate: c.CanCreate,
			Reason: c.Reason, Controllers: append([]string{}, c.Controllers...), Kill: c.HasKill}
	}
	kt := h.KernelTemplates
	r.KernelTemplates = KernelTemplatesReport{Setting: string(p.KernelTemplates), Available: kt.Available, Reason: kt.Reason,
		Create: kt.Numbers.Create, Spawn: kt.Numbers.Spawn}
	kernelOK, note, _ := kernelBackend(p.KernelTemplates, kt) // require without it: the problem below
	r.KernelTemplates.Auto = note
	if p.KernelTemplates == policy.KernelTemplatesRequire && !kt.Available {
		r.Problems = append(r.Problems, "kernel_templates: require: spawn_template is not available: "+kt.Reason)
	}
	r.TmpDir = tmpDirReport(p)
	for _, prof := range p.Profiles {
		pr := ProfileReport{Name: prof.Name, Tools: prof.Tools, Read: nz(prof.FS.Read), Write: nz(prof.FS.Write), Exec: nz(prof.FS.Exec),
			ConnectTCP: nz(prof.Network.ConnectTCP), BindTCP: nz(prof.Network.BindTCP),
			Memory: prof.Limits.Memory, Pids: prof.Limits.Pids, CPU: prof.Limits.CPU, Unenforced: []string{},
			Concurrency: prof.Concurrency, Landlock: string(prof.Enforcement.Landlock), CgroupMode: string(prof.Enforcement.Cgroup)}
		plan, err := spawner.PlanLandlock(prof, h.LandlockABI)
		if err != nil {
			r.Problems = append(r.Problems, err.Error())
			// Show what best effort would give, for the reader.
			bp := *prof
			bp.Enforcement.Landlock = policy.BestEffort
			plan, _ = spawner.PlanLandlock(&bp, h.LandlockABI)
		}
		if plan != nil {
			pr.LandlockFS = landlock.AccessFSSet(plan.HandledFS).String()
			pr.LandlockNet = landlock.AccessNetSet(plan.HandledNet).String()
			pr.LandlockScoped = landlock.ScopedSet(plan.Scoped).String()
			pr.Unenforced = append(pr.Unenforced, plan.Unenforced...)
			pr.Degraded = plan.Degraded
		}
		c := spawner.ContainmentFor(prof)
		if f, err := contain.BuildSeccomp(contain.SeccompSpec{Network: c.Network, Unix: c.Unix, SpawnerPID: 1}); err != nil {
			r.Problems = append(r.Problems, fmt.Sprintf("profile %s: seccomp: %v", prof.Name, err))
		} else {
			pr.Seccomp = f.Rules()
		}
		pr.Isolation = isolationReport(prof, h, kernelOK)
		pr.Unenforced = append(pr.Unenforced, isolationUnenforced(pr.Isolation)...)
		if gap := unixSocketGap(prof, h.LandlockABI); gap != "" {
			if prof.Enforcement.Landlock == policy.Require {
				r.Problems = append(r.Problems, fmt.Sprintf("profile %s: landlock: require: %s", prof.Name, gap))
			} else {
				pr.Unenforced = append(pr.Unenforced, gap)
			}
		}
		if prof.Network.Isolated != "" {
			ok, why := contain.NetNSAvailable()
			pr.NetNS = why
			if !ok {
				msg := fmt.Sprintf("profile %s: network isolated: %s", prof.Name, why)
				if prof.Network.Isolated == policy.Require {
					r.Problems = append(r.Problems, msg)
				} else {
					pr.Unenforced = append(pr.Unenforced, "netns: "+why)
				}
			}
		}
		if prof.Network.Egress {
			ok, why := contain.NetNSAvailable()
			mode, reach := egressConfinement(prof, ok, why)
			pr.Egress = &ProfileEgressReport{Mode: mode, Reach: reach}
		}
		if len(prof.FS.Write)+len(prof.FS.Protect) > 0 {
			prot := spawner.PlanProtection(spawner.ScanProtection(prof))
			ok, why := spawner.MountNSAvailable()
			pr.Protect = &ProtectReport{Enforced: ok, Reason: why, Repositories: nz(prot.Repos), ReadOnly: nz(prot.ReadOnly),
				Pinned: nz(prot.Pinned), Missing: nz(prot.Missing), Incomplete: nz(prot.Incomplete)}
			pr.Unenforced = append(pr.Unenforced, prot.Unenforced(ok, why)...)
			if len(prot.Missing) > 0 {
				r.Warnings = append(r.Warnings, fmt.Sprintf("profile %s: %d paths to keep read-only are absent or symbolic links, not protected (a tool can create them): %s",
					prof.Name, len(prot.Missing), strings.Join(prot.Missing, "; ")))
			}
		}
		for _, u := range cgroupUnenforced(h.Cgroup, prof.Limits) {
			pr.Unenforced = append(pr.Unenforced, "cgroup: "+u)
			if prof.Enforcement.Cgroup == policy.Require {
				r.Problems = append(r.Problems, fmt.Sprintf("profile %s: cgroup: require: limit %s cannot be enforced on this host%s", prof.Name, u, cgroupWhy(h.Cgroup)))
			}
		}
		for _, u := range pr.Unenforced {
			r.Warnings = append(r.Warnings, fmt.Sprintf("profile %s: not enforced: %s", prof.Name, u))
		}
		r.Profiles = append(r.Profiles, pr)
	}
	for _, t := range p.Tools {
		tr := ToolReport{Name: t.Name, Exec: t.Exec, Path: t.Path, Profile: t.Profile.Name, Hot: t.Hot, Required: t.Required, Found: t.Path != ""}
		if t.ResolveError != nil {
			tr.Error = t.ResolveError.Error()
		}
		if tr.Found {
			if tm, err := templates.New(t.Path); err != nil {
				tr.Error = err.Error()
			} else {
				tr.Kind = "script"
				tr.Backend = string(BackendUserspace)
				if tm.ELF {
					tr.Kind = "elf"
					// What the spawner will really use: kernel templates are made for hot
					// ELF tools only, and not for a profile whose tools run as the tool
					// identity (spawn_template cannot switch a child's credentials).
					if kernelOK && t.Hot && !needsToolIdentity(t.Profile) {
						tr.Backend = string(BackendKernel)
					}
				}
				id := tm.ID
				tr.Identity = &IdentityJSON{Dev: id.Dev, Ino: id.Ino, Size: id.Size, Mode: fmt.Sprintf("%#o", id.Mode), UID: id.UID, GID: id.GID,
					Mtime: time.Unix(0, id.Mtime).UTC().Format(time.RFC3339Nano), Ctime: time.Unix(0, id.Ctime).UTC().Format(time.RFC3339Nano)}
				tm.Close()
			}
		} else {
			msg := fmt.Sprintf("tool %s: %s not found", t.Name, t.Exec)
			if t.Required {
				r.Problems = append(r.Problems, msg+" (required: true)")
			} else {
				r.Warnings = append(r.Warnings, msg+"; requests for it will fail")
			}
		}
		r.Tools = append(r.Tools, tr)
	}
	r.checkDenialsAndEgress(p, h)
	r.OK = len(r.Problems) == 0
	return r
}

// tmpDirReport describes the policy's ${TMPDIR}.
func tmpDirReport(p *policy.Policy) TmpDirReport {
	r := TmpDirReport{Private: p.PrivateTmp, Path: p.TmpDir, Used: true}
	if p.PrivateTmp && p.TmpDir == policy.TmpDirPlaceholder {
		r.Base, r.Used = os.TempDir(), p.UsesTmpDir()
	}
	return r
}

// cgroupUnenforced lists the controllers l needs that cgroups under info cannot have
// (all of them when info is nil or this process cannot create cgroups).
func cgroupUnenforced(info *cgroup.Info, l policy.Limits) []string {
	var out []string
	for _, c := range cgLimits(l).Controllers() {
		if info == nil || !info.CanCreate || !info.Has(c) {
			out = append(out, c)
		}
	}
	return out
}

func nz[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// WriteText prints the report for people.
func (r *Report) WriteText(w io.Writer) {
	fmt.Fprintf(w, "policy %s: %s\n", r.Policy, map[bool]string{true: "OK", false: "NOT SATISFIED"}[r.OK])
	fmt.Fprintf(w, "kernel denials: %s, available %v (%s)\n", r.KernelDenials.Setting, r.KernelDenials.Available, r.KernelDenials.Reason)
	if len(r.Egress.Tools) > 0 {
		fmt.Fprintf(w, "egress proxy: for %s\n", strings.Join(r.Egress.Tools, ", "))
	}
	writeSecretChecks(w, r.Egress.Secrets) // egress_secrets.go
	if r.Landlock.ABI > 0 {
		fmt.Fprintf(w, "landlock: ABI %d\n", r.Landlock.ABI)
	} else {
		fmt.Fprintf(w, "landlock: unavailable (%s)\n", r.Landlock.Error)
	}
	c := r.Cgroup
	fmt.Fprintf(w, "cgroup: %s", c.Mode)
	if c.Mount != "" {
		fmt.Fprintf(w, " at %s, self %s, create children: %v", c.Mount, c.Self, c.CanCreate)
		if c.Reason != "" {
			fmt.Fprintf(w, " (%s)", c.Reason)
		}
		fmt.Fprintf(w, ", controllers: [%s], cgroup.kill: %v", strings.Join(c.Controllers, " "), c.Kill)
	}
	if c.Error != "" {
		fmt.Fprintf(w, " (%s)", c.Error)
	}
	fmt.Fprintln(w)
	k := r.KernelTemplates
	if k.Available {
		fmt.Fprintf(w, "spawn_template: available (syscalls %d, %d), setting %s\n", k.Create, k.Spawn, k.Setting)
		if k.Auto != "" {
			fmt.Fprintf(w, "  %s\n", k.Auto)
		}
	} else {
		fmt.Fprintf(w, "spawn_template: not available: %s (setting %s; userspace templates are used)\n", k.Reason, k.Setting)
	}
	switch td := r.TmpDir; {
	case !td.Private:
		fmt.Fprintf(w, "tmpdir: %s (shared: set by the caller, not removed)\n", td.Path)
	case td.Path != policy.TmpDirPlaceholder:
		fmt.Fprintf(w, "tmpdir: private: %s (this runtime's own, mode 0700, removed at Close)\n", td.Path)
	case td.Used:
		fmt.Fprintf(w, "tmpdir: private: each runtime makes its own under %s (mode 0700, owned by the tools' identity, removed at Close); %s below stands for it\n", td.Base, td.Path)
	default:
		fmt.Fprintf(w, "tmpdir: private, unused (the policy does not refer to ${TMPDIR})\n")
	}
	for _, p := range r.Profiles {
		fmt.Fprintf(w, "profile %s (%s): landlock %s, cgroup %s, concurrency %d\n", p.Name, strings.Join(p.Tools, ", "), p.Landlock, p.CgroupMode, p.Concurrency)
		fmt.Fprintf(w, "  landlock fs %s\n  landlock net %s, scoped %s\n", p.LandlockFS, p.LandlockNet, p.LandlockScoped)
		fmt.Fprintf(w, "  read %v\n  write %v\n  exec %v\n", p.Read, p.Write, p.Exec)
		if len(p.ConnectTCP)+len(p.BindTCP) > 0 {
			fmt.Fprintf(w, "  tcp connect %v bind %v\n", p.ConnectTCP, p.BindTCP)
		}
		fmt.Fprintf(w, "  limits: memory %d, pids %d, cpu %g\n", p.Memory, p.Pids, p.CPU)
		for _, u := range p.Unenforced {
			fmt.Fprintf(w, "  NOT ENFORCED: %s\n", u)
		}
		if p.NetNS != "" {
			fmt.Fprintf(w, "  network namespace: %s\n", p.NetNS)
		}
		if p.Egress != nil {
			fmt.Fprintf(w, "  egress proxy: %s: %s\n", p.Egress.Mode, p.Egress.Reach)
		}
		fmt.Fprintf(w, "  seccomp: %d rules (see --json)\n", len(p.Seccomp))
		if pt := p.Protect; pt != nil {
			if pt.Enforced {
				fmt.Fprintf(w, "  protect: enforced (private mount namespace), %d repositories\n", len(pt.Repositories))
			} else {
				fmt.Fprintf(w, "  protect: NOT ENFORCED: %s\n", pt.Reason)
			}
			for _, x := range pt.ReadOnly {
				fmt.Fprintf(w, "    read-only %s\n", x)
			}
			for _, x := range pt.Pinned {
				fmt.Fprintf(w, "    pinned    %s\n", x)
			}
			for _, x := range pt.Missing {
				fmt.Fprintf(w, "    not protected: %s\n", x)
			}
		}
		iso := p.Isolation
		fmt.Fprintf(w, "  tools run as: %s; per-launch isolation: %s", iso.User, iso.PerLaunch)
		if iso.PerLaunchReason != "" {
			fmt.Fprintf(w, " (%s)", iso.PerLaunchReason)
		}
		fmt.Fprintln(w)
		for _, v := range iso.View {
			fmt.Fprintf(w, "    view: %s\n", v)
		}
		if iso.KernelTemplates != "" {
			fmt.Fprintf(w, "  kernel templates: %s\n", iso.KernelTemplates)
		}
		for _, d := range p.Degraded {
			fmt.Fprintf(w, "  degraded: %s\n", d)
		}
	}
	for _, t := range r.Tools {
		if !t.Found {
			fmt.Fprintf(w, "tool %-10s %s: MISSING (required %v) %s\n", t.Name, t.Exec, t.Required, t.Error)
			continue
		}
		fmt.Fprintf(w, "tool %-10s %s %s template %s hot %v", t.Name, t.Path, t.Kind, t.Backend, t.Hot)
		if t.Identity != nil {
			fmt.Fprintf(w, " dev %d ino %d size %d", t.Identity.Dev, t.Identity.Ino, t.Identity.Size)
		}
		if t.Error != "" {
			fmt.Fprintf(w, " (%s)", t.Error)
		}
		fmt.Fprintln(w)
	}
	for _, p := range r.Problems {
		fmt.Fprintf(w, "PROBLEM: %s\n", p)
	}
	for _, p := range r.Warnings {
		fmt.Fprintf(w, "warning: %s\n", p)
	}
}

// isolationReport describes who a profile's tools run as and how its launches in
// flight are kept apart on this host, as New would set it up.
func isolationReport(prof *policy.Profile, h *Host, kernel bool) IsolationReport {
	var r IsolationReport
	toolIdentity := needsToolIdentity(prof)
	switch {
	case toolIdentity:
		r.User = fmt.Sprintf("tool identity (an unprivileged uid from %d, taken at start)", ToolIDBase)
		v := spawner.PlanToolView(prof.FS.Read, prof.FS.Write, prof.FS.Exec, ToolIDBase, ToolIDBase)
		r.View = v.Describe()
	case prof.User == nil || prof.User.Own:
		r.User = fmt.Sprintf("runtime (uid %d)", os.Geteuid())
	default:
		r.User = fmt.Sprintf("uid %d (user:)", prof.User.UID)
	}
	plan, _ := spawner.PlanLandlock(prof, h.LandlockABI)
	switch {
	case plan == nil || !plan.Enabled:
		r.PerLaunch, r.PerLaunchReason = "none", "Landlock is not enforced on this host"
	case !sys.ForkExecSupported:
		r.PerLaunch, r.PerLaunchReason = "none", "no vfork launch path on this architecture"
	case h.LandlockABI < policy.LandlockABIScope:
		r.PerLaunch, r.PerLaunchReason = "partial", fmt.Sprintf("Landlock ABI %d: ptrace and /proc access between launches refused, signals and abstract sockets not (needs ABI 6)", h.LandlockABI)
	default:
		r.PerLaunch = "enforced"
	}
	if kernel {
		if toolIdentity {
			r.KernelTemplates = "not used: tools run as the tool identity and spawn_template cannot switch a child's identity (user: root would allow them)"
		} else {
			r.KernelTemplates = "one kernel-template launch at a time per profile: their children cannot add a Landlock layer of their own, so they share one domain; launches beside them take the userspace path"
		}
	}
	return r
}

// isolationUnenforced lists the isolation gaps of r as Unenforced entries.
func isolationUnenforced(r IsolationReport) []string {
	if r.PerLaunch == "enforced" {
		return nil
	}
	return []string{"isolation: launches in flight: " + r.PerLaunch + " (" + r.PerLaunchReason + ")"}
}

// checkDenialsAndEgress reports kernel denials and the egress proxy: a `require`
// this host cannot meet is a problem. (An egress tool in an isolated namespace
// reaches the proxy through its listener there: egress_netns.go.)
func (r *Report) checkDenialsAndEgress(p *policy.Policy, h *Host) {
	setting := p.KernelDenials
	if setting == "" {
		setting = policy.KernelDenialsOff
	}
	d := KernelDenialsReport{Setting: string(setting)}
	switch {
	case setting == policy.KernelDenialsOff:
		d.Reason = "kernel_denials: off: results list the policy's and the egress proxy's refusals only"
	case h.LandlockABI < policy.LandlockABIAuditFlags:
		d.Reason = fmt.Sprintf("Landlock ABI %d logs no denials of exec'd tools (needs ABI %d)", h.LandlockABI, policy.LandlockABIAuditFlags)
	case os.Geteuid() != 0:
		d.Reason = "reading the audit stream needs root (CAP_AUDIT_READ, and CAP_AUDIT_CONTROL to turn audit on)"
	default:
		d.Available = true
		d.Reason = "a runtime turns the host's audit on if it is off (host-wide: without auditd the kernel also logs the records) and restores it at Close"
	}
	if setting == policy.KernelDenialsRequire && !d.Available {
		r.Problems = append(r.Problems, "kernel_denials: require: "+d.Reason)
	}
	r.KernelDenials = d
	r.Egress.Tools = []string{}
	for _, t := range p.Tools {
		if t.Egress == nil {
			continue
		}
		r.Egress.Tools = append(r.Egress.Tools, t.Name)
	}
	r.checkSecrets(p) // egress_secrets.go
	// network.ssh: New refuses a known_hosts file that is missing or names no key
	// for the tool's ssh hosts (egress_ssh.go); so does check.
	for _, err := range sshProblems(p) {
		r.Problems = append(r.Problems, strings.TrimPrefix(err.Error(), "agentexec: "))
	}
}

// cgroupWhy says why a limit cannot be enforced when the cause is that this
// process may not create cgroups at all (permission, not a missing feature), with
// the way to get a delegated subtree; "" otherwise.
func cgroupWhy(info *cgroup.Info) string {
	if info == nil || info.CanCreate || info.Mode == cgroup.ModeNone {
		return ""
	}
	return fmt.Sprintf(": permission denied creating cgroups under %s (%s); run as root, or in a delegated subtree: systemd-run --user --scope -p Delegate=yes agentexec …", info.Dir, info.Reason)
}
