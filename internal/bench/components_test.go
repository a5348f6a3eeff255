package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/internal/serve"
	"github.com/agentexec/agentexec/internal/spawner"
	"github.com/agentexec/agentexec/internal/testutil"
	"github.com/agentexec/agentexec/policy"
)

// Component benchmarks of the launch path. Template revalidation and the cgroup pool
// have theirs in internal/templates (BenchmarkRevalidate) and internal/cgroup
// (BenchmarkPoolGetRelease); the whole launch against os/exec is BenchmarkLaunch in
// the root package. docs/performance.md collects the figures.

// benchPolicy parses the generated bench policy for a small workspace.
func benchPolicy(tb testing.TB, tools ...string) (*policy.Policy, string) {
	tb.Helper()
	ws := tb.TempDir()
	if err := os.WriteFile(filepath.Join(ws, "f.py"), []byte("def f():\n    return 1\n"), 0o644); err != nil {
		tb.Fatal(err)
	}
	if len(tools) == 0 {
		tools = StartupTools
	}
	p, err := policy.Parse("bench.yaml", []byte(PolicyYAML(tools, 4, "off")), policy.Options{Workspace: ws, Home: "/root", CPUs: 2})
	if err != nil {
		tb.Fatal(err)
	}
	if err := policy.Resolve(p); err != nil {
		tb.Fatal(err)
	}
	return p, ws
}

// fsFileOnly are the rights Landlock accepts on a non-directory.
const fsFileOnly = ll.AccessFSExecute | ll.AccessFSWriteFile | ll.AccessFSReadFile | ll.AccessFSTruncate

// buildRuleset does what a spawner does before landlock_restrict_self: create the
// ruleset and add one path-beneath rule per existing root. It returns the rules added.
func buildRuleset(plan *spawner.LandlockPlan) (int, error) {
	fd, err := ll.LandlockCreateRuleset(&ll.RulesetAttr{HandledAccessFS: plan.HandledFS, HandledAccessNet: plan.HandledNet, Scoped: plan.Scoped}, 0)
	if err != nil {
		return 0, fmt.Errorf("landlock_create_ruleset: %w", err)
	}
	defer unix.Close(fd)
	n := 0
	for _, r := range plan.Rules {
		for _, p := range r.Paths {
			pfd, err := unix.Open(p, unix.O_PATH|unix.O_CLOEXEC, 0)
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			if err != nil {
				return n, fmt.Errorf("open %s: %w", p, err)
			}
			access := r.Access
			var st unix.Stat_t
			if err := unix.Fstat(pfd, &st); err == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
				access &= fsFileOnly
			}
			err = ll.LandlockAddPathBeneathRule(fd, &ll.PathBeneathAttr{AllowedAccess: access, ParentFd: pfd}, 0)
			unix.Close(pfd)
			if err != nil {
				return n, fmt.Errorf("landlock_add_rule %s: %w", p, err)
			}
			n++
		}
	}
	return n, nil
}

// BenchmarkLandlockRulesetBuild measures building a profile's Landlock ruleset the
// way a spawner does at start, without restricting: PlanLandlock (pure) plus
// landlock_create_ruleset and one landlock_add_rule per root (open O_PATH, fstat).
// It runs once per profile at start, never per launch.
func BenchmarkLandlockRulesetBuild(b *testing.B) {
	abi, err := testutil.LandlockABI()
	if err != nil || abi < 1 {
		b.Skipf("requires Landlock: ABI %d: %v", abi, err)
	}
	p, _ := benchPolicy(b)
	prof := p.Profiles[0]
	var rules int
	b.ReportAllocs()
	for b.Loop() {
		plan, err := spawner.PlanLandlock(prof, abi)
		if err != nil {
			b.Fatal(err)
		}
		if rules, err = buildRuleset(plan); err != nil {
			b.Fatal(err)
		}
	}
	// rules: path-beneath rules added per build (one per existing root).
	b.ReportMetric(float64(rules), "rules")
}

// BenchmarkPlanLandlock is the pure part of the ruleset build.
func BenchmarkPlanLandlock(b *testing.B) {
	p, _ := benchPolicy(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := spawner.PlanLandlock(p.Profiles[0], 7); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSpawnerRoundTrip launches a tool through a spawner process and waits for
// its exit report: SOCK_SEQPACKET request with 2 fds by SCM_RIGHTS, clone3 + exec in
// the spawner, pid and pidfd back, reap, status reply; no cgroup, output to
// /dev/null. Variants take the spawner's layers off one by one, and forkexec is the
// same launch made directly by this process:
//
//   - spawner: Landlock + seccomp + no capabilities (what the runtime uses)
//   - spawner-landlock: Landlock only
//   - spawner-seccomp: seccomp and capability dropping only
//   - spawner-bare: no restriction: the round trip alone
//   - forkexec: syscall.ForkExec + wait4 in this process
//
// Tools: true (launch cost), python3 -c pass (~1,000 syscalls, hundreds of opens)
// and rg over the generated 2,000-file workspace (thousands of opens) when present.
func BenchmarkSpawnerRoundTrip(b *testing.B) {
	testutil.RequireRoot(b)
	abi, err := testutil.LandlockABI()
	if err != nil || abi < 6 {
		b.Skipf("requires Landlock ABI >= 6: have %d: %v", abi, err)
	}
	ws := filepath.Join(b.TempDir(), "ws")
	if _, err := GenerateWorkspace(ws); err != nil {
		b.Fatal(err)
	}
	p, err := policy.Parse("bench.yaml", []byte(PolicyYAML([]string{"true", "python3", "rg"}, 4, "off")), policy.Options{Workspace: ws, Home: "/root", CPUs: 2})
	if err != nil {
		b.Fatal(err)
	}
	if err := policy.Resolve(p); err != nil {
		b.Fatal(err)
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer devnull.Close()
	prof := p.Profiles[0]
	plan, err := spawner.PlanLandlock(prof, abi)
	if err != nil {
		b.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	full := spawner.ContainmentFor(prof)
	variants := []struct {
		name    string
		plan    *spawner.LandlockPlan
		contain spawner.Containment
	}{
		{"spawner", plan, full},
		{"spawner-landlock", plan, spawner.Containment{}},
		{"spawner-seccomp", nil, full},
		{"spawner-bare", nil, spawner.Containment{}},
	}
	var tools []spawner.ToolSpec
	for _, t := range p.Tools {
		if t.Path != "" {
			tools = append(tools, spawner.ToolSpec{Name: t.Name, Path: t.Path, Hot: true})
		}
	}
	calls := map[string][]string{"true": {"true"}, "python3": {"python3", "-c", "pass"}, "rg": {"rg", "-n", "TODO", "."}}
	fd := int(devnull.Fd())
	for _, tool := range tools {
		argv := calls[tool.Name]
		for _, v := range variants {
			b.Run(tool.Name+"/"+v.name, func(b *testing.B) {
				sp, err := spawner.StartSpawner(spawner.SpawnerConfig{Binary: exe, Profile: prof.Name, Tools: tools,
					Landlock: v.plan, Containment: v.contain, Stderr: os.Stderr})
				if err != nil {
					b.Fatal(err)
				}
				defer sp.Close()
				spec := &spawner.LaunchSpec{Tool: tool.Name, Argv: argv, Env: []string{"PATH=/usr/bin:/bin"}, Dir: ws, Stdin: -1, Stdout: fd, Stderr: fd, CgroupFD: -1}
				b.ReportAllocs()
				for b.Loop() {
					ch, err := sp.Launch(spec)
					if err != nil {
						b.Fatal(err)
					}
					ex, err := ch.Wait()
					ch.Release()
					if err != nil || !ex.Status.Exited() || ex.Status.ExitStatus() != 0 {
						b.Fatalf("%s: %v %v", tool.Name, ex.Status, err)
					}
				}
			})
		}
		b.Run(tool.Name+"/forkexec", func(b *testing.B) {
			attr := &syscall.ProcAttr{Dir: ws, Env: []string{"PATH=/usr/bin:/bin"}, Files: []uintptr{uintptr(fd), uintptr(fd), uintptr(fd)}}
			b.ReportAllocs()
			for b.Loop() {
				pid, err := syscall.ForkExec(tool.Path, argv, attr)
				if err != nil {
					b.Fatal(err)
				}
				var st syscall.WaitStatus
				if _, err := syscall.Wait4(pid, &st, 0, nil); err != nil || st.ExitStatus() != 0 {
					b.Fatalf("wait4: %v %v", st, err)
				}
			}
		})
	}
}

// BenchmarkServeDecodeToSpawn drives serve.Serve in this process over pipes, one
// request at a time ({"id":…,"tool":"true"} in, the result line out: decode,
// policy check, launch, encode), alternating with a library Run of the same call.
// Metrics: lib_us and serve_us, medians per call, and overhead_us, their
// difference: what the JSON-lines layer adds, without the cost of a second process.
func BenchmarkServeDecodeToSpawn(b *testing.B) {
	testutil.RequireRoot(b)
	testutil.RequireLandlockABI(b, 6)
	p, ws := benchPolicy(b, "true")
	rt, err := agentexec.New(context.Background(), p)
	if err != nil {
		b.Fatal(err)
	}
	defer rt.Close()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- serve.Serve(context.Background(), rt, inR, outW, serve.Config{}); outW.Close() }()
	out := bufio.NewReader(outR)
	req := agentexec.Request{Tool: "true", Dir: ws}
	var lib, srv []time.Duration
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		t0 := time.Now()
		if r, err := rt.Run(context.Background(), req); err != nil || r.ExitCode != 0 {
			b.Fatalf("Run: %v %+v", err, r)
		}
		t1 := time.Now()
		fmt.Fprintf(inW, `{"id":"r%d","tool":"true","cwd":%q}`+"\n", i, ws)
		line, err := out.ReadBytes('\n')
		if err != nil {
			b.Fatal(err)
		}
		srv = append(srv, time.Since(t1))
		lib = append(lib, t1.Sub(t0))
		var res agentexec.ResultJSON
		if err := json.Unmarshal(line, &res); err != nil || res.Status != agentexec.StatusOK || res.ID != fmt.Sprintf("r%d", i) {
			b.Fatalf("result %s: %v", line, err)
		}
		i++
	}
	inW.Close()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	ls, ss := Summarize(lib), Summarize(srv)
	// lib_us, serve_us: median µs per call (medians: single slow iterations on a
	// shared machine would swamp a mean); overhead_us: serve_us - lib_us.
	b.ReportMetric(ls.MedianUS, "lib_us")
	b.ReportMetric(ss.MedianUS, "serve_us")
	b.ReportMetric(ss.MedianUS-ls.MedianUS, "overhead_us")
}
