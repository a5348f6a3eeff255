package spawner

import (
	"os"
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec/internal/templates"
)

// noChildren, the kernel sweep's shortcut (a kernel child left nothing when the
// spawner has no child at all), says "none" only when there is none: a live child
// and the same child as an unreaped zombie both count, as a leftover reparented to
// the spawner would; once it is reaped there is none.
func TestNoChildren(t *testing.T) {
	if !noChildren() {
		t.Skip("this test process has children already (another test's); the check needs none to start from")
	}
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skipf("needs sleep(1): %v", err)
	}
	pid := cmd.Process.Pid
	if noChildren() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("a live child %d: noChildren reported none", pid)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if state, _ := procStat(pid); state == "Z" {
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Wait()
			t.Fatalf("child %d did not become a zombie", pid)
		}
		time.Sleep(time.Millisecond)
	}
	if noChildren() {
		_ = cmd.Wait()
		t.Fatalf("an unreaped zombie child %d: noChildren reported none", pid)
	}
	_ = cmd.Wait()
	if !noChildren() {
		t.Fatal("after reaping the only child, noChildren still reports children")
	}
}

// A spawner whose main process goes away while a kernel-template child runs kills
// that child before it exits: the kernel launcher waits for its kernel children
// itself (not the reaper, whose killAll covers the others), and shutdown kills the
// one it waits for. Without that the child would outlive the spawner (a kernel
// child has no Pdeathsig) and be left to the host's PID 1.
func TestKernelSpawnerShutdownKillsKernelChild(t *testing.T) {
	if p := templates.ProbeKernel(0, 0); !p.Available {
		if os.Getenv("AGENTEXEC_REQUIRE_SPAWN_TEMPLATE") == "1" {
			t.Fatalf("the spawn_template syscalls must be usable here: %s", p.Reason)
		}
		t.Skipf("requires the spawn_template syscalls (Linux RFC series; make vmtest-rfc): %s", p.Reason)
	}
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skipf("needs sleep(1): %v", err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	s, err := StartSpawner(SpawnerConfig{Binary: exe, Profile: "test", KernelTemplates: "require",
		Tools: []ToolSpec{{Name: "sleep", Path: sleep, Hot: true}}, Stderr: os.Stderr})
	if err != nil {
		t.Fatalf("StartSpawner: %v", err)
	}
	defer s.Close()
	null, err := unix.Open("/dev/null", unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(null)
	ch, err := s.Launch(&LaunchSpec{Tool: "sleep", Argv: []string{"sleep", "30"}, Dir: "/", Stdin: -1, Stdout: null, Stderr: null,
		CgroupFD: -1, Kernel: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Release()
	if ch.Backend != templates.BackendKernel {
		t.Fatalf("sleep ran on the %s backend, want kernel (ready: %+v)", ch.Backend, s.Ready().Templates)
	}
	s.Close()
	if state, _ := procStat(ch.Pid); state != "" && state != "Z" {
		_ = unix.Kill(ch.Pid, unix.SIGKILL)
		t.Fatalf("the kernel child %d (state %s) outlived its spawner", ch.Pid, state)
	}
}

// procPids, the kernel sweep's /proc listing where there is no children list (the
// RFC kernel has no CONFIG_PROC_CHILDREN), lists this process and a child started
// for the test, and again on the second call (the directory is rewound); a pid
// that has exited and been reaped is gone.
func TestProcPids(t *testing.T) {
	fd, err := unix.Open("/proc", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	st := &spawnerState{procDir: fd}
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skipf("needs sleep(1): %v", err)
	}
	child := cmd.Process.Pid
	has := func(pids []int, pid int) bool {
		for _, p := range pids {
			if p == pid {
				return true
			}
		}
		return false
	}
	for round := range 2 {
		pids, err := st.procPids()
		if err != nil {
			t.Fatal(err)
		}
		if !has(pids, os.Getpid()) || !has(pids, child) || !has(pids, 1) {
			t.Fatalf("round %d: %d pids, self %d, child %d or 1 missing", round, len(pids), os.Getpid(), child)
		}
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	pids, err := st.procPids()
	if err != nil {
		t.Fatal(err)
	}
	if has(pids, child) {
		t.Errorf("reaped child %d still listed", child)
	}
}
