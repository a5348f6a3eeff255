package spawner

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec/internal/contain"
	"github.com/agentexec/agentexec/internal/testutil"
)

// startShSpawner starts this test binary as a spawner that may launch /bin/sh, with
// the given number of launcher threads, under its seccomp filter (which also binds
// the spawner: no pidfd_send_signal) but without Landlock or capability changes.
func startShSpawner(t *testing.T, launchers int) *Spawner {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	s, err := StartSpawner(SpawnerConfig{Binary: exe, Profile: "test", Launchers: launchers, KernelTemplates: "off",
		Containment: Containment{Seccomp: true, Network: contain.NetNone},
		Tools:       []ToolSpec{{Name: "sh", Path: "/bin/sh", Hot: true}}, Stderr: os.Stderr})
	if err != nil {
		t.Fatalf("StartSpawner: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// launchSh starts sh -c script with its output discarded.
func launchSh(s *Spawner, script string) (*Child, error) {
	null, err := unix.Open("/dev/null", unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(null)
	return s.Launch(&LaunchSpec{Tool: "sh", Argv: []string{"sh", "-c", script}, Dir: "/", Stdin: -1, Stdout: null, Stderr: null, CgroupFD: -1})
}

// procStat returns a process's state letter and parent pid ("" when it is gone).
func procStat(pid int) (state string, ppid int) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", 0
	}
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return "", 0
	}
	ppid, _ = strconv.Atoi(f[1])
	return f[0], ppid
}

// waitGone polls until pid no longer exists (reaped), for at most 5s.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		state, ppid := procStat(pid)
		if state == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d still there: state %s, parent %d", pid, state, ppid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// findOne waits for exactly one sleep process with marker in its command line.
func findOne(t *testing.T, marker string) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var pids []int
		for _, pid := range testutil.ProcsWith(marker) {
			// The command line must be "sleep MARKER" itself, read once: the
			// shell's child forked for "sleep FG" still has the script's command
			// line, which holds BG too, and a second read (comm) a moment later
			// already saw it named sleep (one CI run found two pids for BG so).
			if cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); string(cmdline) == "sleep\x00"+marker+"\x00" {
				pids = append(pids, pid)
			}
		}
		if len(pids) == 1 {
			return pids[0]
		} else if len(pids) > 1 || time.Now().After(deadline) {
			t.Fatalf("processes with %s: %v, want one", marker, pids)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The spawner is the subreaper of its tool trees: a process whose parent (the
// launched tool) exits is reparented to the spawner, not to PID 1, and reaped by it
// when it exits; the tool itself still reports its own status and rusage.
func TestSpawnerReapsOrphans(t *testing.T) {
	s := startShSpawner(t, 2)
	marker := testutil.SleepMarker()
	ch, err := launchSh(s, "sleep "+marker+" & exit 7")
	if err != nil {
		t.Fatal(err)
	}
	exit, err := ch.Wait()
	ch.Release()
	if err != nil || !exit.Status.Exited() || exit.Status.ExitStatus() != 7 {
		t.Fatalf("sh: %v, status %v, want exit 7", err, exit.Status)
	}
	if exit.MaxRSSKiB <= 0 {
		t.Errorf("sh: no rusage (max RSS %d KiB)", exit.MaxRSSKiB)
	}
	orphan := findOne(t, marker)
	if _, ppid := procStat(orphan); ppid != s.Pid() {
		t.Fatalf("orphan %d has parent %d, want the spawner %d", orphan, ppid, s.Pid())
	}
	if err := unix.Kill(orphan, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, orphan) // reaped, not left a zombie
}

// Orphans that exit while tracked children exit too (SIGCHLD storms, sweeps beside
// the pidfd reaper on every launcher thread) never take a tracked child's status:
// each launch reports its own exit code.
func TestOrphanReapingKeepsTrackedStatus(t *testing.T) {
	s := startShSpawner(t, 4)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 25 {
				code := (g*25 + i) % 100
				ch, err := launchSh(s, fmt.Sprintf("true & true & exit %d", code))
				if err != nil {
					t.Error(err)
					return
				}
				exit, err := ch.Wait()
				ch.Release()
				if err != nil || !exit.Status.Exited() || exit.Status.ExitStatus() != code {
					t.Errorf("launch: %v, status %v, want exit %d", err, exit.Status, code)
					return
				}
			}
		})
	}
	wg.Wait()
	// Every orphan is reaped: no zombie child of the spawner is left.
	deadline := time.Now().Add(5 * time.Second)
	for {
		z := zombieChildren(s.Pid())
		if len(z) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("zombie children of the spawner: %v", z)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// zombieChildren lists the zombies whose parent is pid.
func zombieChildren(pid int) []int {
	var z []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if state, ppid := procStat(p); state == "Z" && ppid == pid {
			z = append(z, p)
		}
	}
	return z
}

// When its socket closes (Close), a spawner kills and reaps what is left of its
// launches, the tools still running and the orphans reparented to it, so that none
// of them is left to PID 1.
func TestSpawnerCloseKillsTrees(t *testing.T) {
	s := startShSpawner(t, 2)
	if !slices.Contains(s.Ready().Layers, "seccomp") {
		t.Fatalf("spawner layers %v: no seccomp", s.Ready().Layers)
	}
	orphanM, bgM, fgM := testutil.SleepMarker(), testutil.SleepMarker(), testutil.SleepMarker()
	if orphanM == bgM || bgM == fgM || orphanM == fgM {
		t.Fatal("markers are not unique")
	}
	ch, err := launchSh(s, "sleep "+orphanM+" & exit 0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.Wait(); err != nil {
		t.Fatal(err)
	}
	ch.Release()
	running, err := launchSh(s, "sleep "+bgM+" & sleep "+fgM)
	if err != nil {
		t.Fatal(err)
	}
	defer running.Release()
	pids := []int{findOne(t, orphanM), findOne(t, bgM), findOne(t, fgM), running.Pid}
	start := time.Now()
	s.Close()
	t.Logf("Close took %v", time.Since(start))
	for _, pid := range pids {
		if state, ppid := procStat(pid); state != "" {
			t.Errorf("pid %d survived the spawner: state %s, parent %d", pid, state, ppid)
		}
	}
}
