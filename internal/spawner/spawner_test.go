package spawner

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	if IsSpawnerInvocation(os.Args) {
		SpawnerMain(os.Args)
	}
	os.Exit(m.Run())
}

// startTestSpawner starts this test binary as an unrestricted spawner (no Landlock,
// no containment: nothing here needs root) that may launch /bin/true.
func startTestSpawner(t *testing.T, launchers int, kernelTemplates string) *Spawner {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	s, err := StartSpawner(SpawnerConfig{Binary: exe, Profile: "test", Launchers: launchers, KernelTemplates: kernelTemplates,
		Tools: []ToolSpec{{Name: "true", Path: "/bin/true", Hot: true}}, Stderr: os.Stderr})
	if err != nil {
		t.Fatalf("StartSpawner: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func launchTrue(t *testing.T, s *Spawner) {
	t.Helper()
	if err := runTrue(s); err != nil {
		t.Fatal(err)
	}
}

// runTrue launches /bin/true and waits for it (safe to call from any goroutine).
func runTrue(s *Spawner) error {
	p := make([]int, 2)
	if err := unix.Pipe2(p, unix.O_CLOEXEC); err != nil {
		return err
	}
	defer unix.Close(p[0])
	ch, err := s.Launch(&LaunchSpec{Tool: "true", Argv: []string{"true"}, Dir: "/", Stdin: -1, Stdout: p[1], Stderr: p[1], CgroupFD: -1})
	unix.Close(p[1])
	if err != nil {
		return fmt.Errorf("launch: %w", err)
	}
	defer ch.Release()
	exit, err := ch.Wait()
	if err != nil || !exit.Status.Exited() || exit.Status.ExitStatus() != 0 {
		return fmt.Errorf("true: %v, status %v", err, exit.Status)
	}
	return nil
}

// A spawner starts the launcher threads it is asked for, each serving launches.
// When kernel templates may be used it starts one more, launcher 0, which makes the
// templates and runs only their launches, read from a socket of their own (their
// children share its domain, so no userspace child may be forked below it); it
// serves the first socket like the others when the spawner found no kernel
// templates to make.
func TestSpawnerLaunchers(t *testing.T) {
	for _, c := range []struct {
		launchers int
		kernel    string
		want      int
	}{
		{0, "off", 1}, {3, "off", 3}, {3, "auto", 4},
	} {
		s := startTestSpawner(t, c.launchers, c.kernel)
		r := s.Ready()
		if r.Launchers != c.want {
			t.Errorf("launchers %d, kernel_templates %s: spawner started %d launcher threads, want %d", c.launchers, c.kernel, r.Launchers, c.want)
		}
		// With kernel templates in use, launcher 0 waits in recvmsg too, on the
		// kernel launches' socket (serveKernel) rather than the first one.
		// Ready only echoes the count: check that every launcher thread serves, that
		// is, that exactly want threads of the spawner wait in recvmsg on the socket.
		if got, err := threadsInRecvmsg(s.Pid(), c.want); err != nil {
			t.Errorf("launchers %d, kernel_templates %s: %v", c.launchers, c.kernel, err)
		} else if got != c.want {
			t.Errorf("launchers %d, kernel_templates %s: %d spawner threads in recvmsg, want %d", c.launchers, c.kernel, got, c.want)
		}
		// Every thread that blocks in recvmsg must launch: more launches than threads.
		for range 3 * c.want {
			launchTrue(t, s)
		}
		s.Close()
	}
}

// Launches in flight on several launcher threads, whose replies are sent without a
// lock from the launcher threads and the reaper at once, each get their own started
// and exited replies.
func TestSpawnerConcurrentLaunches(t *testing.T) {
	s := startTestSpawner(t, 4, "off")
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 16 {
				if err := runTrue(s); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// threadsInRecvmsg counts the threads of process pid blocked in recvmsg(2), as
// /proc/PID/task/TID/syscall shows them (the syscall number first). The launcher
// threads reach recvmsg on their own after the spawner reported ready, so it polls
// until want threads are there (or more, which is an error), for at most 10s, and
// returns the last count.
func threadsInRecvmsg(pid, want int) (int, error) {
	prefix := fmt.Sprintf("%d ", unix.SYS_RECVMSG)
	deadline := time.Now().Add(10 * time.Second)
	for {
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			return 0, err
		}
		n := 0
		for _, task := range tasks {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/syscall", pid, task.Name()))
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ESRCH) {
				continue // a runtime thread that exited meanwhile
			}
			if err != nil {
				return 0, err // the spawner is not dumpable: reading needs CAP_SYS_PTRACE
			}
			if strings.HasPrefix(string(b), prefix) {
				n++
			}
		}
		if n >= want || time.Now().After(deadline) {
			return n, nil
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The reaper reports every child exactly once with its own status and rusage,
// including children that exited before they were handed over, and closes the
// pidfds it was given.
func TestReaper(t *testing.T) {
	type exit struct {
		c  reaped
		ws unix.WaitStatus
		ru unix.Rusage
	}
	exits := make(chan exit, 64)
	rp, err := newReaper(func(c reaped, ws unix.WaitStatus, ru *unix.Rusage, err error) {
		if err != nil {
			t.Errorf("launch %d: %v", c.id, err)
		}
		exits <- exit{c, ws, *ru}
	})
	if err != nil {
		t.Fatal(err)
	}
	stopped := make(chan struct{})
	go func() { rp.run(); close(stopped) }()
	defer func() { rp.stop(); <-stopped }()
	fdsBefore := openFDs(t)

	const n = 24
	want := map[uint64]int{} // id -> exit status (-9: SIGKILL)
	for i := range n {
		code := i % 4
		script := fmt.Sprintf("exit %d", code)
		if code == 3 {
			script = "kill -9 $$"
		}
		pidfd := -1
		pid, err := syscall.ForkExec("/bin/sh", []string{"sh", "-c", script}, &syscall.ProcAttr{Sys: &syscall.SysProcAttr{PidFD: &pidfd}})
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			time.Sleep(5 * time.Millisecond) // often exited before add: level-triggered
		}
		id := uint64(i + 1)
		want[id] = code
		if code == 3 {
			want[id] = -9
		}
		if err := rp.add(reaped{id: id, pid: pid, pidfd: pidfd}); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[uint64]bool{}
	for range n {
		select {
		case e := <-exits:
			if seen[e.c.id] {
				t.Fatalf("launch %d reported twice", e.c.id)
			}
			seen[e.c.id] = true
			got := e.ws.ExitStatus()
			if e.ws.Signaled() {
				got = -int(e.ws.Signal())
			}
			if got != want[e.c.id] {
				t.Errorf("launch %d: status %v, want %d", e.c.id, e.ws, want[e.c.id])
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d of %d children reported", len(seen), n)
		}
	}
	select {
	case e := <-exits:
		t.Fatalf("extra report for launch %d", e.c.id)
	case <-time.After(50 * time.Millisecond):
	}
	// (Fewer is fine: an earlier test's spawner may still be closing its files.)
	if fds := openFDs(t); fds > fdsBefore {
		t.Errorf("open fds %d before, %d after: pidfds leaked", fdsBefore, fds)
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
