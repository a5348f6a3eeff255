package cgroup

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agentexec/agentexec/internal/testutil"
)

func TestParseProcCgroup(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"0::/\n", "/", true},
		{"9:name=systemd:/\n4:memory:/x\n0::/user.slice/a.scope\n", "/user.slice/a.scope", true},
		{"0::/gone (deleted)\n", "/gone", true},
		{"4:memory:/x\n", "", false},
		{"0::relative\n", "", false},
	} {
		got, err := parseProcCgroup([]byte(tc.in))
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseProcCgroup(%q) = %q, %v; want %q ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestMountRoot(t *testing.T) {
	f := filepath.Join(t.TempDir(), "mountinfo")
	content := "22 1 0:21 / /sys rw - sysfs sysfs rw\n" +
		"35 22 0:30 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n" +
		"36 22 0:31 /docker/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
	if err := os.WriteFile(f, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	for mp, want := range map[string]string{"/sys/fs/cgroup/unified": "/", "/sys/fs/cgroup": "/docker/abc", "/nowhere": "/"} {
		got, err := mountRoot(f, mp)
		if err != nil || got != want {
			t.Errorf("mountRoot(%s) = %q, %v; want %q", mp, got, err, want)
		}
	}
}

func TestParseKey(t *testing.T) {
	b := []byte("usage_usec 1234\nuser_usec 1000\nsystem_usec 234\n")
	if v, err := parseKey(b, "usage_usec"); err != nil || v != 1234 {
		t.Errorf("usage_usec = %d, %v", v, err)
	}
	if v, err := parseKey(b, "system_usec"); err != nil || v != 234 {
		t.Errorf("system_usec = %d, %v", v, err)
	}
	if _, err := parseKey(b, "usage"); err == nil {
		t.Error("prefix of a key must not match")
	}
	if _, err := parseKey([]byte("oom_kill max\n"), "oom_kill"); err == nil {
		t.Error("non-numeric value must be an error")
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = parseKey(b, "system_usec") }); n != 0 {
		t.Errorf("parseKey allocates %v times", n)
	}
}

func TestStaleName(t *testing.T) {
	for name, want := range map[string]bool{
		"agentexec-12": true, "agentexec-12-3": true, "agentexec-12-self": true,
		"agentexec-x12": false, "agentexec-12-selfx": false, "agentexec-test-12": false, "xagentexec-12": false,
		"agentexec-": false, "agentexec-12-": false, "agentexec-12-3-4": false, "agentexec-+12": false,
		"agentexec-12-self-1": false, "agentexec--12": false, "agentexec": false,
	} {
		pid, self, got := parseStaleName("agentexec", name)
		if got != want {
			t.Errorf("stale match %q = %v, want %v", name, got, want)
		}
		if got && (pid != 12 || self != strings.HasSuffix(name, "-self")) {
			t.Errorf("%q: pid %d self %v", name, pid, self)
		}
	}
}

func TestLimitsUnenforced(t *testing.T) {
	m := &Manager{enabled: []string{"cpu", "pids"}}
	for _, tc := range []struct {
		l    Limits
		want []string
	}{
		{Limits{}, nil},
		{Limits{Memory: 1 << 20, Pids: 10, CPU: 0.5}, []string{"memory"}},
		{Limits{CPU: 1}, nil},
		{Limits{Memory: 1}, []string{"memory"}},
	} {
		if got := m.Unenforced(tc.l); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Unenforced(%+v) = %v, want %v", tc.l, got, tc.want)
		}
	}
	if got := (Limits{CPU: 1, Pids: 10, Memory: 1}).Controllers(); !slices.Equal(got, []string{"memory", "pids", "cpu"}) {
		t.Errorf("Controllers = %v, want [memory pids cpu]", got)
	}
	if got := (Limits{}).Controllers(); got != nil {
		t.Errorf("Controllers of no limits = %v, want nil", got)
	}
	m.info.Dir = "/sys/fs/cgroup/x"
	err := m.Require(Limits{Memory: 1})
	var ue *UnenforcedError
	if !errors.As(err, &ue) || !errors.Is(err, ErrNotSupported) || !errors.Is(err, errors.ErrUnsupported) || !slices.Equal(ue.Limits, []string{"memory"}) {
		t.Errorf("Require = %v", err)
	}
}

func TestDiscover(t *testing.T) {
	mount := testutil.RequireCgroup2(t)
	info, err := Discover()
	if err != nil {
		t.Fatal(err)
	}
	wantMode := ModeUnified
	if mount == hybridMount {
		wantMode = ModeHybrid
	}
	if info.Mode != wantMode || info.Mount != mount {
		t.Errorf("mode %s mount %s, want %s %s", info.Mode, info.Mount, wantMode, mount)
	}
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	if self := v2Line(t, b); info.Self != self {
		t.Errorf("Self %q, /proc/self/cgroup says %q", info.Self, self)
	}
	if info.Dir != filepath.Join(mount, info.Self) {
		t.Errorf("Dir %q", info.Dir)
	}
	ctl, err := os.ReadFile(filepath.Join(info.Dir, "cgroup.controllers"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(info.Controllers, strings.Fields(string(ctl))) {
		t.Errorf("Controllers %v, file has %q", info.Controllers, ctl)
	}
	if info.HasKill != kernelAtLeast(info.Kernel, 5, 14) {
		t.Errorf("HasKill %v (%s) on kernel %s", info.HasKill, info.KillSource, info.Kernel)
	}
	if info.SelfProcs < 1 {
		t.Errorf("SelfProcs %d: this process is in Self", info.SelfProcs)
	}
	if os.Geteuid() == 0 && !info.CanCreate {
		t.Errorf("root cannot create: %s", info.Reason)
	}
	for _, l := range info.Lines() {
		t.Log(l)
	}
}

// newManager makes a Manager with a test prefix and closes it at the end, checking
// that nothing is left.
func newManager(t testing.TB, opts Options) *Manager {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireCgroup2(t)
	info, err := Discover()
	if err != nil {
		t.Fatal(err)
	}
	if opts.Prefix == "" {
		opts.Prefix = "agentexec-t" + strconv.Itoa(os.Getpid())
	}
	m, err := NewManager(info, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if _, err := os.Stat(m.Base()); !os.IsNotExist(err) {
			t.Errorf("base %s left after Close (stat err %v)", m.Base(), err)
		}
	})
	return m
}

func TestUnenforcedHost(t *testing.T) {
	m := newManager(t, Options{})
	l := Limits{Memory: 64 << 20, Pids: 100, CPU: 1}
	var want []string
	for _, c := range []string{"memory", "pids", "cpu"} {
		if !m.info.Has(c) {
			want = append(want, c)
		}
	}
	got := m.Unenforced(l)
	if !slices.Equal(got, want) {
		t.Errorf("Unenforced = %v, want exactly %v (controllers of %s: %v)", got, want, m.info.Dir, m.info.Controllers)
	}
	if len(want) > 0 && len(m.Warnings()) == 0 {
		t.Error("missing controllers must produce warnings")
	}
	if got := m.Unenforced(Limits{}); len(got) != 0 {
		t.Errorf("no limits asked, Unenforced = %v", got)
	}
	if len(want) == 3 {
		if got := m.Unenforced(Limits{Pids: 5}); !slices.Equal(got, []string{"pids"}) {
			t.Errorf("Unenforced(pids only) = %v", got)
		}
	}
	// Limits that are not enforceable are not written: pool creation must work anyway.
	p, err := m.NewPool("u", l, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	g, err := p.Get()
	if err != nil {
		t.Fatal(err)
	}
	u, err := g.Usage()
	if err != nil {
		t.Fatal(err)
	}
	if !u.HaveCPU || u.HaveMemory != m.info.Has("memory") {
		t.Errorf("usage flags %+v with controllers %v", u, m.Controllers())
	}
	g.Release()
}

// TestPlacement: a child started with CgroupFD is in its group from its first
// instruction: it reads /proc/self/cgroup itself.
func TestPlacement(t *testing.T) {
	m := newManager(t, Options{})
	p, err := m.NewPool("place", Limits{}, 2, 4)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		g, err := p.Get()
		if err != nil {
			t.Fatal(err)
		}
		out, err := inGroup(helperCmd("cgroup"), g).Output()
		if err != nil {
			t.Fatal(err)
		}
		if got, want := v2Line(t, out), relPath(m, g); got != want {
			t.Errorf("child in %q, want %q", got, want)
		}
		// And the same through cat, as a non-Go tool.
		if cat, err := os.Stat("/bin/cat"); err == nil && !cat.IsDir() {
			c := inGroup(exec.Command("/bin/cat", "/proc/self/cgroup"), g)
			out, err := c.Output()
			if err != nil {
				t.Fatal(err)
			}
			if got, want := v2Line(t, out), relPath(m, g); got != want {
				t.Errorf("cat in %q, want %q", got, want)
			}
		}
		g.Release()
	}
}

// TestPlace: the kernel-template backend places a running child by pid.
func TestPlace(t *testing.T) {
	m := newManager(t, Options{})
	p, err := m.NewPool("placepid", Limits{}, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	g, err := p.Get()
	if err != nil {
		t.Fatal(err)
	}
	c := helperCmd("sleep")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	if err := g.Place(c.Process.Pid); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(c.Process.Pid) + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := v2Line(t, b), relPath(m, g); got != want {
		t.Errorf("placed pid in %q, want %q", got, want)
	}
	if pop, err := g.Populated(); err != nil || !pop {
		t.Errorf("Populated = %v, %v; want true", pop, err)
	}
	// The same by hand through the kept cgroup.procs fd.
	c2 := helperCmd("sleep")
	if err := c2.Start(); err != nil {
		t.Fatal(err)
	}
	defer c2.Process.Kill() // on an early failure; g.Kill below kills it otherwise
	if fd := g.ProcsFD(); fd < 0 {
		t.Errorf("ProcsFD = %d", fd)
	} else if _, err := syscall.Write(fd, []byte(strconv.Itoa(c2.Process.Pid))); err != nil {
		t.Errorf("writing pid to ProcsFD: %v", err)
	} else if b, err := os.ReadFile("/proc/" + strconv.Itoa(c2.Process.Pid) + "/cgroup"); err != nil {
		t.Error(err)
	} else if got, want := v2Line(t, b), relPath(m, g); got != want {
		t.Errorf("pid written to ProcsFD in %q, want %q", got, want)
	}
	if err := g.Kill(); err != nil {
		t.Fatal(err)
	}
	c.Wait()
	c2.Wait()
	if err := g.WaitEmpty(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := g.Place(999999999); err == nil {
		t.Error("placing a nonexistent pid must fail")
	}
	g.Release()
}

func testKillDaemonized(t *testing.T, forceFallback bool) {
	m := newManager(t, Options{})
	if forceFallback {
		m.hasKill = false
	} else if !m.HasKill() {
		msg := fmt.Sprintf("kernel %s has no cgroup.kill (Linux 5.14): %s", m.info.Kernel, m.info.KillSource)
		if testutil.Strict() {
			t.Fatalf("AGENTEXEC_STRICT=1: %s (the CI machine's kernel has it)", msg)
		}
		t.Skip(msg)
	}
	p, err := m.NewPool("kill", Limits{}, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	g, err := p.Get()
	if err != nil {
		t.Fatal(err)
	}
	// sh forks two sleeps into the background and exits: the sleeps are daemonized
	// grandchildren that no wait() of ours will ever see.
	c := inGroup(exec.Command("/bin/sh", "-c", "sleep 9137 >/dev/null 2>&1 & sleep 9137 >/dev/null 2>&1 & echo started"), g)
	out, err := c.Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(out)) != "started" {
		t.Fatalf("sh output %q", out)
	}
	// And two Go grandchildren in their own sessions.
	d := inGroup(helperCmd("daemon"), g)
	dout, err := d.Output()
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, f := range strings.Fields(string(dout)) {
		n, _ := strconv.Atoi(f)
		pids = append(pids, n)
	}
	live := processesIn(t, m.info.Mount, g.Path())
	if len(live) < 4 {
		t.Fatalf("expected >= 4 live grandchildren in %s, found %v", g.Path(), live)
	}
	start := time.Now()
	if err := g.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := g.WaitEmpty(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("kill (fallback=%v) of %d processes drained in %v", forceFallback, len(live), time.Since(start))
	// An emptied group says each process has left it (cgroup_exit), not that it
	// has finished exiting: on a slow guest a killed task can still show its old
	// state for a moment after populated drops to 0. Surviving means staying alive.
	for _, pid := range append(live, pids...) {
		if !exitsWithin(pid, 5*time.Second) {
			t.Errorf("pid %d survived Kill", pid)
		}
	}
	if left := processesIn(t, m.info.Mount, g.Path()); len(left) > 0 {
		t.Errorf("processes left in %s: %v", g.Path(), left)
	}
	path := g.Path()
	g.Release()
	// The next launch through the pool must work: on Linux 6.18 a group that had
	// cgroup.kill written SIGKILLs every later CLONE_INTO_CGROUP child, so the pool
	// must have replaced it.
	g2, err := p.GetContext(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := inGroup(exec.Command("/bin/true"), g2).Run(); err != nil {
		t.Errorf("launch in the group after a kill: %v (group %s, killed one %s)", err, g2.Path(), path)
	}
	if replaced := g2.Path() != path; replaced != (m.HasKill() || p.freshOnly) {
		t.Errorf("group replaced=%v after kill with cgroup.kill=%v (fresh groups only: %v)", replaced, m.HasKill(), p.freshOnly)
	}
	g2.Release()
	m.bg.Wait()
	if total, free := p.Size(); total != 1 || free != 1 {
		t.Errorf("after Release: total %d free %d, want 1 1", total, free)
	}
}

func TestKillDaemonized(t *testing.T)         { testKillDaemonized(t, false) }
func TestKillDaemonizedFallback(t *testing.T) { testKillDaemonized(t, true) }

// TestReleasePopulated: releasing a group whose launch left a daemon behind kills it
// in the background and returns the group to the pool.
func TestReleasePopulated(t *testing.T) {
	m := newManager(t, Options{})
	p, err := m.NewPool("dirty", Limits{}, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	g, err := p.Get()
	if err != nil {
		t.Fatal(err)
	}
	path := g.Path()
	if _, err := inGroup(helperCmd("daemon"), g).Output(); err != nil {
		t.Fatal(err)
	}
	g.Release()
	g2, err := p.GetContext(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := inGroup(exec.Command("/bin/true"), g2).Run(); err != nil {
		t.Errorf("launch in the group after a dirty release: %v", err)
	}
	t.Logf("dirty group %s, next group %s", path, g2.Path())
	m.bg.Wait() // the dirty group is drained (or removed) in the background
	if left := processesIn(t, m.info.Mount, path); len(left) > 0 {
		t.Errorf("daemons left in %s: %v", path, left)
	}
	if pop, err := g2.Populated(); err != nil || pop {
		t.Errorf("reused group populated=%v err=%v", pop, err)
	}
	g2.Release()
}

func TestPoolExhausted(t *testing.T) {
	m := newManager(t, Options{})
	p, err := m.NewPool("ex", Limits{}, 0, 2)
	if err != nil {
		t.Fatal(err)
	}
	a, err := p.Get() // grows
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.Get()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Get(); !errors.Is(err, ErrPoolExhausted) {
		t.Fatalf("third Get = %v, want ErrPoolExhausted", err)
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		a.Release()
	}()
	c, err := p.GetContext(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if c != a && !p.freshOnly {
		t.Error("GetContext should get the released group")
	}
	c.Release()
	b.Release()
	b.Release() // double release is a no-op
	m.bg.Wait()
	if total, free := p.Size(); total != 2 || free != 2 {
		t.Errorf("total %d free %d, want 2 2", total, free)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Get(); !errors.Is(err, ErrClosed) {
		t.Errorf("Get after Close = %v", err)
	}
}

func listDirs(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestPoolReuse: many launches through a small pool create no directory after the
// initial ones, and Close leaves nothing.
func TestPoolReuse(t *testing.T) {
	m := newManager(t, Options{})
	p, err := m.NewPool("reuse", Limits{Memory: 256 << 20, Pids: 1000, CPU: 2}, 4, 4)
	if err != nil {
		t.Fatal(err)
	}
	before := listDirs(t, m.Base())
	if len(before) != 4 {
		t.Fatalf("pool dirs %v, want 4", before)
	}
	launches := 2000
	if testing.Short() {
		launches = 200
	}
	// Where memory.peak cannot be reset (Linux < 6.12 with the memory controller),
	// every release replaces its group in the background: wait for one then.
	get := p.Get
	if p.freshOnly {
		t.Logf("memory.peak not resettable here: groups are replaced per launch, Get waits for the replacement")
	}
	for i := 0; i < launches; i++ {
		g, err := get()
		if err != nil {
			t.Fatal(err)
		}
		c := inGroup(exec.Command("/bin/true"), g)
		if err := c.Run(); err != nil {
			t.Fatalf("launch %d: %v", i, err)
		}
		if _, err := g.Usage(); err != nil {
			t.Fatal(err)
		}
		g.Release()
	}
	const noChild = 10000
	for i := 0; i < noChild; i++ {
		g, err := get()
		if err != nil {
			t.Fatal(err)
		}
		g.Release()
	}
	m.bg.Wait()
	after := listDirs(t, m.Base())
	if !p.freshOnly && !slices.Equal(before, after) {
		t.Errorf("pool dirs changed: %v -> %v", before, after)
	}
	if len(after) > 4 {
		t.Errorf("pool grew past max: %v", after)
	}
	if total, free := p.Size(); total != 4 || (free != 4 && !p.freshOnly) {
		t.Errorf("total %d free %d, want 4 4", total, free)
	}
}

// TestUsageCPU: cpu.stat is there without the cpu controller; usage is per launch,
// not per cgroup lifetime.
func TestUsageCPU(t *testing.T) {
	m := newManager(t, Options{})
	p, err := m.NewPool("cpu", Limits{}, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	run := func(ms int) Usage {
		g, err := p.Get()
		if err != nil {
			t.Fatal(err)
		}
		defer g.Release()
		if err := inGroup(helperCmd("spin", "HELPER_MS="+strconv.Itoa(ms)), g).Run(); err != nil {
			t.Fatal(err)
		}
		u, err := g.Usage()
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	u1 := run(800)
	u2 := run(0)
	// The helper spins until its own rusage shows 800ms of CPU.
	if !u1.HaveCPU || u1.CPU < 800*time.Millisecond || u1.CPU > 5*time.Second {
		t.Errorf("spin 800ms: usage %+v", u1)
	}
	// The second launch only starts a Go program (under a loaded emulated guest,
	// up to ~350ms of CPU); had the first launch's usage not been subtracted, it
	// would show all of it plus its own, so it could not be below the first's.
	if u2.CPU >= u1.CPU {
		t.Errorf("second launch usage %v includes the first's (%v)", u2.CPU, u1.CPU)
	}
	t.Logf("usage spin800=%+v spin0=%+v", u1, u2)
}

// TestCloseWithLiveGroup: Close kills what a held group still runs.
func TestCloseWithLiveGroup(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireCgroup2(t)
	info, err := Discover()
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewManager(info, Options{Prefix: "agentexec-close" + strconv.Itoa(os.Getpid())})
	if err != nil {
		t.Fatal(err)
	}
	p, err := m.NewPool("c", Limits{}, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	g, err := p.Get()
	if err != nil {
		t.Fatal(err)
	}
	c := inGroup(helperCmd("sleep"), g)
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if signalOf(err) != syscall.SIGKILL {
			t.Errorf("child ended with %v, want SIGKILL", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("child survived Close")
	}
	if _, err := os.Stat(m.Base()); !os.IsNotExist(err) {
		t.Errorf("base left: %v", err)
	}
	if _, err := p.Get(); !errors.Is(err, ErrClosed) {
		t.Errorf("Get after Close = %v", err)
	}
}

func TestNewManagerErrors(t *testing.T) {
	if _, err := NewManager(&Info{Mode: ModeNone}, Options{}); !errors.Is(err, ErrNotSupported) {
		t.Errorf("ModeNone: %v", err)
	}
	if _, err := NewManager(&Info{Mode: ModeHybrid, Dir: "/x", Reason: "nope"}, Options{}); !errors.Is(err, ErrCannotCreate) {
		t.Errorf("CanCreate=false: %v", err)
	}
}

// TestGetReleaseAllocs: the launch-path pool operations do not allocate.
func TestGetReleaseAllocs(t *testing.T) {
	m := newManager(t, Options{})
	p, err := m.NewPool("allocs", Limits{Memory: 64 << 20, Pids: 100, CPU: 1}, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	var uerr error
	n := testing.AllocsPerRun(200, func() {
		g, err := p.Get()
		if err != nil {
			uerr = err
			return
		}
		if _, err := g.Usage(); err != nil {
			uerr = err
		}
		g.Release()
	})
	if uerr != nil {
		t.Fatal(uerr)
	}
	if n != 0 && !p.freshOnly {
		t.Errorf("Get+Usage+Release allocates %v times per run, want 0", n)
	}
}

// TestPoolConcurrent: many goroutines launching through a pool smaller than their
// number; every launch lands in the group it was given, and no group is handed to two
// launches at once.
func TestPoolConcurrent(t *testing.T) {
	m := newManager(t, Options{})
	p, err := m.NewPool("conc", Limits{}, 2, 4)
	if err != nil {
		t.Fatal(err)
	}
	const workers, each = 8, 25
	var mu sync.Mutex
	held := map[*Group]bool{}
	errc := make(chan error, workers)
	for w := 0; w < workers; w++ {
		go func() {
			for i := 0; i < each; i++ {
				g, err := p.GetContext(t.Context())
				if err != nil {
					errc <- err
					return
				}
				mu.Lock()
				if held[g] {
					mu.Unlock()
					errc <- fmt.Errorf("group %s handed out twice", g.Path())
					return
				}
				held[g] = true
				mu.Unlock()
				out, err := inGroup(exec.Command("/bin/cat", "/proc/self/cgroup"), g).Output()
				if err != nil {
					errc <- err
					return
				}
				if got, _ := parseProcCgroup(out); got != relPath(m, g) {
					errc <- fmt.Errorf("launch in %q, want %q", got, relPath(m, g))
					return
				}
				mu.Lock()
				delete(held, g)
				mu.Unlock()
				g.Release()
			}
			errc <- nil
		}()
	}
	for w := 0; w < workers; w++ {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
	m.bg.Wait()
	if total, free := p.Size(); total > 4 || total != free {
		t.Errorf("after the run: total %d free %d (max 4)", total, free)
	}
}
