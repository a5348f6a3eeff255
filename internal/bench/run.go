package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/policy"
)

// Defaults of Config.
const (
	DefaultCalls    = 100
	DefaultInflight = 16
	warmupRounds    = 2
)

// Config is what `agentexec bench` was asked to do.
type Config struct {
	// PolicyFile is a policy to bench ("" = the generated bench policy). Mix calls
	// whose tool it lacks, or that it refuses, are skipped with a note.
	PolicyFile string
	// Calls is the number of calls per mix entry per backend (default DefaultCalls).
	Calls int
	// Inflight is the number of calls in flight in the throughput phase (default
	// DefaultInflight).
	Inflight int
	// Workspace is where to generate (and keep) the workspace; "" = a temporary
	// directory removed at the end. An existing workspace from an earlier run (it
	// holds the marker file) is reused.
	Workspace string
	// Binary is the agentexec binary for the serve and idle-memory measurements
	// ("" = not measured). It is also the spawner binary when set; otherwise the
	// current executable serves (it must call agentexec.ServeSpawner).
	Binary string
	// Only restricts the mix to these call names (nil = all).
	Only []string
	// SkipExtras skips the serve, start-up and memory measurements.
	SkipExtras bool
	// Breakdown adds a diagnostic backend: userspace templates without per-launch
	// cgroups (agentexec.WithoutCgroups), to show what cgroup placement costs.
	Breakdown bool
	// KernelDenials adds a backend: the userspace backend with kernel denials
	// collected (agentexec.WithKernelDenials), to show what collection costs
	// (docs/denials.md); it turns the host's audit on for the run if it is off.
	KernelDenials bool
	// Progress receives a progress bar (nil = none); give it only a terminal.
	Progress io.Writer
	// Command is recorded in the report.
	Command string
}

// markerFile marks a directory as a generated bench workspace.
const markerFile = ".agentexec-bench"

// Run generates the workspace, starts the backends, runs the mix interleaved, then
// the throughput phase and the extra measurements, and returns the report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	start := time.Now()
	if cfg.Calls <= 0 {
		cfg.Calls = DefaultCalls
	}
	if cfg.Inflight <= 0 {
		cfg.Inflight = DefaultInflight
	}
	for _, name := range cfg.Only {
		if !slices.ContainsFunc(Mix(), func(c Call) bool { return c.Name == name }) {
			var names []string
			for _, c := range Mix() {
				names = append(names, c.Name)
			}
			return nil, fmt.Errorf("bench: no call %q in the mix (have: %s)", name, strings.Join(names, ", "))
		}
	}
	rep := &Report{Command: cfg.Command}
	rep.Config = RunConfig{Calls: cfg.Calls, Inflight: cfg.Inflight, Policy: "generated bench policy (" + fmt.Sprint(len(StartupTools)) + " hot tools)"}
	if cfg.PolicyFile != "" {
		rep.Config.Policy = cfg.PolicyFile
	}

	scratch, err := os.MkdirTemp("", "agentexec-bench-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(scratch)
	ws, err := prepareWorkspace(cfg.Workspace, scratch)
	if err != nil {
		return nil, err
	}
	rep.Workspace = WorkspaceInfo{Dir: ws.Dir, Kept: cfg.Workspace != "", Files: ws.Files, Dirs: ws.Dirs, Git: ws.Git, Commits: ws.Commits}
	if !ws.Git {
		rep.Notes = append(rep.Notes, "git calls skipped: "+ws.GitErr)
	}

	bs, p, err := startBackends(ctx, cfg, ws.Dir, rep)
	defer func() {
		// Error paths only (the success path closes them and reports errors): the
		// error being returned says more than a failed close.
		for _, b := range bs {
			_ = b.close()
		}
	}()
	if err != nil {
		return nil, err
	}
	// After the first New: the host probe is cached by then.
	rep.Host = hostInfo()
	for _, prof := range p.Profiles {
		if prof.Concurrency < cfg.Inflight {
			rep.Notes = append(rep.Notes, fmt.Sprintf("profile %s: the policy's concurrency %d bounds the launches in flight (--inflight %d)", prof.Name, prof.Concurrency, cfg.Inflight))
		}
	}
	targets := makeTargets(p, ws, cfg.Only, rep)
	if err := validate(ctx, bs, targets, rep); err != nil {
		return nil, err
	}
	measured := make([]*target, 0, len(targets))
	for _, t := range targets {
		if t != nil {
			measured = append(measured, t)
		}
	}
	if len(measured) == 0 {
		return nil, fmt.Errorf("bench: no call of the mix can run under this policy: %s", strings.Join(rep.Notes, "; "))
	}
	block := max(2*len(measured), cfg.Inflight*2)
	rounds := max(3, cfg.Calls/10)
	rep.Config.ThroughputBlock, rep.Config.ThroughputRounds = block, rounds
	prog := newProgress(cfg.Progress, cfg.Calls*len(measured)*len(bs)+rounds*len(bs)*2*block)
	lat := latencyPhase(ctx, bs, measured, cfg.Calls, prog)
	thr := throughputPhase(ctx, bs, measured, rounds, block, cfg.Inflight, prog)
	prog.done()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	summarize(rep, bs, targets, lat, thr)
	if cfg.SkipExtras {
		rep.Serve.Reason = "skipped (SkipExtras)"
	} else {
		measureExtras(ctx, cfg, ws.Dir, bs, rep)
	}
	var errs []error
	for _, b := range bs {
		if err := b.close(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", b.name(), err))
		}
	}
	bs = nil // closed
	if err := errors.Join(errs...); err != nil {
		rep.Notes = append(rep.Notes, "closing the backends: "+err.Error())
	}
	judge(rep)
	rep.DurationS = time.Since(start).Seconds()
	return rep, nil
}

func prepareWorkspace(dir, scratch string) (*Workspace, error) {
	if dir == "" {
		dir = filepath.Join(scratch, "ws")
	}
	if _, err := os.Stat(filepath.Join(dir, markerFile)); err == nil {
		// Reuse: recount what is there.
		w := &Workspace{Dir: dir}
		if abs, err := filepath.Abs(dir); err == nil {
			w.Dir = abs
		}
		b, err := os.ReadFile(filepath.Join(dir, markerFile))
		if err != nil {
			return nil, fmt.Errorf("workspace: %w", err)
		}
		if _, err := fmt.Sscanf(string(b), "files %d dirs %d git %t commits %d", &w.Files, &w.Dirs, &w.Git, &w.Commits); err != nil {
			return nil, fmt.Errorf("workspace %s: marker %s: %w", dir, markerFile, err)
		}
		return w, nil
	}
	w, err := GenerateWorkspace(dir)
	if err != nil {
		return nil, err
	}
	// The marker goes into .git/info/exclude's reach: git ignores it via exclude.
	marker := fmt.Sprintf("files %d dirs %d git %t commits %d\n", w.Files, w.Dirs, w.Git, w.Commits)
	if err := os.WriteFile(filepath.Join(w.Dir, markerFile), []byte(marker), 0o644); err != nil {
		return nil, fmt.Errorf("workspace: %w", err)
	}
	if w.Git {
		ex := filepath.Join(w.Dir, ".git", "info", "exclude")
		if err := os.MkdirAll(filepath.Dir(ex), 0o755); err != nil {
			return nil, fmt.Errorf("workspace: %w", err)
		}
		if err := os.WriteFile(ex, []byte(markerFile+"\n"), 0o644); err != nil {
			return nil, fmt.Errorf("workspace: %w", err)
		}
	}
	return w, nil
}

func hostInfo() HostInfo {
	h := HostInfo{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), CGO: cgoEnabled}
	var u unix.Utsname
	if err := unix.Uname(&u); err == nil {
		h.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	ph := agentexec.ProbeHost(nil)
	h.LandlockABI = ph.LandlockABI
	switch {
	case ph.Cgroup == nil:
		h.Cgroup = "none (" + ph.CgroupErr + ")"
	case ph.Cgroup.CanCreate:
		h.Cgroup = "v2, pooled per-launch cgroups"
	default:
		h.Cgroup = "v2, cannot create (" + ph.Cgroup.Reason + ")"
	}
	h.KernelTemplates = ph.KernelTemplates.String()
	return h
}

// startBackends starts every backend this host has; unavailable ones are listed
// with the reason. It returns the userspace backend's policy (the one targets are
// made from).
func startBackends(ctx context.Context, cfg Config, ws string, rep *Report) ([]backend, *policy.Policy, error) {
	var bs []backend
	var opts []agentexec.Option
	if cfg.Binary != "" {
		opts = append(opts, agentexec.WithSpawnerBinary(cfg.Binary))
	}
	newRT := func(kind string, kt policy.KernelTemplates, extra ...agentexec.Option) (*agentexec.Runtime, *policy.Policy, error) {
		p, err := loadPolicy(cfg.PolicyFile, ws, cfg.Inflight, kt)
		if err != nil {
			return nil, nil, fmt.Errorf("bench: %s: policy: %w", kind, err)
		}
		rt, err := agentexec.New(ctx, p, append(slices.Clone(opts), extra...)...)
		if err != nil {
			return nil, nil, fmt.Errorf("bench: %s: %w", kind, err)
		}
		return rt, p, nil
	}
	// The first New of the process pays the one-time host probe (Landlock ABI, cgroup
	// discovery, the /proc/kallsyms scan for spawn_template): a cold start.
	t0 := time.Now()
	rt, p, err := newRT(KindUserspace, policy.KernelTemplatesOff)
	if err != nil {
		return nil, nil, err
	}
	if cfg.PolicyFile == "" {
		rep.Startup.FirstNewMS = float64(time.Since(t0).Microseconds()) / 1e3
	}
	bs = append(bs, &rtBackend{kind: KindUserspace, rt: rt})
	rep.Backends = append(rep.Backends, BackendInfo{Name: KindUserspace, Available: true,
		Description: "agentexec, userspace templates: spawner round trip, revalidated template, clone3 into a pooled cgroup + pidfd, Landlock/seccomp/no caps, pipes"})

	kinfo := BackendInfo{Name: KindKernel, Description: "agentexec, kernel spawn_template templates"}
	if probe := rt.Host().KernelTemplates; probe.Available {
		krt, _, err := newRT(KindKernel, policy.KernelTemplatesRequire)
		if err != nil {
			kinfo.Reason = err.Error()
		} else {
			kinfo.Available = true
			bs = append(bs, &rtBackend{kind: KindKernel, rt: krt})
		}
	} else {
		kinfo.Reason = probe.Reason
	}
	if !kinfo.Available {
		rep.Notes = append(rep.Notes, "kernel: not available ("+kinfo.Reason+")")
	}
	rep.Backends = append(rep.Backends, kinfo)

	ninfo := BackendInfo{Name: KindNoTemplate, Description: "agentexec without templates: PATH lookup of the bare name at every launch"}
	if nrt, _, err := newRT(KindNoTemplate, policy.KernelTemplatesOff, agentexec.WithoutTemplates()); err != nil {
		ninfo.Reason = err.Error()
	} else {
		ninfo.Available = true
		bs = append(bs, &rtBackend{kind: KindNoTemplate, rt: nrt})
	}
	if !ninfo.Available {
		rep.Notes = append(rep.Notes, "notemplate: not available ("+ninfo.Reason+")")
	}
	rep.Backends = append(rep.Backends, ninfo)

	if cfg.Breakdown {
		crt, _, err := newRT(KindNoCgroup, policy.KernelTemplatesOff, agentexec.WithoutCgroups())
		if err != nil {
			return bs, nil, err
		}
		bs = append(bs, &rtBackend{kind: KindNoCgroup, rt: crt})
		rep.Backends = append(rep.Backends, BackendInfo{Name: KindNoCgroup, Available: true,
			Description: "diagnostic: agentexec userspace templates without per-launch cgroups"})
	}

	if cfg.KernelDenials {
		drt, _, err := newRT(KindDenials, policy.KernelTemplatesOff, agentexec.WithKernelDenials())
		if err != nil {
			return bs, nil, err
		}
		info := BackendInfo{Name: KindDenials, Available: true,
			Description: "agentexec userspace templates with kernel denials collected (audit)"}
		if on, why := drt.KernelDenials(); !on {
			info.Description += "; unavailable on this host, so the same as userspace: " + why
			rep.Notes = append(rep.Notes, "denials: kernel denials unavailable: "+why)
		}
		bs = append(bs, &rtBackend{kind: KindDenials, rt: drt})
		rep.Backends = append(rep.Backends, info)
	}

	bs = append(bs, osExecBackend{})
	rep.Backends = append(rep.Backends, BackendInfo{Name: KindOSExec, Available: true,
		Description: "plain Go os/exec, resolved path, output into buffers; no sandbox"})
	base, binfo, err := newBaseline()
	if err != nil {
		return bs, nil, err
	}
	if cfg.Breakdown && base.name() != KindForkExec {
		fe, err := newForkExecBackend()
		if err != nil {
			return bs, nil, err
		}
		bs = append(bs, fe)
		rep.Backends = append(rep.Backends, forkExecInfo)
	}
	// The baseline goes last: every ratio divides by it.
	bs = append(bs, base)
	rep.Backends = append(rep.Backends, binfo)
	rep.Baseline = base.name()
	return bs, p, nil
}

// makeTargets turns the mix into targets for policy p; entries that cannot run get
// nil and a skipped row.
func makeTargets(p *policy.Policy, ws *Workspace, only []string, rep *Report) []*target {
	var out []*target
	for _, c := range Mix() {
		if len(only) > 0 && !slices.Contains(only, c.Name) {
			continue
		}
		row := ToolReport{Name: c.Name, Tool: c.Tool, Args: c.Args}
		t, ok := p.Tool(c.Tool)
		switch {
		case !ok:
			row.Skipped = "tool " + c.Tool + " not in the policy"
		case t.Path == "":
			row.Skipped = c.Tool + " not found on this host"
			if t.ResolveError != nil {
				row.Skipped = t.ResolveError.Error()
			}
		case c.NeedsGit && !ws.Git:
			row.Skipped = "no git repository: " + ws.GitErr
		}
		rep.Tools = append(rep.Tools, row)
		if row.Skipped != "" {
			rep.Notes = append(rep.Notes, c.Name+": skipped: "+row.Skipped)
			out = append(out, nil)
			continue
		}
		env := make([]string, 0, len(t.Env.Set))
		for _, v := range t.Env.Set {
			env = append(env, v.Name+"="+v.Value)
		}
		out = append(out, &target{Call: c, path: t.Path, argv: append([]string{filepath.Base(t.Exec)}, c.Args...), env: env, dir: ws.Dir})
	}
	return out
}

// validate runs every target warmupRounds times through every backend. A call the
// baseline cannot run with status 0, or that another backend runs with another
// status or fails to launch, is skipped with a note; differing output is noted.
func validate(ctx context.Context, bs []backend, targets []*target, rep *Report) error {
	base := bs[len(bs)-1]
	for i, t := range targets {
		if t == nil {
			continue
		}
		var skip string
		for range warmupRounds {
			ref, err := base.run(ctx, t)
			if err != nil {
				return fmt.Errorf("bench: %s through %s: %w", t.Name, base.name(), err)
			}
			if ref.exit != 0 {
				skip = fmt.Sprintf("%s exits %d: %s", base.name(), ref.exit, firstLine(ref.stderr))
				break
			}
			for _, b := range bs[:len(bs)-1] {
				o, err := b.run(ctx, t)
				if err != nil {
					skip = fmt.Sprintf("%s: %v", b.name(), err)
					break
				}
				if o.exit != ref.exit {
					skip = fmt.Sprintf("%s exits %d, %s %d: %s", b.name(), o.exit, base.name(), ref.exit, firstLine(o.stderr))
					break
				}
				if !sameLines(o.stdout, ref.stdout) {
					rep.Notes = appendOnce(rep.Notes, fmt.Sprintf("%s: output through %s differs from %s (%d vs %d bytes)", t.Name, b.name(), base.name(), len(o.stdout), len(ref.stdout)))
				}
				if o.backend != "" {
					info := &rep.Backends[backendIndex(rep, b.name())]
					info.Launch, info.Template, info.Containment, info.Unenforced = o.backend, o.template, o.containment, o.unenforced
				}
			}
			if skip != "" {
				break
			}
		}
		if skip != "" {
			rep.Tools[i].Skipped = skip
			rep.Notes = append(rep.Notes, t.Name+": skipped: "+skip)
			targets[i] = nil
		}
	}
	return nil
}

func backendIndex(rep *Report, name string) int {
	for i, b := range rep.Backends {
		if b.Name == name {
			return i
		}
	}
	return 0
}

func appendOnce(l []string, s string) []string {
	if slices.Contains(l, s) {
		return l
	}
	return append(l, s)
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// sameLines compares outputs as sorted line sets (rg prints in thread order).
func sameLines(a, b []byte) bool {
	la, lb := bytes.Split(a, []byte("\n")), bytes.Split(b, []byte("\n"))
	if len(la) != len(lb) {
		return false
	}
	slices.SortFunc(la, bytes.Compare)
	slices.SortFunc(lb, bytes.Compare)
	for i := range la {
		if !bytes.Equal(la[i], lb[i]) {
			return false
		}
	}
	return true
}

// latencies holds samples per backend per target.
type latencies struct {
	d        [][][]time.Duration // [backend][target]
	failures [][]int
}

// latencyPhase runs calls rounds of the mix; each call goes through every backend
// in turn before the next, and the backend order rotates per call, so drift and
// order effects (the first of a group warming a cache) fall on all alike.
func latencyPhase(ctx context.Context, bs []backend, ts []*target, calls int, prog *progress) *latencies {
	l := &latencies{d: make([][][]time.Duration, len(bs)), failures: make([][]int, len(bs))}
	for bi := range bs {
		l.d[bi] = make([][]time.Duration, len(ts))
		l.failures[bi] = make([]int, len(ts))
		for ti := range ts {
			l.d[bi][ti] = make([]time.Duration, 0, calls)
		}
	}
	k := 0
	for range calls {
		if ctx.Err() != nil {
			return l
		}
		for ti, t := range ts {
			for j := range bs {
				bi := (j + k) % len(bs)
				t0 := time.Now()
				o, err := bs[bi].run(ctx, t)
				d := time.Since(t0)
				if err != nil || o.exit != 0 {
					l.failures[bi][ti]++
				}
				l.d[bi][ti] = append(l.d[bi][ti], d)
				prog.add(1, "latency")
			}
			k++
		}
	}
	return l
}

// rates are per backend: calls and elapsed time one at a time and in parallel.
type rates struct {
	serialCalls, parallelCalls []int
	serialTime, parallelTime   []time.Duration
	failures                   []int
}

// throughputPhase runs, per round and per backend (order rotating), a block of
// calls one at a time and a block with inflight calls in flight, cycling the mix.
func throughputPhase(ctx context.Context, bs []backend, ts []*target, rounds, block, inflight int, prog *progress) *rates {
	r := &rates{serialCalls: make([]int, len(bs)), parallelCalls: make([]int, len(bs)),
		serialTime: make([]time.Duration, len(bs)), parallelTime: make([]time.Duration, len(bs)), failures: make([]int, len(bs))}
	for round := range rounds {
		if ctx.Err() != nil {
			return r
		}
		for j := range bs {
			bi := (j + round) % len(bs)
			for _, k := range []int{1, inflight} {
				d, fails := runBlock(ctx, bs[bi], ts, block, k, round, prog)
				r.failures[bi] += fails
				if k == 1 {
					r.serialCalls[bi] += block
					r.serialTime[bi] += d
				} else {
					r.parallelCalls[bi] += block
					r.parallelTime[bi] += d
				}
			}
		}
	}
	return r
}

// runBlock runs n calls of the mix (starting at offset) with k in flight and
// returns the elapsed time and the number of failed calls.
func runBlock(ctx context.Context, b backend, ts []*target, n, k, offset int, prog *progress) (time.Duration, int) {
	var next, fails atomic.Int64
	var wg sync.WaitGroup
	t0 := time.Now()
	for range k {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				o, err := b.run(ctx, ts[(i+offset)%len(ts)])
				if err != nil || o.exit != 0 {
					fails.Add(1)
				}
				prog.add(1, "throughput")
			}
		}()
	}
	wg.Wait()
	return time.Since(t0), int(fails.Load())
}

// summarize fills the per-tool and overall rows.
func summarize(rep *Report, bs []backend, targets []*target, l *latencies, r *rates) {
	base := len(bs) - 1
	mi := 0 // index among measured targets
	for i, t := range targets {
		if t == nil {
			continue
		}
		bsum := Summarize(l.d[base][mi])
		for bi, b := range bs {
			s := bsum
			if bi != base {
				s = Summarize(l.d[bi][mi])
			}
			rep.Tools[i].Results = append(rep.Tools[i].Results, ToolResult{Backend: b.name(), Summary: s,
				MedianRatio: ratio(s.MedianUS, bsum.MedianUS), P99Ratio: ratio(s.P99US, bsum.P99US), Failures: l.failures[bi][mi]})
		}
		mi++
	}
	baseSerial := float64(r.serialCalls[base]) / r.serialTime[base].Seconds()
	baseParallel := float64(r.parallelCalls[base]) / r.parallelTime[base].Seconds()
	for bi, b := range bs {
		var med, p99 []float64
		fails := r.failures[bi]
		for _, t := range rep.Tools {
			for _, res := range t.Results {
				if res.Backend == b.name() {
					med = append(med, res.MedianRatio)
					p99 = append(p99, res.P99Ratio)
					fails += res.Failures
				}
			}
		}
		serial := float64(r.serialCalls[bi]) / r.serialTime[bi].Seconds()
		parallel := float64(r.parallelCalls[bi]) / r.parallelTime[bi].Seconds()
		rep.Overall = append(rep.Overall, OverallReport{Backend: b.name(), GeoMeanMedianRatio: GeoMean(med), GeoMeanP99Ratio: GeoMean(p99),
			SerialCallsPerSec: serial, ParallelCallsPerSec: parallel, Speedup: ratio(parallel, serial),
			SerialRateRatio: ratio(serial, baseSerial), ParallelRateRatio: ratio(parallel, baseParallel), Failures: fails})
		if fails > 0 {
			rep.Notes = append(rep.Notes, fmt.Sprintf("%s: %d calls failed during measurement (exit status not 0 or launch error)", b.name(), fails))
		}
	}
}
