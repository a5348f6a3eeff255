package agentexec_test

import (
	"bytes"
	"context"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentexec/agentexec"
)

func countFDs(t testing.TB) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func countThreads(t testing.TB) int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Threads:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	t.Fatal("no Threads: line")
	return 0
}

// zombiesOf counts zombie processes whose parent is one of pids.
func zombiesOf(pids ...int) int {
	n := 0
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 || f[0] != "Z" {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		for _, p := range pids {
			if ppid == p {
				n++
			}
		}
	}
	return n
}

func TestNoLeaksAfterManyLaunches(t *testing.T) {
	n := 10000
	if testing.Short() {
		n = 1000
	}
	p, _ := testPolicy(t, "")
	rt := newRuntime(t, p)
	ctx := context.Background()
	launch := func(k int) {
		var wg sync.WaitGroup
		sem := make(chan struct{}, 8)
		for range k {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				r, err := rt.Run(ctx, agentexec.Request{Tool: "true"})
				if err != nil || r.ExitCode != 0 {
					t.Errorf("launch: %v %+v", err, r)
				}
			}()
		}
		wg.Wait()
	}
	launch(200) // warm up: pools, threads, templates
	time.Sleep(100 * time.Millisecond)
	fds0, thr0, gor0 := countFDs(t), countThreads(t), runtime.NumGoroutine()
	launch(n)
	// Let background cgroup recycling settle.
	deadline := time.Now().Add(5 * time.Second)
	var fds1, thr1, gor1 int
	for {
		fds1, thr1, gor1 = countFDs(t), countThreads(t), runtime.NumGoroutine()
		if (fds1 <= fds0 && gor1 <= gor0+2) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("after %d launches: fds %d→%d threads %d→%d goroutines %d→%d", n, fds0, fds1, thr0, thr1, gor0, gor1)
	if fds1 > fds0 {
		t.Errorf("open fds grew from %d to %d", fds0, fds1)
	}
	if gor1 > gor0+2 {
		t.Errorf("goroutines grew from %d to %d", gor0, gor1)
	}
	if thr1 > thr0+4 {
		t.Errorf("threads grew from %d to %d", thr0, thr1)
	}
	pids := append([]int{os.Getpid()}, agentexec.SpawnerPidsForTest(rt)...)
	if z := zombiesOf(pids...); z > 0 {
		t.Errorf("%d zombie children left", z)
	}
	if s := rt.Stats(); s.InFlight != 0 || s.Launches < uint64(n) {
		t.Errorf("stats: %+v", s)
	}
}
