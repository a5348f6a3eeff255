package cgroup

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentexec/agentexec/internal/testutil"
	"golang.org/x/sys/unix"
)

// helperStale plays an agentexec that dies holding a launched process: it creates a
// Manager (prefix from STALE_PREFIX), starts a sleeper in a pool group, prints both and
// waits to be SIGKILLed by the test.
func helperStale() int {
	info, err := Discover()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	m, err := NewManager(info, Options{Prefix: os.Getenv("STALE_PREFIX")})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	p, err := m.NewPool("p", Limits{}, 1, 1)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	g, err := p.Get()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	c := inGroup(helperCmd("sleep"), g)
	if err := c.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	fmt.Printf("BASE %s\nGROUP %s\nSLEEPER %d\n", m.Base(), g.Path(), c.Process.Pid)
	time.Sleep(time.Minute)
	return 3
}

// TestStaleCleanup: a cgroup left with a live process by an agentexec that was killed
// is found, its process killed and the directory removed by the next NewManager.
func TestStaleCleanup(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireCgroup2(t)
	prefix := "agentexec-stale" + strconv.Itoa(os.Getpid())
	h := helperCmd("stale", "STALE_PREFIX="+prefix)
	out, err := h.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	h.Stderr = os.Stderr
	if err := h.Start(); err != nil {
		t.Fatal(err)
	}
	vals := map[string]string{}
	sc := bufio.NewScanner(out)
	for len(vals) < 3 && sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), " ")
		vals[k] = v
	}
	if len(vals) < 3 {
		h.Process.Kill()
		h.Wait()
		t.Fatalf("helper output incomplete: %v (scan err %v)", vals, sc.Err())
	}
	if err := h.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	h.Wait()
	sleeper, _ := strconv.Atoi(vals["SLEEPER"])
	base, group := vals["BASE"], vals["GROUP"]
	if want := prefix + "-" + strconv.Itoa(h.Process.Pid); filepath.Base(base) != want {
		t.Fatalf("helper base %s, want name %s", base, want)
	}
	if _, err := os.Stat(group); err != nil {
		t.Fatalf("stale group should exist before cleanup: %v", err)
	}
	if !processAlive(sleeper) {
		t.Fatalf("sleeper %d should outlive its killed agentexec", sleeper)
	}

	info, err := Discover()
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewManager(info, Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := m.Close(); err != nil {
			t.Error(err)
		}
	}()
	if _, err := os.Stat(base); !os.IsNotExist(err) {
		t.Errorf("stale base %s still there after NewManager (stat err %v)", base, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for processAlive(sleeper) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if processAlive(sleeper) {
		t.Errorf("sleeper %d in the stale cgroup survived cleanup", sleeper)
	}
}

// helperDelegated runs in a non-root cgroup the test made for it, with other
// processes absent: it creates a Manager there (DELEG_LEAF=always|auto) and reports
// where it and a launched child end up.
func helperDelegated() int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, err); return 2 }
	own := func() string {
		b, _ := os.ReadFile("/proc/self/cgroup")
		p, _ := parseProcCgroup(b)
		return p
	}
	info, err := Discover()
	if err != nil {
		return fail(err)
	}
	pol := LeafAuto
	if os.Getenv("DELEG_LEAF") == "always" {
		pol = LeafAlways
	}
	fmt.Printf("SELF %s\nSELFPROCS %d\n", info.Self, info.SelfProcs)
	m, err := NewManager(info, Options{Prefix: "agentexec-deleg", Leaf: pol})
	if err != nil {
		return fail(err)
	}
	fmt.Printf("MOVED %v\nNOW %s\nCONTROLLERS %s\nWARNINGS %q\n", m.Moved(), own(), strings.Join(m.Controllers(), ","), m.Warnings())
	p, err := m.NewPool("d", Limits{Memory: 64 << 20, Pids: 64}, 1, 2)
	if err != nil {
		return fail(err)
	}
	g, err := p.Get()
	if err != nil {
		return fail(err)
	}
	c := inGroup(helperCmd("cgroup"), g)
	b, err := c.Output()
	if err != nil {
		return fail(err)
	}
	child, err := parseProcCgroup(b)
	if err != nil {
		return fail(err)
	}
	fmt.Printf("CHILD %s\nGROUP %s\n", child, relPath(m, g))
	g.Release()
	if err := m.Close(); err != nil {
		return fail(err)
	}
	_, err = os.Stat(filepath.Join(info.Dir, "agentexec-deleg-"+strconv.Itoa(os.Getpid())+"-self"))
	fmt.Printf("AFTER %s\nLEAFGONE %v\n", own(), os.IsNotExist(err))
	return 0
}

func runDelegated(t *testing.T, leafPolicy string) map[string]string {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireCgroup2(t)
	info, err := Discover()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(info.Dir, "agentexec-delegtest-"+strconv.Itoa(os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	defer func() {
		// A failed helper may leave its leaf behind; remove it first.
		if entries, _ := os.ReadDir(dir); len(entries) > 0 {
			for _, e := range entries {
				if e.IsDir() {
					t.Errorf("left in %s: %s", dir, e.Name())
					_ = rmdirTree(filepath.Join(dir, e.Name()))
				}
			}
		}
		if err := syscall.Rmdir(dir); err != nil {
			t.Errorf("rmdir %s: %v", dir, err)
		}
	}()
	fd, err := syscall.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	h := helperCmd("delegated", "DELEG_LEAF="+leafPolicy)
	h.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	h.Stderr = os.Stderr
	out, err := h.Output()
	if err != nil {
		t.Fatalf("helper: %v; output:\n%s", err, out)
	}
	vals := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(l, " "); ok {
			vals[k] = v
		}
	}
	rel := "/" + strings.TrimPrefix(strings.TrimPrefix(dir, info.Mount), "/")
	if vals["SELF"] != rel {
		t.Fatalf("helper Self %q, want %q (output %q)", vals["SELF"], rel, out)
	}
	if vals["SELFPROCS"] != "1" {
		t.Errorf("SelfProcs %s, want 1", vals["SELFPROCS"])
	}
	if want := rel + "/agentexec-deleg-" + strconv.Itoa(h.Process.Pid) + "-self"; vals["MOVED"] != "true" || vals["NOW"] != want {
		t.Errorf("helper moved=%s now in %s, want moved into %s", vals["MOVED"], vals["NOW"], want)
	}
	if vals["CHILD"] == "" || vals["CHILD"] != vals["GROUP"] {
		t.Errorf("child ran in %q, want its group %q", vals["CHILD"], vals["GROUP"])
	}
	if !strings.HasPrefix(vals["GROUP"], rel+"/agentexec-deleg-") {
		t.Errorf("group %q not under the delegated cgroup %s", vals["GROUP"], rel)
	}
	if vals["AFTER"] != rel || vals["LEAFGONE"] != "true" {
		t.Errorf("after Close helper in %q (want %q), leaf removed: %s", vals["AFTER"], rel, vals["LEAFGONE"])
	}
	return vals
}

// TestDelegatedLeafAlways: a Manager in a non-root cgroup holding its own process moves
// into <Self>/<prefix>-<pid>-self, runs launches below Self, and moves back on Close.
func TestDelegatedLeafAlways(t *testing.T) {
	runDelegated(t, "always")
}

// TestDelegatedAutoEnablesControllers: with controllers available (VM tier), LeafAuto
// must move out of Self to enable them (the kernel says EBUSY otherwise).
func TestDelegatedAutoEnablesControllers(t *testing.T) {
	testutil.RequireCgroup2Controller(t, "memory")
	testutil.RequireCgroup2Controller(t, "pids")
	vals := runDelegated(t, "auto")
	if c := vals["CONTROLLERS"]; !strings.Contains(","+c+",", ",memory,") || !strings.Contains(","+c+",", ",pids,") {
		t.Errorf("controllers enabled for the pool: %q, want memory and pids (warnings %s)", c, vals["WARNINGS"])
	}
}

// TestStaleReusedPid: a base directory whose pid now belongs to another process (the
// recorded start time differs) is stale; one whose owner still runs is kept.
func TestStaleReusedPid(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireCgroup2(t)
	info, err := Discover()
	if err != nil {
		t.Fatal(err)
	}
	prefix := "agentexec-reuse" + strconv.Itoa(os.Getpid())
	// unrelated plays the process that got the dead agentexec's pid.
	unrelated := helperCmd("sleep")
	if err := unrelated.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { unrelated.Process.Kill(); unrelated.Wait() }()
	pid := unrelated.Process.Pid
	stale := filepath.Join(info.Dir, prefix+"-"+strconv.Itoa(pid))
	if err := os.Mkdir(stale, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(stale, ownerXattr, []byte(strconv.Itoa(pid)+" 1"), 0); err != nil {
		syscall.Rmdir(stale)
		if testutil.Strict() {
			t.Fatalf("AGENTEXEC_STRICT=1: cgroupfs refuses %s: %v (root on cgroup2 supports trusted xattrs)", ownerXattr, err)
		}
		t.Skipf("cgroupfs refuses %s here: %v", ownerXattr, err)
	}
	// A launch the dead agentexec left behind.
	fd, err := unix.Open(stale, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	left := helperCmd("sleep")
	left.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	err = left.Start()
	unix.Close(fd)
	if err != nil {
		t.Fatal(err)
	}
	leftDone := make(chan struct{})
	go func() { left.Wait(); close(leftDone) }()
	// And a directory whose owner (the same live pid) is recorded correctly.
	live := filepath.Join(info.Dir, prefix+"-"+strconv.Itoa(pid)+"-1")
	if err := os.Mkdir(live, 0o755); err != nil {
		t.Fatal(err)
	}
	defer syscall.Rmdir(live)
	start, ok := startTime(pid)
	if !ok {
		t.Fatal("no start time for", pid)
	}
	if err := unix.Setxattr(live, ownerXattr, []byte(strconv.Itoa(pid)+" "+start), 0); err != nil {
		t.Fatal(err)
	}

	m, err := NewManager(info, Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := m.Close(); err != nil {
			t.Error(err)
		}
	}()
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("directory of a reused pid survived: %v", err)
	}
	select {
	case <-leftDone:
	case <-time.After(5 * time.Second):
		t.Error("process left in the stale directory survived")
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("directory of a live owner was removed: %v", err)
	}
	if !processAlive(pid) {
		t.Error("the unrelated process with the reused pid was killed")
	}
}
