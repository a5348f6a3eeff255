package cgroup

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// The test binary doubles as the child program (GO_WANT_HELPER=<name>), so the limit
// tests need nothing but this static binary in a busybox guest.
const helperEnv = "GO_WANT_HELPER"

func TestMain(m *testing.M) {
	if h := os.Getenv(helperEnv); h != "" {
		os.Exit(runHelper(h))
	}
	goleak.VerifyTestMain(m)
}

func runHelper(name string) int {
	switch name {
	case "cgroup":
		b, err := os.ReadFile("/proc/self/cgroup")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		os.Stdout.Write(b)
		return 0
	case "sleep":
		time.Sleep(100 * time.Second)
		return 0
	case "daemon":
		// Start two sleepers in their own sessions and exit without waiting: the
		// grandchildren are reparented away from the test, as daemons are.
		for i := 0; i < 2; i++ {
			c := helperCmd("sleep")
			c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
			if err := c.Start(); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 2
			}
			fmt.Println(c.Process.Pid)
		}
		return 0
	case "alloc":
		mb, _ := strconv.Atoi(os.Getenv("HELPER_MB"))
		var keep [][]byte
		for i := 0; i < mb; i++ {
			b := make([]byte, 1<<20)
			for j := 0; j < len(b); j += 4096 {
				b[j] = 1
			}
			keep = append(keep, b)
		}
		fmt.Println("allocated", len(keep))
		return 0
	case "spin":
		// Spin until this process has used HELPER_MS of CPU (user+system), or for
		// HELPER_WALL_MS of wall time when that is set (the cpu.max test).
		ms, _ := strconv.Atoi(os.Getenv("HELPER_MS"))
		wall, _ := strconv.Atoi(os.Getenv("HELPER_WALL_MS"))
		start := time.Now()
		x := 0
		for {
			for i := 0; i < 100000; i++ {
				x += i
			}
			if wall > 0 {
				if time.Since(start) >= time.Duration(wall)*time.Millisecond {
					break
				}
				continue
			}
			var ru syscall.Rusage
			if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 2
			}
			if time.Duration(ru.Utime.Nano()+ru.Stime.Nano()) >= time.Duration(ms)*time.Millisecond {
				break
			}
		}
		fmt.Println(x > 0)
		return 0
	case "stale":
		return helperStale()
	case "delegated":
		return helperDelegated()
	}
	fmt.Fprintln(os.Stderr, "unknown helper", name)
	return 2
}

// helperCmd runs this test binary as helper name (no test flags: TestMain dispatches).
func helperCmd(name string, env ...string) *exec.Cmd {
	exe, err := os.Executable()
	if err != nil {
		panic(err)
	}
	c := exec.Command(exe)
	c.Env = append(os.Environ(), append([]string{helperEnv + "=" + name}, env...)...)
	return c
}

// inGroup runs c inside g from its first instruction (clone3 CLONE_INTO_CGROUP).
func inGroup(c *exec.Cmd, g *Group) *exec.Cmd {
	if c.SysProcAttr == nil {
		c.SysProcAttr = &syscall.SysProcAttr{}
	}
	c.SysProcAttr.UseCgroupFD = true
	c.SysProcAttr.CgroupFD = g.FD()
	return c
}

// v2Line returns the "0::" path of a /proc/PID/cgroup text.
func v2Line(t testing.TB, b []byte) string {
	t.Helper()
	p, err := parseProcCgroup(b)
	if err != nil {
		t.Fatalf("%v in %q", err, b)
	}
	return p
}

// relPath is g's path as /proc/PID/cgroup shows it.
func relPath(m *Manager, g *Group) string {
	return "/" + strings.TrimPrefix(strings.TrimPrefix(g.Path(), m.Info().Mount), "/")
}

// processAlive reports whether pid exists and is not a zombie (pid 1 here may not reap).
func processAlive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	return b[i+2] != 'Z' && b[i+2] != 'X'
}

// exitsWithin reports whether pid is gone or a zombie within d.
func exitsWithin(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for processAlive(pid) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// processesIn lists live processes whose v2 cgroup is dir or below it.
func processesIn(t testing.TB, mount, dir string) []int {
	t.Helper()
	rel := "/" + strings.TrimPrefix(strings.TrimPrefix(dir, mount), "/")
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cgroup"))
		if err != nil {
			continue
		}
		p, err := parseProcCgroup(b)
		if err != nil {
			continue
		}
		if (p == rel || strings.HasPrefix(p, rel+"/")) && processAlive(pid) {
			out = append(out, pid)
		}
	}
	return out
}
