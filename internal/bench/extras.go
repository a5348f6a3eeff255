package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/internal/serveclient"
	"github.com/agentexec/agentexec/policy"
)

// Sizes of the extra measurements.
const (
	startupRuns = 5
	serveCalls  = 200
)

// measureExtras measures start-up, idle memory and serve overhead.
func measureExtras(ctx context.Context, cfg Config, ws string, bs []backend, rep *Report) {
	measureStartup(ctx, cfg, ws, rep)
	var lib *agentexec.Runtime
	for _, b := range bs {
		if rb, ok := b.(*rtBackend); ok && rb.kind == KindUserspace {
			lib = rb.rt
		}
	}
	if cfg.Binary == "" {
		rep.Serve.Reason = "no agentexec binary to run `serve` (library use)"
		return
	}
	if err := measureServe(ctx, cfg, ws, lib, rep); err != nil {
		rep.Serve = ServeReport{Reason: err.Error()}
		rep.Notes = append(rep.Notes, "serve: not measured: "+err.Error())
	}
}

// startupPolicy is the generated policy with StartupTools, all hot, kernel
// templates auto (kernel templates where this host has them, userspace ones
// otherwise).
func startupPolicy(ws string, inflight int) (*policy.Policy, error) {
	return loadPolicy("", ws, inflight, policy.KernelTemplatesAuto)
}

// measureStartup times New for the 20-hot-tool policy, and, when serve cannot be
// measured, the spawners' idle memory.
func measureStartup(ctx context.Context, cfg Config, ws string, rep *Report) {
	s := &rep.Startup
	var opts []agentexec.Option
	if cfg.Binary != "" {
		opts = append(opts, agentexec.WithSpawnerBinary(cfg.Binary))
	}
	var times []time.Duration
	for i := range startupRuns {
		p, err := startupPolicy(ws, cfg.Inflight)
		if err != nil {
			rep.Notes = append(rep.Notes, "start-up: policy: "+err.Error())
			return
		}
		s.HotTools = 0
		for _, t := range p.Tools {
			if t.Hot && t.Path != "" {
				s.HotTools++
			}
		}
		before := childPids(os.Getpid())
		t0 := time.Now()
		rt, err := agentexec.New(ctx, p, opts...)
		d := time.Since(t0)
		if err != nil {
			rep.Notes = append(rep.Notes, "start-up: New: "+err.Error())
			return
		}
		times = append(times, d)
		if i == 0 && cfg.Binary == "" {
			s.MemorySource = "spawners of an in-process runtime"
			s.MemoryNote = "the main process is this benchmark; its RSS is not the runtime's"
			for _, pid := range childPids(os.Getpid()) {
				if !slices.Contains(before, pid) {
					s.Spawners++
					s.SpawnersRSSKiB += treeRSS(pid)
				}
			}
		}
		if err := rt.Close(); err != nil {
			rep.Notes = append(rep.Notes, "start-up: Close: "+err.Error())
		}
	}
	sum := Summarize(times)
	s.Runs, s.MedianMS, s.MaxMS = sum.N, sum.MedianUS/1e3, float64(times[len(times)-1].Microseconds())/1e3
}

// measureServe starts `agentexec serve` with the 20-hot-tool policy (or the
// user's), measures its start-up to the first pong and its idle memory, then runs
// `true` alternately through serve (one request at a time over the pipe pair) and
// through the in-process library runtime.
func measureServe(ctx context.Context, cfg Config, ws string, lib *agentexec.Runtime, rep *Report) error {
	if lib == nil {
		return errors.New("no library runtime to compare with")
	}
	pfile := cfg.PolicyFile
	if pfile == "" {
		f, err := os.CreateTemp("", "agentexec-bench-policy-*.yaml")
		if err != nil {
			return err
		}
		defer os.Remove(f.Name())
		if _, err := f.WriteString(PolicyYAML(StartupTools, cfg.Inflight, "auto")); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		pfile = f.Name()
	}
	t0 := time.Now()
	c, err := serveclient.Start(ctx, cfg.Binary, []string{"serve", "--policy", pfile, "--workspace", ws, "--log-level", "error"}, "", nil)
	if err != nil {
		return err
	}
	defer func() { _ = c.Close() }()
	if err := c.Ping("p0", 0); err != nil { // bounded by ctx, as the rest
		return err
	}
	s := &rep.Startup
	s.ServeReadyMS = float64(time.Since(t0).Microseconds()) / 1e3
	// Idle memory: the serve process and its spawners, after a moment of quiet.
	time.Sleep(200 * time.Millisecond)
	s.MemorySource = "idle `agentexec serve`, 20-tool policy"
	if cfg.PolicyFile != "" {
		s.MemorySource = "idle `agentexec serve`, " + cfg.PolicyFile
	}
	s.MemoryNote = ""
	s.MainRSSKiB = rssKiB(c.Pid())
	s.Spawners, s.SpawnersRSSKiB = 0, 0
	for _, pid := range childPids(c.Pid()) {
		s.Spawners++
		s.SpawnersRSSKiB += treeRSS(pid)
	}
	s.DistinctKiB = 0
	if kib, ok := distinctResidentKiB(treePids(c.Pid())); ok {
		s.DistinctKiB = kib
	}

	const call = "true"
	req := agentexec.Request{Tool: call, Dir: ws}
	var libT, srvT []time.Duration
	for i := range serveCalls + 10 {
		t1 := time.Now()
		r, err := lib.Run(ctx, req)
		dl := time.Since(t1)
		if err != nil || r.ExitCode != 0 {
			return fmt.Errorf("library Run %s: exit %d: %w", call, r.ExitCode, err)
		}
		id := "r" + strconv.Itoa(i)
		line := fmt.Sprintf(`{"id":%q,"tool":%q,"cwd":%q}`, id, call, ws)
		t2 := time.Now()
		sr, err := c.RoundTrip(line, id)
		ds := time.Since(t2)
		if err != nil {
			return err
		}
		if sr.Status != agentexec.StatusOK || sr.ExitCode == nil || *sr.ExitCode != 0 {
			return fmt.Errorf("serve %s: status %s: %s", call, sr.Status, sr.Error)
		}
		if i >= 10 { // the first ten warm both paths
			libT, srvT = append(libT, dl), append(srvT, ds)
		}
	}
	ls, ss := Summarize(libT), Summarize(srvT)
	rep.Serve = ServeReport{Measured: true, Call: call, N: ls.N, LibraryUS: ls.MedianUS, ServeUS: ss.MedianUS,
		OverheadUS: ss.MedianUS - ls.MedianUS, LibraryP99US: ls.P99US, ServeP99US: ss.P99US}
	return nil
}

// childPids lists the children of every thread of pid.
func childPids(pid int) []int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var out []int
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, s := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(s); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// treeRSS sums VmRSS of pid and its descendants (treePids, mem.go).
func treeRSS(pid int) int64 {
	var n int64
	for _, p := range treePids(pid) {
		n += rssKiB(p)
	}
	return n
}

// rssKiB reads VmRSS from /proc/PID/status (0 when unreadable).
func rssKiB(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

// judge compares the figures with the targets.
func judge(rep *Report) {
	var ua, ox, fe *OverallReport
	for i := range rep.Overall {
		switch rep.Overall[i].Backend {
		case KindUserspace:
			ua = &rep.Overall[i]
		case KindOSExec:
			ox = &rep.Overall[i]
		case rep.Baseline:
			fe = &rep.Overall[i]
		}
	}
	met := func(b bool) *bool { return &b }
	if ua != nil {
		rep.Targets = append(rep.Targets, Target{Name: "sandboxed launch vs " + rep.Baseline + " (geomean of medians)", Want: "<= 1.03x",
			Measured: fmt.Sprintf("%.3fx", ua.GeoMeanMedianRatio), Met: met(ua.GeoMeanMedianRatio <= 1.03)})
		if ox != nil {
			rep.Targets = append(rep.Targets, Target{Name: "sandboxed launch vs os/exec (geomean of medians)", Want: "<= os/exec",
				Measured: fmt.Sprintf("%.3fx vs %.3fx", ua.GeoMeanMedianRatio, ox.GeoMeanMedianRatio), Met: met(ua.GeoMeanMedianRatio <= ox.GeoMeanMedianRatio)})
		}
		note := ""
		if fe != nil {
			note = fmt.Sprintf("%s reaches %.2fx", rep.Baseline, fe.Speedup)
		}
		rep.Targets = append(rep.Targets, Target{Name: fmt.Sprintf("throughput, %d in flight vs one at a time", rep.Config.Inflight), Want: ">= 1.8x",
			Measured: fmt.Sprintf("%.2fx", ua.Speedup), Met: met(ua.Speedup >= 1.8), Note: note})
	}
	if rep.Serve.Measured {
		rep.Targets = append(rep.Targets, Target{Name: "serve overhead per request over library Run", Want: "<= 50 µs",
			Measured: fmt.Sprintf("%.0f µs", rep.Serve.OverheadUS), Met: met(rep.Serve.OverheadUS <= 50)})
	} else {
		rep.Targets = append(rep.Targets, Target{Name: "serve overhead per request over library Run", Want: "<= 50 µs",
			Measured: "-", Note: rep.Serve.Reason})
	}
	s := rep.Startup
	if s.Runs > 0 && s.FirstNewMS > 0 {
		rep.Targets = append(rep.Targets, Target{Name: fmt.Sprintf("start-up, %d hot tools (first New of a process)", s.HotTools), Want: "< 30 ms",
			Measured: fmt.Sprintf("%.1f ms", s.FirstNewMS), Met: met(s.FirstNewMS < 30),
			Note: fmt.Sprintf("later New in the same process: median %.1f ms", s.MedianMS)})
	} else if s.Runs > 0 {
		rep.Targets = append(rep.Targets, Target{Name: fmt.Sprintf("start-up, %d hot tools (New, host probe cached)", s.HotTools), Want: "< 30 ms",
			Measured: fmt.Sprintf("%.1f ms", s.MedianMS), Met: met(s.MedianMS < 30), Note: "the first New of a process also pays the host probe"})
	}
	total := float64(s.MainRSSKiB+s.SpawnersRSSKiB) * 1024 / 1e6
	if s.MemorySource == "" {
		return
	}
	if strings.HasPrefix(s.MemorySource, "idle `agentexec serve`") {
		// The distinct pages the tree holds where they can be counted (root); else
		// the sum of VmRSS, which counts the binary's shared pages once per process.
		if s.DistinctKiB > 0 {
			distinct := float64(s.DistinctKiB) * 1024 / 1e6
			rep.Targets = append(rep.Targets, Target{Name: "idle serve resident memory (main + spawners, distinct pages)", Want: "< 30 MB",
				Measured: fmt.Sprintf("%.1f MB", distinct), Met: met(distinct < 30),
				Note: fmt.Sprintf("VmRSS summed over the processes, shared pages counted in each: %.1f MB", total)})
			return
		}
		rep.Targets = append(rep.Targets, Target{Name: "idle serve resident memory (main + spawners, VmRSS summed)", Want: "< 30 MB",
			Measured: fmt.Sprintf("%.1f MB", total), Met: met(total < 30),
			Note: "distinct pages not countable here (pagemap frame numbers need CAP_SYS_ADMIN)"})
	} else {
		rep.Targets = append(rep.Targets, Target{Name: "idle serve resident memory (main + spawners)", Want: "< 30 MB",
			Measured: fmt.Sprintf("spawners only %.1f MB", total), Note: s.MemoryNote})
	}
}
