package cgroup

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentexec/agentexec/internal/testutil"
	"golang.org/x/sys/unix"
)

// staleHost is a cgroup directory with a few hundred other runtimes' groups: live
// ones (their owner runs, with its start time recorded when cgroupfs keeps the
// xattr), dead ones (a pid no process has), dead ones with sub-groups, a dead
// process's empty leaf, and, where the xattr is kept, groups of a reused pid.
type staleHost struct {
	info        *Info
	prefix      string
	live, stale []string // absolute paths
}

const (
	staleLive = 120
	staleDead = 180
)

func newStaleHost(t testing.TB, name string) *staleHost {
	return newStaleHostN(t, name, staleLive, staleDead)
}

func newStaleHostN(t testing.TB, name string, nLive, nDead int) *staleHost {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireCgroup2(t)
	info, err := Discover()
	if err != nil {
		t.Fatal(err)
	}
	if !info.CanCreate {
		t.Skipf("cannot create cgroups under %s: %s", info.Dir, info.Reason)
	}
	h := &staleHost{info: info, prefix: "agentexec-" + name + strconv.Itoa(os.Getpid())}
	owner := helperCmd("sleep")
	if err := owner.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { owner.Process.Kill(); owner.Wait() })
	livePid := owner.Process.Pid
	start, ok := startTime(livePid)
	if !ok {
		t.Fatal("no start time for", livePid)
	}
	pidMax := pidMax(t)
	mk := func(name string, sub ...string) string {
		t.Helper()
		p := filepath.Join(info.Dir, name)
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = rmdirTree(p) })
		for _, s := range sub {
			if err := os.MkdirAll(filepath.Join(p, s), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		return p
	}
	xattr := true
	for i := range nLive {
		p := mk(h.prefix + "-" + strconv.Itoa(livePid) + "-" + strconv.Itoa(i+1))
		if err := unix.Setxattr(p, ownerXattr, []byte(strconv.Itoa(livePid)+" "+start), 0); err != nil {
			xattr = false // the pid alone is trusted then: still live
		}
		h.live = append(h.live, p)
	}
	for i := range nDead {
		pid := strconv.Itoa(pidMax + 1 + i)
		switch {
		case i%10 == 0:
			h.stale = append(h.stale, mk(h.prefix+"-"+pid, "pool", "pool/g0", "pool/g1"))
		case i%10 == 1:
			h.stale = append(h.stale, mk(h.prefix+"-"+pid+"-self"))
		case i%10 == 2 && xattr:
			// The live pid, but another start time: the pid was reused.
			p := mk(h.prefix + "-" + strconv.Itoa(livePid) + "-" + strconv.Itoa(1000+i))
			if err := unix.Setxattr(p, ownerXattr, []byte(strconv.Itoa(livePid)+" 1"), 0); err != nil {
				t.Fatal(err)
			}
			h.stale = append(h.stale, p)
		default:
			h.stale = append(h.stale, mk(h.prefix+"-"+pid))
		}
	}
	if !xattr {
		t.Logf("cgroupfs does not keep %s here: no reused-pid groups", ownerXattr)
	}
	return h
}

func (h *staleHost) count(paths []string) (exist int) {
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			exist++
		}
	}
	return exist
}

// TestStaleBoundedAtStart: with a few hundred other groups on the host, NewManager
// checks at most StaleChecksAtStart owners before it returns; the background sweep
// then removes every stale group and no live one.
func TestStaleBoundedAtStart(t *testing.T) {
	h := newStaleHost(t, "bound")
	m, err := NewManager(h.info, Options{Prefix: h.prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := m.Close(); err != nil {
			t.Error(err)
		}
	}()
	if m.staleChecked != StaleChecksAtStart {
		t.Errorf("NewManager checked %d owners of %d candidates, want exactly %d (the bound)",
			m.staleChecked, staleLive+staleDead, StaleChecksAtStart)
	}
	m.bg.Wait() // the background sweep
	if n := h.count(h.stale); n != 0 {
		t.Errorf("%d of %d stale groups left after the background sweep (warnings %q)", n, len(h.stale), m.Warnings())
	}
	if n := h.count(h.live); n != len(h.live) {
		t.Errorf("%d of %d live groups removed", len(h.live)-n, len(h.live))
	}
}

// TestStaleShortLived: processes that end before any background sweep (only the
// bounded check at start runs) still remove every stale group over enough starts,
// and never a live one.
func TestStaleShortLived(t *testing.T) {
	h := newStaleHost(t, "short")
	m := &Manager{info: *h.info, prefix: h.prefix, drain: 10 * time.Second}
	starts := 0
	for ; starts < 3000 && h.count(h.stale) > 0; starts++ {
		before := m.staleChecked
		rest, err := m.removeStale()
		if err != nil {
			t.Fatal(err)
		}
		if m.staleChecked-before > StaleChecksAtStart {
			t.Fatalf("start %d checked %d owners", starts, m.staleChecked-before)
		}
		if len(rest) > 0 && m.staleChecked-before != StaleChecksAtStart {
			t.Fatalf("start %d checked %d owners with %d left over", starts, m.staleChecked-before, len(rest))
		}
	}
	if n := h.count(h.stale); n != 0 {
		t.Errorf("%d stale groups left after %d bounded starts", n, starts)
	}
	if n := h.count(h.live); n != len(h.live) {
		t.Errorf("%d of %d live groups removed", len(h.live)-n, len(h.live))
	}
	t.Logf("%d bounded starts removed %d stale groups among %d live", starts, len(h.stale), len(h.live))
}

// TestStaleSweepStopsAtClose: Close ends the background sweep; the groups it had not
// reached stay for later starts.
func TestStaleSweepStopsAtClose(t *testing.T) {
	h := newStaleHost(t, "stop")
	m, err := NewManager(h.info, Options{Prefix: h.prefix})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-m.stopSweep:
	default:
		t.Fatal("Close did not stop the sweep")
	}
	if n := h.count(h.live); n != len(h.live) {
		t.Errorf("%d of %d live groups removed", len(h.live)-n, len(h.live))
	}
}

// BenchmarkNewManagerStale: NewManager on a host with 300 live groups of other
// runtimes (each check: kill(pid, 0), getxattr, a read of /proc/<pid>/stat), with
// the bound (StaleChecksAtStart) and without it, alternately in the same run.
// Reports the medians of NewManager alone (ms_bounded, ms_unbounded) and their
// ratio; ns/op is both, each followed by Close.
func BenchmarkNewManagerStale(b *testing.B) {
	h := newStaleHostN(b, "bench", 300, 0)
	one := func(budget int) time.Duration {
		staleBudget = budget
		defer func() { staleBudget = StaleChecksAtStart }()
		t0 := time.Now()
		m, err := NewManager(h.info, Options{Prefix: h.prefix})
		d := time.Since(t0)
		if err != nil {
			b.Fatal(err)
		}
		if err := m.Close(); err != nil {
			b.Fatal(err)
		}
		return d
	}
	var bounded, unbounded []time.Duration
	for i := 0; b.Loop(); i++ {
		if i%2 == 0 {
			bounded = append(bounded, one(StaleChecksAtStart))
			unbounded = append(unbounded, one(1<<30))
		} else {
			unbounded = append(unbounded, one(1<<30))
			bounded = append(bounded, one(StaleChecksAtStart))
		}
	}
	if n := h.count(h.live); n != len(h.live) {
		b.Fatalf("%d of %d live groups removed", len(h.live)-n, len(h.live))
	}
	med := func(d []time.Duration) time.Duration { slices.Sort(d); return d[len(d)/2] }
	mb, mu := med(bounded), med(unbounded)
	b.ReportMetric(float64(mb)/1e6, "ms_bounded")
	b.ReportMetric(float64(mu)/1e6, "ms_unbounded")
	b.ReportMetric(float64(mb)/float64(mu), "x_bounded/unbounded")
}

// TestStaleConcurrentRemoval: runtimes that start at the same moment (a fleet
// worker's jobs after another worker was killed) find the same dead runtime's groups,
// with its tools still running in them, and remove them at once. Neither may fail:
// a failed stale removal used to fail NewManager, and the runtime then ran its
// tools without cgroups.
func TestStaleConcurrentRemoval(t *testing.T) {
	const rounds, groups, removers = 20, 6, 3
	h := newStaleHostN(t, "race", 0, 0)
	pidMax := pidMax(t)
	for round := range rounds {
		var dirs []string
		for i := range groups {
			p := filepath.Join(h.info.Dir, h.prefix+"-"+strconv.Itoa(pidMax+1+round*groups+i))
			sub := filepath.Join(p, "pool", "g0")
			if err := os.MkdirAll(sub, 0o755); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = rmdirTree(p) })
			c := helperCmd("sleep")
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			go c.Wait()
			if err := os.WriteFile(filepath.Join(sub, "cgroup.procs"), []byte(strconv.Itoa(c.Process.Pid)), 0o644); err != nil {
				c.Process.Kill()
				t.Fatal(err)
			}
			dirs = append(dirs, p)
		}
		errs := make(chan error, removers)
		for range removers {
			m := &Manager{info: *h.info, prefix: h.prefix, drain: 10 * time.Second, hasKill: h.info.HasKill}
			go func() {
				_, err := m.removeStale()
				errs <- err
			}()
		}
		for range removers {
			if err := <-errs; err != nil {
				t.Fatalf("round %d: a concurrent stale removal failed: %v", round, err)
			}
		}
		if n := h.count(dirs); n != 0 {
			t.Fatalf("round %d: %d of %d stale groups left", round, n, len(dirs))
		}
	}
}

// pidMax is the kernel's pid_max: pids above it belong to no process.
func pidMax(t testing.TB) int {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/kernel/pid_max")
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return n
}
