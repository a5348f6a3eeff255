package contain

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec/internal/osthread"
	"github.com/agentexec/agentexec/internal/sys"
)

// The tests change process state that cannot be undone (capabilities, seccomp), so
// each case re-executes the test binary as a "spawner" helper that applies the
// layers in the order the real spawner does and then launches children, which may
// be the test binary again as a "probe" helper.
const (
	helperEnv = "AGENTEXEC_CONTAIN_HELPER" // "spawner" or "probe"
	configEnv = "AGENTEXEC_CONTAIN_CONFIG" // spawnerConfig as JSON
)

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "spawner":
		os.Exit(spawnerMain())
	case "probe":
		os.Exit(probeMain(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// spawnerConfig tells the spawner helper what to apply and what to launch.
type spawnerConfig struct {
	DropCaps bool
	Caps     CapsSpec
	NNP      bool
	Seccomp  *SeccompSpec // SpawnerPID is filled in by the helper
	// TrivialFilter installs a filter that allows everything (one instruction): the
	// fixed cost of having any filter, to compare the real one against.
	TrivialFilter bool
	// LauncherScope puts the spawner in a Landlock domain that scopes signals (all
	// threads) and launches from one locked "launcher" thread that adds a nested
	// scope-only domain of its own; its tid goes into ProtectTIDs. The design
	// docs/security.md recommends against signals to other spawner threads.
	LauncherScope bool
	// TolerateBounding goes on after ErrCannotDropBounding (reported in CapsErr).
	TolerateBounding bool
	// ProtectThread starts a locked thread and lists its tid in ProtectTIDs.
	ProtectThread bool
	// RuntimeChecks exercises the Go runtime after the filter is in force.
	RuntimeChecks bool
	// CgroupDir, when set, makes launches use clone3 with CLONE_INTO_CGROUP.
	CgroupDir string
	Runs      []launch
	// Bench, when > 0, times that many launches of Runs[0] and reports ns/launch.
	Bench int
	// BenchSyscalls, when > 0, times that many getppid(2) and kill(getppid(), 0)
	// calls (one filtered by number only, one inspected by argument).
	BenchSyscalls int
}

type launch struct {
	Argv []string
	Env  []string
	// NewNet starts the child in a new, empty network namespace (CLONE_NEWNET).
	NewNet bool
	// AsUID runs the child under another uid through SysProcAttr.Credential (for
	// control runs, where the helper keeps its capabilities).
	AsUID *uint32
}

type launchResult struct {
	Out    string
	Status string // "exit 0", "signal killed", "error: ..."
}

type spawnerReport struct {
	// CapsErr is DropCapabilities' error when TolerateBounding let setup go on.
	CapsErr    string
	SetupErr   string
	RuntimeErr string
	Runs       []launchResult
	BenchNs    float64
	// BenchCPUNs is CPU time (user+system, the helper and its children) per launch:
	// less sensitive to other load on the machine than wall time.
	BenchCPUNs float64
	// GetppidNs and KillNs are ns per call of the BenchSyscalls loops.
	GetppidNs, KillNs float64
}

func cpuNs() int64 {
	var self, kids syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &kids)
	t := func(r syscall.Rusage) int64 { return r.Utime.Nano() + r.Stime.Nano() }
	return t(self) + t(kids)
}

func spawnerMain() int {
	var cfg spawnerConfig
	var rep spawnerReport
	if err := json.Unmarshal([]byte(os.Getenv(configEnv)), &cfg); err != nil {
		rep.SetupErr = "config: " + err.Error()
	} else if err := setupSpawner(cfg, &rep); err != nil {
		rep.SetupErr = err.Error()
	} else {
		if cfg.RuntimeChecks {
			if err := runtimeChecks(); err != nil {
				rep.RuntimeErr = err.Error()
			}
		}
		var cgfd = -1
		if cfg.CgroupDir != "" {
			fd, err := unix.Open(cfg.CgroupDir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				rep.SetupErr = "open cgroup: " + err.Error()
			}
			cgfd = fd
		}
		if n := cfg.BenchSyscalls; n > 0 {
			start := time.Now()
			for range n {
				syscall.Getppid()
			}
			rep.GetppidNs = float64(time.Since(start).Nanoseconds()) / float64(n)
			pp := syscall.Getppid()
			start = time.Now()
			for range n {
				syscall.Kill(pp, 0)
			}
			rep.KillNs = float64(time.Since(start).Nanoseconds()) / float64(n)
		}
		if cfg.Bench > 0 && len(cfg.Runs) > 0 {
			start, cpu0 := time.Now(), cpuNs()
			for i := 0; i < cfg.Bench; i++ {
				if r := spawn(cfg.Runs[0], cgfd); r.Status != "exit 0" {
					rep.RuntimeErr = fmt.Sprintf("bench launch %d: %s", i, r.Status)
					break
				}
			}
			rep.BenchNs = float64(time.Since(start).Nanoseconds()) / float64(cfg.Bench)
			rep.BenchCPUNs = float64(cpuNs()-cpu0) / float64(cfg.Bench)
		} else {
			for _, l := range cfg.Runs {
				rep.Runs = append(rep.Runs, spawn(l, cgfd))
			}
		}
	}
	b, _ := json.Marshal(rep)
	os.Stdout.Write(b)
	return 0
}

// protectedTID is the spawner helper's ProtectThread thread id (0: none).
var protectedTID int

// setupSpawner applies the layers in the spawner's order: capabilities,
// no_new_privs, (with LauncherScope) a Landlock signal scope on all threads and the
// launcher thread with its own, then seccomp.
func setupSpawner(cfg spawnerConfig, rep *spawnerReport) error {
	if cfg.DropCaps {
		if err := DropCapabilities(cfg.Caps); err != nil {
			if !cfg.TolerateBounding || !errors.Is(err, ErrCannotDropBounding) {
				return err
			}
			rep.CapsErr = err.Error()
		}
	}
	if cfg.NNP {
		if err := SetNoNewPrivs(); err != nil {
			return err
		}
	}
	if cfg.ProtectThread {
		// A long-lived locked thread, like a launcher thread, whose tid the filter
		// protects; launches find it in PROTECTED_TID.
		tid := make(chan int)
		go func() {
			runtime.LockOSThread()
			tid <- unix.Gettid()
			select {}
		}()
		protectedTID = <-tid
	}
	if cfg.TrivialFilter {
		if err := sys.SeccompSetModeFilter(sys.SeccompFilterFlagTSync, []unix.SockFilter{{Code: 0x06, K: retAllow}}); err != nil {
			return fmt.Errorf("trivial filter: %w", err)
		}
	}
	if cfg.LauncherScope {
		if err := scopeAllThreads(); err != nil {
			return err
		}
		l, err := osthread.Start(ScopeSignalsThisThread)
		if err != nil {
			return err
		}
		launcher, protectedTID = l, l.TID()
	}
	if cfg.Seccomp != nil {
		spec := *cfg.Seccomp
		spec.SpawnerPID = os.Getpid()
		if protectedTID != 0 {
			spec.ProtectTIDs = append(spec.ProtectTIDs, protectedTID)
		}
		f, err := BuildSeccomp(spec)
		if err != nil {
			return err
		}
		if err := f.Install(); err != nil {
			return err
		}
	}
	return nil
}

// runtimeChecks exercises what the Go runtime needs under the filter: goroutines,
// timers, and asynchronous preemption (tgkill(getpid(), tid, SIGURG)): with one P, a
// goroutine spinning without function calls yields only when preempted by signal.
func runtimeChecks() error {
	// An all-threads call through psx after the filter (go-landlock's
	// restrict_self takes this path): psx and Go's AllThreadsSyscall signal every
	// thread with signal 33 (SIGRTMIN+1) through tkill/tgkill aimed at the spawner.
	psxDone := make(chan error, 1)
	go func() { psxDone <- SetNoNewPrivs() }()
	select {
	case err := <-psxDone:
		if err != nil {
			return fmt.Errorf("all-threads prctl after the filter: %w", err)
		}
	case <-time.After(10 * time.Second):
		return fmt.Errorf("all-threads prctl after the filter: hung for 10s (thread signals refused?)")
	}
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)
	var stop sync.WaitGroup
	stop.Add(1)
	done := make(chan struct{})
	go func() {
		defer stop.Done()
		n := 0
		for {
			select {
			case <-done:
				return
			default:
			}
			for i := 0; i < 1<<30; i++ { // a tight loop without preemption points
				n += i
			}
			_ = n
		}
	}()
	runtime.Gosched()
	t0 := time.Now()
	time.Sleep(5 * time.Millisecond)
	close(done)
	if d := time.Since(t0); d > 2*time.Second {
		return fmt.Errorf("sleep of 5ms took %v: asynchronous preemption broken", d)
	}
	stop.Wait()
	var wg sync.WaitGroup
	var mu sync.Mutex
	sum := 0
	for i := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Millisecond)
			mu.Lock()
			sum += i
			mu.Unlock()
		}()
	}
	wg.Wait()
	if sum != 64*63/2 {
		return fmt.Errorf("goroutines: sum %d", sum)
	}
	return nil
}

// scopeAllThreads puts every thread in a Landlock domain that handles nothing but
// LANDLOCK_SCOPE_SIGNAL (the spawner's all-threads Landlock restriction, reduced to
// what the signal tests need).
func scopeAllThreads() error {
	fd, err := ll.LandlockCreateRuleset(&ll.RulesetAttr{Scoped: ll.ScopeSignal}, 0)
	if err != nil {
		return fmt.Errorf("landlock_create_ruleset(scoped=signal): %w", err)
	}
	defer unix.Close(fd)
	if err := ll.AllThreadsLandlockRestrictSelf(fd, 0); err != nil {
		return fmt.Errorf("landlock_restrict_self (all threads): %w", err)
	}
	return nil
}

// launcher, when set, runs every launch.
var launcher *osthread.Thread

// spawn launches l the way the spawner does (syscall.ForkExec with PidFD, Setsid,
// Pdeathsig, and clone3 into a cgroup when cgfd >= 0) and collects its output.
func spawn(l launch, cgfd int) launchResult {
	if launcher != nil {
		var r launchResult
		launcher.Do(func() { r = spawnHere(l, cgfd) })
		return r
	}
	return spawnHere(l, cgfd)
}

func spawnHere(l launch, cgfd int) launchResult {
	r, w, err := os.Pipe()
	if err != nil {
		return launchResult{Status: "error: pipe: " + err.Error()}
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return launchResult{Status: "error: " + err.Error()}
	}
	defer devnull.Close()
	pidfd := -1
	sys := &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL, PidFD: &pidfd}
	if cgfd >= 0 {
		sys.UseCgroupFD, sys.CgroupFD = true, cgfd
	}
	if l.NewNet {
		sys.Cloneflags |= syscall.CLONE_NEWNET
	}
	if l.AsUID != nil {
		sys.Credential = &syscall.Credential{Uid: *l.AsUID, Gid: *l.AsUID, NoSetGroups: false}
	}
	env := l.Env
	if protectedTID != 0 {
		env = append(env[:len(env):len(env)], "PROTECTED_TID="+strconv.Itoa(protectedTID))
	}
	pid, err := syscall.ForkExec(l.Argv[0], l.Argv, &syscall.ProcAttr{
		Env:   env,
		Files: []uintptr{devnull.Fd(), w.Fd(), w.Fd()},
		Sys:   sys,
	})
	w.Close()
	if err != nil {
		r.Close()
		return launchResult{Status: "error: forkexec: " + err.Error()}
	}
	out, _ := io.ReadAll(r)
	r.Close()
	var ws syscall.WaitStatus
	for {
		_, err = syscall.Wait4(pid, &ws, 0, nil)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if pidfd >= 0 {
		syscall.Close(pidfd)
	} else {
		return launchResult{Out: string(out), Status: "error: no pidfd"}
	}
	res := launchResult{Out: string(out)}
	switch {
	case err != nil:
		res.Status = "error: wait4: " + err.Error()
	case ws.Signaled():
		res.Status = "signal " + ws.Signal().String()
	default:
		res.Status = "exit " + strconv.Itoa(ws.ExitStatus())
	}
	return res
}

// runSpawner runs the spawner helper with cfg (as uid when non-nil) and returns its
// report; setup errors fail the test.
func runSpawner(t testing.TB, cfg spawnerConfig, exe string, asUID *uint32) spawnerReport {
	t.Helper()
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if exe == "" {
		exe = testExe(t)
	}
	cmd := exec.CommandContext(ctx, exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=spawner", configEnv+"="+string(b))
	// Like the real spawner: its own session, so its pgid is its pid.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if asUID != nil {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: *asUID, Gid: *asUID}
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("spawner helper: %v\nstdout: %s\nstderr: %s", err, out, stderr.Bytes())
	}
	var rep spawnerReport
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("spawner helper output %q: %v\nstderr: %s", out, err, stderr.Bytes())
	}
	if rep.SetupErr != "" {
		t.Fatalf("spawner setup: %s", rep.SetupErr)
	}
	if rep.RuntimeErr != "" {
		t.Errorf("spawner runtime: %s", rep.RuntimeErr)
	}
	return rep
}

func testExe(t testing.TB) string {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// probeEnv is what probe children need to find the listeners.
type probeTargets struct {
	UDP, TCP, UnixPath, UnixAbstract string
	// Agent is the pid of the test process, standing in for agentexec's own process.
	Agent int
}

const targetsEnv = "AGENTEXEC_CONTAIN_TARGETS"

// probeMain runs each named probe and prints "name errno" per line (0: it worked).
// Signals sent by probes use PROBE_SIG (0 in control runs).
func probeMain(names []string) int {
	var tg probeTargets
	_ = json.Unmarshal([]byte(os.Getenv(targetsEnv)), &tg)
	sig, _ := strconv.Atoi(os.Getenv("PROBE_SIG"))
	ppid := os.Getppid()
	for _, n := range names {
		err := probe(n, tg, ppid, syscall.Signal(sig))
		var errno syscall.Errno
		switch {
		case err == nil:
		case errors.As(err, &errno):
		default:
			fmt.Printf("%s error %v\n", n, err)
			continue
		}
		fmt.Printf("%s %d\n", n, int(errno))
	}
	return 0
}

func sockConnect(family, typ, proto int, sa unix.Sockaddr) error {
	fd, err := unix.Socket(family, typ|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if sa == nil {
		return nil
	}
	if typ == unix.SOCK_DGRAM {
		return unix.Sendto(fd, []byte("x"), 0, sa)
	}
	return unix.Connect(fd, sa)
}

func inet4(addr string) unix.Sockaddr {
	ap, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		panic(err)
	}
	sa := &unix.SockaddrInet4{Port: ap.Port}
	copy(sa.Addr[:], ap.IP.To4())
	return sa
}

func probe(name string, tg probeTargets, ppid int, sig syscall.Signal) error {
	switch name {
	case "udp":
		return sockConnect(unix.AF_INET, unix.SOCK_DGRAM, 0, inet4(tg.UDP))
	case "tcp":
		return sockConnect(unix.AF_INET, unix.SOCK_STREAM, 0, inet4(tg.TCP))
	case "tcp-proto":
		return sockConnect(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, unix.IPPROTO_TCP, nil)
	case "mptcp":
		return sockConnect(unix.AF_INET, unix.SOCK_STREAM, unix.IPPROTO_MPTCP, inet4(tg.TCP))
	case "raw":
		return sockConnect(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP, nil)
	case "packet":
		return sockConnect(unix.AF_PACKET, unix.SOCK_RAW, 0, nil)
	case "netlink":
		return sockConnect(unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE, nil)
	case "unix":
		return sockConnect(unix.AF_UNIX, unix.SOCK_STREAM, 0, &unix.SockaddrUnix{Name: tg.UnixPath})
	case "unix-abstract":
		return sockConnect(unix.AF_UNIX, unix.SOCK_STREAM, 0, &unix.SockaddrUnix{Name: "@" + tg.UnixAbstract})
	case "socketpair":
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err == nil {
			unix.Close(fds[0])
			unix.Close(fds[1])
		}
		return err
	case "kill-spawner":
		return unix.Kill(ppid, sig)
	case "kill-spawner-pgrp":
		return unix.Kill(-ppid, sig)
	case "kill-all":
		return unix.Kill(-1, 0) // never a real signal: -1 reaches every process
	case "tgkill-spawner":
		return unix.Tgkill(ppid, ppid, sig)
	case "tkill-spawner":
		_, _, e := unix.Syscall(unix.SYS_TKILL, uintptr(ppid), uintptr(sig), 0)
		return errnoErr(e)
	case "sigqueue-spawner":
		var info [128]byte
		*(*int32)(unsafe.Pointer(&info[0])) = int32(sig)
		*(*int32)(unsafe.Pointer(&info[8])) = -1 // SI_QUEUE
		_, _, e := unix.Syscall(unix.SYS_RT_SIGQUEUEINFO, uintptr(ppid), uintptr(sig), uintptr(unsafe.Pointer(&info[0])))
		return errnoErr(e)
	case "kill-protected-tid":
		tid := protected()
		if tid == 0 {
			return fmt.Errorf("PROTECTED_TID not set")
		}
		if err := unix.Kill(tid, sig); err != nil {
			return err
		}
		_, _, e := unix.Syscall(unix.SYS_TKILL, uintptr(tid), uintptr(sig), 0)
		return errnoErr(e)
	case "prlimit-spawner":
		var old unix.Rlimit // read only: the permission check is the same
		return unix.Prlimit(ppid, unix.RLIMIT_CPU, nil, &old)
	case "setown-spawner":
		// Owner only, no O_ASYNC: nothing is ever signalled, even in the control.
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			return err
		}
		defer unix.Close(p[0])
		defer unix.Close(p[1])
		_, err := unix.FcntlInt(uintptr(p[0]), unix.F_SETOWN, ppid)
		return err
	case "setpriority-spawner":
		// Set the spawner's nice value to what it is: no change even when allowed.
		prio, err := unix.Getpriority(unix.PRIO_PROCESS, ppid)
		if err != nil {
			return fmt.Errorf("getpriority: %w", err)
		}
		return unix.Setpriority(unix.PRIO_PROCESS, ppid, 20-prio)
	case "kill-spawner-threads":
		// Signal 0 to every thread of the spawner: the first that can be reached
		// is a success (a real signal there would take the whole spawner down).
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", ppid))
		if err != nil {
			return err
		}
		var last error = syscall.ESRCH
		for _, e := range ents {
			tid, _ := strconv.Atoi(e.Name())
			if tid == ppid {
				continue
			}
			if tid == protected() {
				continue // refused by the filter, checked by kill-protected-tid
			}
			if last = unix.Kill(tid, 0); last == nil {
				return nil
			}
		}
		return last
	case "kill-agent":
		return unix.Kill(tg.Agent, 0) // 0: a success must not take the test down
	case "environ-agent":
		_, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", tg.Agent))
		var pe *os.PathError
		if errors.As(err, &pe) {
			return pe.Err
		}
		return err
	case "pidfd-open-spawner":
		fd, err := unix.PidfdOpen(ppid, 0)
		if err == nil {
			unix.Close(fd)
		}
		return err
	case "pidfd-send-spawner":
		// A /proc/PID directory fd works as a pidfd.
		fd, err := unix.Open("/proc/"+strconv.Itoa(ppid), unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open /proc/%d: %w", ppid, err)
		}
		defer unix.Close(fd)
		return unix.PidfdSendSignal(fd, sig, nil, 0)
	case "ptrace-spawner":
		// PTRACE_SEIZE does not stop the tracee; the tracer's exit detaches it.
		_, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SEIZE, uintptr(ppid), 0, 0, 0, 0)
		return errnoErr(e)
	case "kill-own-child":
		cmd := exec.Command("/bin/sleep", "10")
		if err := cmd.Start(); err != nil {
			return err
		}
		err := cmd.Process.Signal(syscall.SIGTERM)
		werr := cmd.Wait()
		if err != nil {
			return err
		}
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
			return fmt.Errorf("child not killed by SIGTERM: %v", werr)
		}
		return nil
	case "clone-newuser":
		// clone(2) with CLONE_NEWUSER (Go uses clone, not clone3, without a cgroup fd).
		pid, err := syscall.ForkExec("/bin/true", []string{"true"}, &syscall.ProcAttr{
			Sys: &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER}})
		if err != nil {
			return err
		}
		var ws syscall.WaitStatus
		_, err = syscall.Wait4(pid, &ws, 0, nil)
		return err
	case "clone3-newuser":
		// clone3 with CLONE_NEWUSER (Go takes clone3 when UseCgroupFD is set): the
		// filter cannot see clone3's flags. Observed, not asserted.
		cg, err := unix.Open("/sys/fs/cgroup/unified", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(cg)
		pid, err := syscall.ForkExec("/bin/true", []string{"true"}, &syscall.ProcAttr{
			Sys: &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER, UseCgroupFD: true, CgroupFD: cg}})
		if err != nil {
			return err
		}
		var ws syscall.WaitStatus
		_, err = syscall.Wait4(pid, &ws, 0, nil)
		return err
	case "unshare-newuser":
		// unshare(2) needs a single-threaded caller: use util-linux unshare(1) and
		// map its failure back to the errno its message names.
		out, err := exec.Command("unshare", "--user", "/bin/true").CombinedOutput()
		if err == nil {
			return nil
		}
		if strings.Contains(string(out), "Operation not permitted") {
			return syscall.EPERM
		}
		return fmt.Errorf("unshare --user: %v: %s", err, out)
	case "io_uring":
		var params [120]byte
		fd, _, e := unix.Syscall(unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&params[0])), 0)
		if e == 0 {
			unix.Close(int(fd))
		}
		return errnoErr(e)
	}
	return fmt.Errorf("unknown probe %q", name)
}

func protected() int {
	t, _ := strconv.Atoi(os.Getenv("PROTECTED_TID"))
	return t
}

func errnoErr(e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// parseProbes turns "name errno" lines into a map.
func parseProbes(t testing.TB, out string) map[string]syscall.Errno {
	t.Helper()
	m := map[string]syscall.Errno{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			t.Fatalf("probe output line %q (all output: %q)", line, out)
		}
		n, err := strconv.Atoi(f[1])
		if err != nil {
			t.Fatalf("probe output line %q", line)
		}
		m[f[0]] = syscall.Errno(n)
	}
	return m
}
