package agentexec_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/internal/testutil"
)

// sleepsWith waits (up to 10s) until n sleep processes carry one of the markers and
// returns their pids.
func sleepsWith(n int, markers ...string) ([]int, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		var pids []int
		for _, m := range markers {
			for _, pid := range testutil.ProcsWith(m) {
				if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); string(comm) == "sleep\n" {
					pids = append(pids, pid)
				}
			}
		}
		if len(pids) >= n {
			return pids, nil
		}
		if time.Now().After(deadline) {
			return pids, fmt.Errorf("found sleeps %v, want %d", pids, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type sleeps struct {
	pids []int
	err  error
}

// requireReaped fails unless every pid found is gone (not even a zombie, of the spawner or
// of PID 1) within 5s of the Result: what a launch leaves is killed and reaped.
func requireReaped(t *testing.T, rt *agentexec.Runtime, found <-chan sleeps) {
	t.Helper()
	f := <-found
	if f.err != nil {
		t.Fatal(f.err)
	}
	pids := f.pids
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range pids {
		for {
			b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
			if err != nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("pid %d is still there: %s", pid, b)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// The spawner's orphan reaper runs on SIGCHLD, a moment after a leftover
	// dies: a zombie must be gone soon, not at this instant.
	for _, sp := range agentexec.SpawnerPidsForTest(rt) {
		deadline := time.Now().Add(5 * time.Second)
		for z := zombiesOf(sp); z > 0; z = zombiesOf(sp) {
			if time.Now().After(deadline) {
				t.Errorf("%d zombie children of spawner %d after 5s", z, sp)
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// What a tool tree leaves behind is reparented to its spawner (a child subreaper),
// killed at the launch's end and reaped there, never left to PID 1 (which may not
// reap it): when the launch is canceled with a background job, and when the shell
// exits and leaves one. The launched tool's own status and rusage still come back.
func TestReapLeftovers(t *testing.T) {
	p, _ := testPolicy(t, "")
	rt := newRuntime(t, p)

	t.Run("canceled", func(t *testing.T) {
		bg, fg := testutil.SleepMarker(), testutil.SleepMarker()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		found := make(chan sleeps, 1)
		go func() {
			pids, err := sleepsWith(2, bg, fg)
			found <- sleeps{pids, err}
			cancel()
		}()
		r, err := rt.Run(ctx, agentexec.Request{Tool: "sh", Args: []string{"-c", "sleep " + bg + " & sleep " + fg}})
		if err != nil {
			t.Fatal(err)
		}
		if !r.Canceled || r.Signal != syscall.SIGTERM || r.ExitCode != -1 || r.Pid == 0 {
			t.Errorf("result: canceled %v signal %v exit %d pid %d, want canceled by SIGTERM", r.Canceled, r.Signal, r.ExitCode, r.Pid)
		}
		requireReaped(t, rt, found)
	})

	t.Run("shell exits", func(t *testing.T) {
		bg := testutil.SleepMarker()
		found := make(chan sleeps, 1)
		go func() {
			pids, err := sleepsWith(1, bg)
			found <- sleeps{pids, err}
		}()
		// The loop burns some CPU, which the result's rusage must show.
		r, err := rt.Run(context.Background(), agentexec.Request{Tool: "sh", Args: []string{"-c",
			"sleep " + bg + " & i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; exit 5"}})
		if err != nil {
			t.Fatal(err)
		}
		if r.ExitCode != 5 || r.Signal != 0 || r.UserCPU+r.SystemCPU <= 0 {
			t.Errorf("result: exit %d signal %v cpu %v+%v, want exit 5 with rusage", r.ExitCode, r.Signal, r.UserCPU, r.SystemCPU)
		}
		requireReaped(t, rt, found)
	})
}
