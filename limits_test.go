package agentexec_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/internal/testutil"
	"github.com/agentexec/agentexec/policy"
)

// The limit tests need the memory, pids and cpu controllers on a cgroup v2
// hierarchy. The CI host's v2 hierarchy has none of them (hybrid layout), so they
// skip there and run in the VM tier (make vmtest), whose guests mount a pure v2
// hierarchy.

func limitsPolicy(t *testing.T, limits string) *agentexec.Runtime {
	t.Helper()
	exe, _ := os.Executable()
	// landlock: best_effort, so that the limits are proven on the VM tier's older
	// kernels too (Landlock ABI 2 on 6.1); cgroup: require, so nothing is skipped.
	p, _ := testPolicyLandlock(t, fmt.Sprintf("  hog: {exec: %q, limits: {%s}, enforcement: {landlock: best_effort, cgroup: require}}\n", exe, limits), "best_effort")
	testutil.RequireRoot(t)
	rt, err := agentexec.New(context.Background(), p, agentexec.WithKillGrace(100*time.Millisecond))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { rt.Close() })
	return rt
}

func TestMemoryLimitOOMKills(t *testing.T) {
	testutil.RequireCgroup2Controller(t, "memory")
	rt := limitsPolicy(t, "memory: 64MiB, pids: 64")
	r, err := rt.Run(context.Background(), agentexec.Request{Tool: "hog", Args: []string{"-helper", "alloc", "256"}})
	if err != nil {
		t.Fatal(err)
	}
	if !r.OOMKilled || r.Signal == 0 {
		t.Fatalf("allocating 256 MiB under memory.max=64MiB: oom_killed %v signal %v exit %d stderr %q", r.OOMKilled, r.Signal, r.ExitCode, r.Stderr)
	}
	if r.PeakMemory < 32<<20 || r.PeakMemory > 80<<20 {
		t.Errorf("peak memory %d, want between 32 MiB and ~64 MiB", r.PeakMemory)
	}
	// A launch under the limit is not killed, and its peak is its own.
	r, err = rt.Run(context.Background(), agentexec.Request{Tool: "hog", Args: []string{"-helper", "alloc", "16"}})
	if err != nil || r.ExitCode != 0 || r.OOMKilled {
		t.Fatalf("16 MiB under 64 MiB: %v exit %d oom %v", err, r.ExitCode, r.OOMKilled)
	}
	if r.PeakMemory < 16<<20 || r.PeakMemory > 60<<20 {
		t.Errorf("peak memory %d after a 16 MiB launch, want 16..60 MiB (reset between launches)", r.PeakMemory)
	}
}

func TestPidsLimitStopsForkBomb(t *testing.T) {
	testutil.RequireCgroup2Controller(t, "pids")
	rt := limitsPolicy(t, "pids: 16")
	r, err := rt.Run(context.Background(), agentexec.Request{Tool: "hog", Args: []string{"-helper", "forkbomb"}})
	if err != nil {
		t.Fatal(err)
	}
	var started, failed int
	fmt.Sscanf(strings.TrimSpace(string(r.Stdout)), "started %d failed %d", &started, &failed)
	// The Go helper's own threads count against pids.max too.
	if started == 0 || started >= 16 || failed == 0 {
		t.Fatalf("fork bomb under pids.max=16: started %d failed %d (stdout %q, stderr %q)", started, failed, r.Stdout, r.Stderr)
	}
	if r.PidsPeak > 16 {
		t.Errorf("pids peak %d above pids.max 16", r.PidsPeak)
	}
}

func TestCPULimitThrottles(t *testing.T) {
	testutil.RequireCgroup2Controller(t, "cpu")
	rt := limitsPolicy(t, "cpu: 0.25, pids: 64")
	r, err := rt.Run(context.Background(), agentexec.Request{Tool: "hog", Args: []string{"-helper", "spin", "1500"}})
	if err != nil || r.ExitCode != 0 {
		t.Fatalf("spin: %v %+v", err, r)
	}
	ratio := r.CgroupCPU.Seconds() / r.Wall.Seconds()
	t.Logf("cpu %v over wall %v: ratio %.2f (limit 0.25)", r.CgroupCPU, r.Wall, ratio)
	if ratio > 0.40 || ratio < 0.10 {
		t.Errorf("cpu/wall ratio %.2f, want near the 0.25 limit", ratio)
	}
}

func TestTimeoutKillsDaemonizedTreeInCgroup(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireCgroup2(t)
	p, _ := testPolicy(t, "")
	rt := newRuntime(t, p, agentexec.WithKillGrace(100*time.Millisecond))
	m := testutil.SleepMarker()
	// A double fork: the grandchild is reparented and in a new session, outside the
	// child's process group; only the cgroup still holds it.
	r, err := rt.Run(context.Background(), agentexec.Request{Tool: "sh", Args: []string{"-c",
		"(setsid sleep " + m + " &) ; (sh -c 'sleep " + m + " &' &); sleep " + m}, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if !r.TimedOut || r.Cgroup == "" {
		t.Fatalf("timed out %v cgroup %q", r.TimedOut, r.Cgroup)
	}
	if left := testutil.ProcsWith(m); len(left) > 0 {
		t.Fatalf("daemonized processes survived the timeout: %v", left)
	}
}

// Request.Limits lowers a launch's limits below the policy's, enforced by the kernel.
func TestRequestMemoryLimitOOMKills(t *testing.T) {
	testutil.RequireCgroup2Controller(t, "memory")
	rt := limitsPolicy(t, "memory: 512MiB, pids: 64")
	r, err := rt.Run(context.Background(), agentexec.Request{Tool: "hog", Args: []string{"-helper", "alloc", "128"}, Limits: &policy.Limits{Memory: 48 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	if !r.OOMKilled {
		t.Fatalf("128 MiB under a request limit of 48 MiB: oom_killed false, exit %d signal %v", r.ExitCode, r.Signal)
	}
	r, err = rt.Run(context.Background(), agentexec.Request{Tool: "hog", Args: []string{"-helper", "alloc", "128"}})
	if err != nil || r.OOMKilled || r.ExitCode != 0 {
		t.Fatalf("128 MiB under the policy's 512 MiB: %v oom %v exit %d", err, r.OOMKilled, r.ExitCode)
	}
}

// A limit a request asks for that the host cannot enforce is never silent: with
// `cgroup: best_effort` the Result lists it as unenforced (the profile's own list is
// left alone), with `cgroup: require` the launch fails naming it.
func TestRequestLimitsTheHostCannotEnforce(t *testing.T) {
	req := &policy.Limits{Memory: 32 << 20, Pids: 16}
	// Without cgroups (an embedder's explicit opt-out) nothing can be enforced.
	p, _ := testPolicy(t, "")
	rt := newRuntime(t, p, agentexec.WithoutCgroups())
	r, err := rt.Run(context.Background(), agentexec.Request{Tool: "true", Limits: req})
	if err != nil || r.ExitCode != 0 {
		t.Fatalf("Run with request limits: %v exit %d", err, r.ExitCode)
	}
	for _, want := range []string{"cgroup: memory", "cgroup: pids"} {
		if !slices.Contains(r.Unenforced, want) {
			t.Errorf("request limits without cgroups: unenforced %q, want %q listed", r.Unenforced, want)
		}
	}
	if slices.Contains(r.Unenforced, "cgroup: cpu") {
		t.Errorf("unenforced %q lists cpu, which the request did not ask for", r.Unenforced)
	}
	for range 2 { // the profile's own list must not have grown
		r = run(t, rt, "true")
		if slices.Contains(r.Unenforced, "cgroup: memory") || slices.Contains(r.Unenforced, "cgroup: pids") {
			t.Fatalf("a launch without request limits lists %q", r.Unenforced)
		}
	}

	// With cgroups and `cgroup: require`: enforced where the controller exists, an
	// error naming the limit where it does not (this CI host's hybrid hierarchy).
	p, _ = testPolicy(t, "  strict: {exec: /bin/true, enforcement: {cgroup: require}}\n")
	rt = newRuntime(t, p)
	info := rt.Host().Cgroup
	hasMemory := info != nil && info.CanCreate && info.Has("memory")
	r, err = rt.Run(context.Background(), agentexec.Request{Tool: "strict", Limits: &policy.Limits{Memory: 32 << 20}})
	if hasMemory {
		if err != nil || r.ExitCode != 0 || slices.Contains(r.Unenforced, "cgroup: memory") {
			t.Fatalf("memory controller present: %v exit %d unenforced %q", err, r.ExitCode, r.Unenforced)
		}
		return
	}
	if err == nil || !errors.Is(err, agentexec.ErrNotSupported) || !strings.Contains(err.Error(), "cgroup: memory") || !strings.Contains(err.Error(), "require") {
		t.Fatalf("no memory controller, cgroup: require, request memory limit: err %v, want ErrNotSupported naming cgroup: memory", err)
	}
	if r := run(t, rt, "strict"); r.ExitCode != 0 {
		t.Fatalf("the same tool without request limits: exit %d", r.ExitCode)
	}
}
