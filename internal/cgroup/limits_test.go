package cgroup

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/agentexec/agentexec/internal/testutil"
)

// The limit tests need the memory, pids and cpu controllers on the v2 hierarchy. The
// hybrid host has none, so they skip there and run in the VM tier (pure v2, all
// controllers at the root, AGENTEXEC_VM=1). Children are this static test binary
// (GO_WANT_HELPER) or /bin/sh, which a busybox guest has.

func readKey(t testing.TB, path, key string) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	v, err := parseKey(b, key)
	if err != nil {
		t.Fatalf("%s: %v in %q", path, err, b)
	}
	return v
}

func signalOf(err error) syscall.Signal {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return ws.Signal()
		}
	}
	return 0
}

// TestMemoryLimitOOM: memory.max stops a child that allocates past it (OOM kill,
// counted in Usage), and the next launch in the same group starts from a clean peak
// and OOM count.
func TestMemoryLimitOOM(t *testing.T) {
	testutil.RequireCgroup2Controller(t, "memory")
	m := newManager(t, Options{})
	const limit = 48 << 20
	p, err := m.NewPool("mem", Limits{Memory: limit}, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	if u := m.Unenforced(Limits{Memory: limit}); len(u) != 0 {
		t.Fatalf("memory not enforced: %v; warnings %v", u, m.Warnings())
	}
	g, err := p.Get()
	if err != nil {
		t.Fatal(err)
	}
	if got := readKey(t, filepath.Join(g.Path(), "memory.events"), "oom_kill"); got != 0 {
		t.Fatalf("fresh group has oom_kill %d", got)
	}
	b, err := os.ReadFile(filepath.Join(g.Path(), "memory.max"))
	if err != nil || string(b) != strconv.Itoa(limit)+"\n" {
		t.Fatalf("memory.max = %q, %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(g.Path(), "memory.swap.max")); err == nil && string(b) != "0\n" {
		t.Errorf("memory.swap.max = %q, want 0", b)
	}
	err = inGroup(helperCmd("alloc", "HELPER_MB=256"), g).Run()
	if sig := signalOf(err); sig != syscall.SIGKILL {
		t.Fatalf("allocating 256 MiB under a 48 MiB limit: %v, want SIGKILL", err)
	}
	u, err := g.Usage()
	if err != nil {
		t.Fatal(err)
	}
	if !u.HaveMemory || u.OOMKills < 1 {
		t.Errorf("usage after OOM: %+v, want HaveMemory and OOMKills >= 1", u)
	}
	// memory.peak may overshoot memory.max by a few pages (charges are batched).
	if u.PeakMemory > limit+1<<20 || u.PeakMemory < limit/2 {
		t.Errorf("peak memory %d, want about the limit %d", u.PeakMemory, limit)
	}
	t.Logf("OOM launch: %+v (memory.peak resettable: %v)", u, m.memPeakResettable)
	g.Release()

	g, err = p.GetContext(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := inGroup(helperCmd("alloc", "HELPER_MB=4"), g).Run(); err != nil {
		t.Fatalf("4 MiB under 48 MiB: %v", err)
	}
	u2, err := g.Usage()
	if err != nil {
		t.Fatal(err)
	}
	if !u2.HaveMemory || u2.OOMKills != 0 || u2.PeakMemory >= limit*3/4 {
		t.Errorf("second launch usage %+v: want its own peak (< %d) and no OOM kill", u2, limit*3/4)
	}
	t.Logf("second launch: %+v", u2)
	g.Release()
}

// TestPidsLimit: pids.max stops a fork loop; the group never holds more than the
// limit and pids.events counts the refused forks.
func TestPidsLimit(t *testing.T) {
	testutil.RequireCgroup2Controller(t, "pids")
	m := newManager(t, Options{})
	const limit = 16
	p, err := m.NewPool("pids", Limits{Pids: limit}, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	g, err := p.Get()
	if err != nil {
		t.Fatal(err)
	}
	script := `i=0; while [ $i -lt 64 ]; do sleep 30 >/dev/null 2>&1 & i=$((i+1)); done; echo done`
	c := inGroup(exec.Command("/bin/sh", "-c", script), g)
	c.Run() // the shell itself may die of the refused fork; the counts below decide
	n := len(processesIn(t, m.info.Mount, g.Path()))
	if n > limit {
		t.Errorf("%d processes in the group, pids.max is %d", n, limit)
	}
	if refused := readKey(t, filepath.Join(g.Path(), "pids.events"), "max"); refused < 1 {
		t.Errorf("pids.events max = %d, want refused forks counted", refused)
	}
	u, err := g.Usage()
	if err != nil {
		t.Fatal(err)
	}
	if u.HavePids && (u.PidsPeak > limit || u.PidsPeak < limit-2) {
		t.Errorf("pids peak %d, want about %d", u.PidsPeak, limit)
	}
	t.Logf("fork loop: %d live processes, usage %+v", n, u)
	if err := g.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := g.WaitEmpty(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	g.Release()
}

// TestCPULimit: cpu.max 0.2 cores holds a spinning child to about a fifth of the wall
// time and the kernel reports throttling.
func TestCPULimit(t *testing.T) {
	testutil.RequireCgroup2Controller(t, "cpu")
	m := newManager(t, Options{})
	p, err := m.NewPool("cpu", Limits{CPU: 0.2}, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	g, err := p.Get()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(g.Path(), "cpu.max"))
	if err != nil || string(b) != "20000 100000\n" {
		t.Fatalf("cpu.max = %q, %v", b, err)
	}
	start := time.Now()
	c := inGroup(helperCmd("spin", "HELPER_WALL_MS=2000", "GOMAXPROCS=2"), g)
	if err := c.Run(); err != nil {
		t.Fatal(err)
	}
	wall := time.Since(start)
	u, err := g.Usage()
	if err != nil {
		t.Fatal(err)
	}
	ratio := float64(u.CPU) / float64(wall)
	if ratio < 0.1 || ratio > 0.3 {
		t.Errorf("cpu/wall = %.3f (cpu %v, wall %v), want about 0.2", ratio, u.CPU, wall)
	}
	if thr := readKey(t, filepath.Join(g.Path(), "cpu.stat"), "nr_throttled"); thr < 1 {
		t.Errorf("cpu.stat nr_throttled = %d, want > 0", thr)
	}
	t.Logf("cpu.max 0.2: cpu %v over wall %v = %.3f", u.CPU, wall, ratio)
	g.Release()
}
